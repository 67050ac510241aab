// Package upstream owns everything after a route has chosen a cluster:
// endpoint selection (load balancing), circuit breaking, connection pools,
// outlier detection and TLS origination, with Envoy's semantics as Istio
// configures them. Its state outlives routing-table swaps: a Cluster is
// keyed by cluster name and keeps its counters, ejections and connections
// across reloads, while its configuration and picker are replaced
// atomically.
//
// The parts:
//   - manager.go: the Manager, reconciled with each compiled table;
//   - cluster.go: a cluster's immutable snapshots (members, picker, limits);
//   - attempt.go: RoundTrip, a try's accounting, error classification;
//   - pool.go: per-endpoint connection pools on net/http ClientConns;
//   - transport.go, tls.go: dialing and TLS origination;
//   - outlier.go: outlier detection; stats.go: Envoy's cluster stats;
//   - tcp.go: DialTCP, for TCP proxies.
//
// upstream imports routing, upstream/lb and meshca, never config, compile
// or the dataplane.
package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/michi-mesh/michi/internal/meshca"
)

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Locality is the proxy's own region/zone/subzone, and Labels its
	// workload labels, for locality-aware load balancing (Labels for
	// failoverPriority).
	Locality string
	Labels   map[string]string
	// MeshTLS is this proxy's mesh identity for ISTIO_MUTUAL; nil disables
	// ISTIO_MUTUAL and auto mTLS.
	MeshTLS *MeshIdentity
	// Now is the clock of outlier detection (ejection times, Status) and
	// of TLS certificate checks; nil means time.Now. Tests inject a fake.
	// Connection timers (idle timeout, maximum duration, connect
	// timeout) run on the real clock.
	Now func() time.Time
	// NewTicker starts the outlier-detection interval timer of a cluster;
	// nil means time.NewTicker. Tests inject a ticker they drive.
	NewTicker func(d time.Duration) Ticker
}

// Ticker is the part of *time.Ticker the outlier detector uses.
type Ticker interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

// MeshIdentity is a SPIFFE certificate and the mesh roots. The files are
// read at NewManager and again at every Update, so a rotated certificate
// is used from the next reload on.
type MeshIdentity struct {
	CertFile, KeyFile, RootsFile string
}

// MeshIdentityDir names the files of an identity issued by 'michi ca
// issue' (meshca's layout, which is Istio's): cert.pem, key.pem and
// root-cert.pem in dir.
func MeshIdentityDir(dir string) *MeshIdentity {
	return &MeshIdentity{
		CertFile:  filepath.Join(dir, meshca.CertFile),
		KeyFile:   filepath.Join(dir, meshca.KeyFile),
		RootsFile: filepath.Join(dir, meshca.RootCertFile),
	}
}

// Manager holds the runtime state of every cluster. Update is called by
// the engine goroutine only; everything else is safe for concurrent use.
type Manager struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	ticker func(time.Duration) Ticker

	// identity is the loaded Options.MeshTLS, refreshed by Update so that
	// rotated certificate files are picked up at the next reload.
	identity    atomic.Pointer[meshIdentity]
	passthrough *Cluster

	mu       sync.Mutex // guards clusters and closed
	clusters map[string]*Cluster
	closed   bool

	plain sync.Map // plainProfileKey -> *transportProfile, shared by clusters
}

// Cluster is the runtime of one upstream cluster. It is created by
// Manager.Update and kept, under its name, for as long as the cluster
// exists; its configuration is an immutable snapshot replaced atomically.
// A Cluster is safe for concurrent use.
type Cluster struct {
	name string
	m    *Manager

	state atomic.Pointer[clusterState]
	stats clusterStats

	// mu serialises writers of state: configuration updates and outlier
	// ejections. Requests never take it.
	mu        sync.Mutex
	endpoints map[string]*endpoint // by address, outliving snapshots
	timer     *intervalTimer       // outlier sweeps; nil without detection
	retired   bool

	dynMu    sync.Mutex           // guards dynamic and dynSwept
	dynamic  map[string]*endpoint // ORIGINAL_DST hosts, created on demand
	dynSwept time.Time
}

// AttemptOptions describe one try of a request.
type AttemptOptions struct {
	// Hash is the consistent-hash key, when HasHash is set.
	Hash    uint64
	HasHash bool
	// Exclude lists endpoint addresses already tried; the picker avoids
	// them when it can (Envoy previous_hosts retry predicate, at most
	// HostSelectionAttempts picks).
	Exclude               []string
	HostSelectionAttempts int
	// Retry marks a retry, which counts against max_retries.
	Retry bool
	// RetryReserved says the retry's max_retries slot was already taken
	// with ReserveRetry: RoundTrip takes no other and frees it when the
	// try ends.
	RetryReserved bool
	// OriginalDst is "host:port" for ORIGINAL_DST and passthrough clusters.
	OriginalDst string
	// DownstreamHTTP2 tells the pool the client spoke HTTP/2, for
	// useClientProtocol.
	DownstreamHTTP2 bool
}

// Attempt is the outcome of RoundTrip.
type Attempt struct {
	// Endpoint is the address tried ("" if none was picked).
	Endpoint string
	// Locality and Labels of the endpoint, for logs and metrics.
	Locality string
	Labels   map[string]string
}

// RoundTrip sends one try of req to the cluster: it picks an endpoint,
// admits the request through the circuit breakers, takes a connection from
// the pool (dialing with the connect timeout) and sends the request.
// req.URL.Host is ignored; the endpoint address is used.
//
// On success the response body must be closed; closing it completes the
// request's accounting (active requests, least-request load). Outlier
// detection sees the response status and local errors.
//
// Errors are *Error values carrying an Envoy response flag.
func (c *Cluster) RoundTrip(ctx context.Context, req *http.Request, opts AttemptOptions) (*http.Response, Attempt, error) {
	return c.roundTrip(ctx, req, opts)
}

// Error is an upstream failure with its Envoy response flag.
type Error struct {
	// Flag is the Envoy response flag: UH (no healthy upstream), UF
	// (connection failure), UO (overflow), UC (connection terminated),
	// UR (remote reset), UT (the try's context deadline passed; Err wraps
	// context.DeadlineExceeded), DC (the try's context was cancelled).
	Flag string
	// BeforeRequest is true when nothing of the request reached the
	// upstream (retry condition reset-before-request, connect-failure).
	BeforeRequest bool
	// RefusedStream is true when an HTTP/2 upstream refused the stream.
	RefusedStream bool
	Err           error
}

func (e *Error) Error() string { return e.Flag + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Sentinel causes, for errors.Is.
var (
	ErrNoHealthyUpstream = errors.New("no healthy upstream")
	ErrOverflow          = errors.New("upstream overflow")
)

// ClusterStatus is a cluster's state for /clusters.
type ClusterStatus struct {
	Name      string           `json:"name"`
	Stats     map[string]int64 `json:"stats"`
	Endpoints []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is one endpoint's state for /clusters.
type EndpointStatus struct {
	Address        string        `json:"address"`
	Weight         uint32        `json:"weight"`
	Locality       string        `json:"locality,omitempty"`
	Healthy        bool          `json:"healthy"`
	Ejected        bool          `json:"ejected"`
	EjectionCount  int           `json:"ejectionCount"`
	EjectedFor     time.Duration `json:"ejectedFor,omitempty"` // time left
	ActiveRequests int64         `json:"activeRequests"`
	TotalRequests  int64         `json:"totalRequests"`
	Errors         int64         `json:"errors"`
}
