// Package dataplane is michi's HTTP request pipeline: it takes a request
// from a listener, finds its virtual host and route in the current routing
// table, applies the route's filters (CORS, faults, header edits,
// rewrites) and action (forward with timeouts, retries and mirrors;
// redirect; direct response), and writes the access log and metrics.
//
// The dataplane reads routing tables and upstream clusters; it never
// imports config, compile or source. A request loads the snapshot once and
// uses it to the end, so a reload never changes a request mid-flight.
package dataplane

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/telemetry"
	"github.com/michi-mesh/michi/internal/upstream"
)

// Snapshot is a published routing table with the runtime clusters it
// routes to. It is immutable.
type Snapshot struct {
	Table    *routing.Table
	Clusters map[string]*upstream.Cluster
}

// Options configure a Server. Zero values give Envoy's and Istio's
// defaults.
type Options struct {
	Logger    *slog.Logger
	AccessLog *telemetry.AccessLog // nil disables the access log
	Metrics   *telemetry.Metrics   // nil disables metrics
	// Passthrough is the cluster for unknown hosts under ALLOW_ANY.
	Passthrough *upstream.Cluster

	// MaxRequestHeaderBytes limits the request line and headers (Envoy's
	// max_request_headers_kb defaults to 60 KiB); larger requests get 431.
	MaxRequestHeaderBytes int
	// ReadHeaderTimeout bounds slow request headers (default 10s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle downstream connections (default 1h, Envoy's
	// HCM idle timeout).
	IdleTimeout time.Duration
	// RetryBufferBytes caps how much of a request body is kept so that the
	// request can be retried or mirrored (default 1 MiB, Envoy's default
	// per-connection buffer limit). A larger body is still streamed, but
	// is not retried or mirrored.
	RetryBufferBytes int
	// MaxMirrorsInFlight bounds concurrent mirror requests; a mirror that
	// would exceed it is dropped, so mirroring can never slow the primary.
	MaxMirrorsInFlight int
	// ShadowHostSuffix appends "-shadow" to mirrored requests' Host, as
	// Istio 1.27 and older did (--compat 1.27).
	ShadowHostSuffix bool
	// ListenerPort is the port assumed when a request names none. The mesh
	// listener stands in for every outbound port, so it is 80.
	DefaultPort uint32
	// Rand returns a uniformly random uint64; nil uses math/rand/v2.
	Rand func() uint64
	// Sleep waits for d or until ctx is done; tests replace it to avoid
	// real delays in retry backoff and fault injection.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Server serves the HTTP pipeline.
type Server struct {
	opts     Options
	log      *slog.Logger
	snap     atomic.Pointer[Snapshot]
	mirrors  chan struct{} // semaphore for mirror requests
	bufPool  sync.Pool
	inflight sync.WaitGroup

	mu      sync.Mutex
	servers []*http.Server
}

// New returns a Server with no snapshot: it answers 503 until Publish.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxRequestHeaderBytes == 0 {
		opts.MaxRequestHeaderBytes = 60 << 10
	}
	if opts.ReadHeaderTimeout == 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = time.Hour
	}
	if opts.RetryBufferBytes == 0 {
		opts.RetryBufferBytes = 1 << 20
	}
	if opts.MaxMirrorsInFlight == 0 {
		opts.MaxMirrorsInFlight = 1024
	}
	if opts.DefaultPort == 0 {
		opts.DefaultPort = 80
	}
	if opts.Rand == nil {
		opts.Rand = randUint64
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepCtx
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger.With("component", "dataplane"),
		mirrors: make(chan struct{}, opts.MaxMirrorsInFlight),
	}
	s.bufPool.New = func() any { b := make([]byte, 32<<10); return &b }
	return s
}

// Publish makes a new snapshot live. Requests already running keep the
// snapshot they started with.
func (s *Server) Publish(t *routing.Table, clusters map[string]*upstream.Cluster) {
	s.snap.Store(&Snapshot{Table: t, Clusters: clusters})
}

// Snapshot returns the live snapshot, or nil before the first Publish.
func (s *Server) Snapshot() *Snapshot { return s.snap.Load() }

// Serve accepts HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge)
// connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	hs := s.httpServer()
	s.mu.Lock()
	s.servers = append(s.servers, hs)
	s.mu.Unlock()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) httpServer() *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           s,
		Protocols:         &protocols,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxRequestHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream: 1 << 20,
		},
	}
}

// Shutdown stops accepting connections and waits for in-flight requests
// to finish, until ctx is done. Mirrors still running are abandoned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
