// Package upstream owns everything after a route has chosen a cluster:
// endpoint selection (load balancing), circuit breaking, connection pools,
// outlier detection and TLS origination. Its state outlives routing-table
// swaps: a Cluster is keyed by cluster name and keeps its counters,
// ejections and connections across reloads, while its configuration and
// picker are replaced atomically.
package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Locality is the proxy's own region/zone/subzone, for locality-aware
	// load balancing.
	Locality string
	// MeshTLS is this proxy's mesh identity for ISTIO_MUTUAL; nil disables
	// ISTIO_MUTUAL and auto mTLS.
	MeshTLS *MeshIdentity
	// Now is the clock; nil means time.Now. Tests inject a fake.
	Now func() time.Time
}

// MeshIdentity is a SPIFFE certificate and the mesh roots.
type MeshIdentity struct {
	CertFile, KeyFile, RootsFile string
}

// Manager holds the runtime state of every cluster. Update is called by
// the engine goroutine only; everything else is safe for concurrent use.
type Manager struct{}

// NewManager returns an empty Manager.
func NewManager(opts Options) *Manager { panic("not implemented") }

// Update reconciles with the clusters of a newly compiled table: state for
// new clusters is created, clusters whose config changed get it swapped in
// atomically (counters, ejections and connections are kept where the
// endpoint is kept), and clusters no longer present are closed once their
// in-flight requests finish. It returns the handles for the new table.
func (m *Manager) Update(clusters map[string]*routing.Cluster) map[string]*Cluster {
	panic("not implemented")
}

// Passthrough returns the cluster for requests to hosts no route knows
// when the outbound policy is ALLOW_ANY (Istio's PassthroughCluster): it
// connects to AttemptOptions.OriginalDst.
func (m *Manager) Passthrough() *Cluster { panic("not implemented") }

// Status describes every cluster and endpoint, for the admin /clusters
// page.
func (m *Manager) Status() []ClusterStatus { panic("not implemented") }

// Close closes every connection.
func (m *Manager) Close() {}

// Cluster is the runtime of one upstream cluster.
type Cluster struct{}

// Name is the cluster name, outbound|port|subset|host.
func (c *Cluster) Name() string { panic("not implemented") }

// Config returns the cluster's current compiled configuration.
func (c *Cluster) Config() *routing.Cluster { panic("not implemented") }

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
	Labels map[string]string
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
	panic("not implemented")
}

// Error is an upstream failure with its Envoy response flag.
type Error struct {
	// Flag is the Envoy response flag: UH (no healthy upstream), UF
	// (connection failure), UO (overflow), UC (connection terminated),
	// UR (remote reset), UT (timeout).
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
