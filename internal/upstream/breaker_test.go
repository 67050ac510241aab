package upstream

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// TestIstioCircuitBreakingTask reproduces Istio's circuit-breaking task
// (istio.io/latest/docs/tasks/traffic-management/circuit-breaking):
// maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1
// against a fast backend, with fortio-style clients that send their next
// request as soon as the last one is answered. With one client every
// request succeeds; with two or three, a request that arrives while the
// next connection is being established and another request is already
// pending overflows: 503 UO.
func TestIstioCircuitBreakingTask(t *testing.T) {
	b := newBackend(t, ok, false)
	for _, tc := range []struct {
		clients  int
		wantUO   bool
		requests int
	}{
		{clients: 1, wantUO: false, requests: 30},
		{clients: 2, wantUO: true, requests: 30},
		{clients: 3, wantUO: true, requests: 30},
	} {
		t.Run("clients="+itoa(tc.clients), func(t *testing.T) {
			m := newManager(t, Options{})
			cfg := httpCluster("outbound|8000||httpbin.default.svc.cluster.local", b.addr())
			cfg.Policy.ConnectionPool.MaxConnections = 1
			cfg.Policy.ConnectionPool.MaxPendingRequests = 1
			cfg.Policy.ConnectionPool.MaxRequestsPerConnection = 1
			c := update(t, m, cfg)[cfg.Name]

			var mu sync.Mutex
			got := map[string]int{}
			var wg sync.WaitGroup
			for range tc.clients {
				wg.Go(func() {
					for range tc.requests {
						code, _, _, err := get(t, c, AttemptOptions{})
						key := itoa(code)
						if err != nil {
							key = flagOf(err)
							if key == "" {
								key = err.Error()
							}
						}
						mu.Lock()
						got[key]++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			t.Logf("%d clients × %d requests: %v", tc.clients, tc.requests, got)
			total := tc.clients * tc.requests
			if got["200"]+got["UO"] != total {
				t.Fatalf("outcomes = %v, want only 200 and UO", got)
			}
			if tc.wantUO && got["UO"] == 0 {
				t.Errorf("outcomes with %d clients = %v, want some 503 UO", tc.clients, got)
			}
			if !tc.wantUO && got["UO"] != 0 {
				t.Errorf("outcomes with 1 client = %v, want all 200", got)
			}
			if p := stat(t, m, cfg.Name, "upstream_rq_pending_overflow"); p != int64(got["UO"]) {
				t.Errorf("upstream_rq_pending_overflow = %d, want %d (one per UO)", p, got["UO"])
			}
			if n := stat(t, m, cfg.Name, "upstream_rq_total"); n != int64(got["200"]) {
				t.Errorf("upstream_rq_total = %d, want %d", n, got["200"])
			}
			// Every request got its own connection.
			if n := stat(t, m, cfg.Name, "upstream_cx_max_requests"); n != int64(got["200"]) {
				t.Errorf("upstream_cx_max_requests = %d, want %d", n, got["200"])
			}
		})
	}
}

// blocker is a backend whose requests wait until released.
type blocker struct {
	arrived chan struct{}
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{arrived: make(chan struct{}, 100), release: make(chan struct{})}
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.arrived <- struct{}{}
	<-b.release
}

// async starts a request and returns its outcome on a channel.
func async(t *testing.T, c *Cluster, opts AttemptOptions) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, _, _, err := get(t, c, opts)
		ch <- err
	}()
	return ch
}

func TestMaxPendingRequests(t *testing.T) {
	bl := newBlocker()
	b := newBackend(t, bl, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.MaxConnections = 1
	cfg.Policy.ConnectionPool.MaxPendingRequests = 1
	c := update(t, m, cfg)["c"]

	first := async(t, c, AttemptOptions{})
	<-bl.arrived // holds the only connection
	second := async(t, c, AttemptOptions{})
	waitFor(t, "a pending request", func() bool { return stat(t, m, "c", "upstream_rq_pending_active") == 1 })
	if got := stat(t, m, "c", "upstream_cx_overflow"); got != 1 {
		t.Errorf("upstream_cx_overflow = %d after a request found the connection limit reached, want 1", got)
	}
	_, _, _, err := get(t, c, AttemptOptions{})
	if !errors.Is(err, ErrOverflow) || flagOf(err) != "UO" {
		t.Fatalf("third request = %v, want UO overflow", err)
	}
	if got := stat(t, m, "c", "upstream_rq_pending_overflow"); got != 1 {
		t.Errorf("upstream_rq_pending_overflow = %d, want 1", got)
	}
	close(bl.release)
	for i, ch := range []<-chan error{first, second} {
		if err := <-ch; err != nil {
			t.Errorf("request %d = %v, want success (the pending one reuses the connection)", i+1, err)
		}
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("server saw %d connections, want 1", got)
	}
}

func TestMaxRequests(t *testing.T) {
	bl := newBlocker()
	b := newBackend(t, bl, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.MaxRequests = 1
	c := update(t, m, cfg)["c"]

	first := async(t, c, AttemptOptions{})
	<-bl.arrived
	_, _, _, err := get(t, c, AttemptOptions{})
	if flagOf(err) != "UO" {
		t.Fatalf("second concurrent request with maxRequests 1 = %v, want UO", err)
	}
	// Envoy counts a max_requests overflow as a pending overflow.
	if got := stat(t, m, "c", "upstream_rq_pending_overflow"); got != 1 {
		t.Errorf("upstream_rq_pending_overflow = %d, want 1", got)
	}
	if got := stat(t, m, "c", "circuit_breakers.default.rq_open"); got != 1 {
		t.Errorf("circuit_breakers.default.rq_open = %d while at the limit, want 1", got)
	}
	close(bl.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
		t.Errorf("request after the first finished = %v, want success", err)
	}
}

func TestMaxRetries(t *testing.T) {
	bl := newBlocker()
	b := newBackend(t, bl, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.MaxRetries = 1
	c := update(t, m, cfg)["c"]

	retry := async(t, c, AttemptOptions{Retry: true})
	<-bl.arrived
	if _, _, _, err := get(t, c, AttemptOptions{Retry: true}); flagOf(err) != "UO" {
		t.Fatalf("second concurrent retry with maxRetries 1 = %v, want UO", err)
	}
	if got := stat(t, m, "c", "upstream_rq_retry_overflow"); got != 1 {
		t.Errorf("upstream_rq_retry_overflow = %d, want 1", got)
	}
	// A first try is not a retry.
	first := async(t, c, AttemptOptions{})
	<-bl.arrived
	close(bl.release)
	for _, ch := range []<-chan error{retry, first} {
		if err := <-ch; err != nil {
			t.Error(err)
		}
	}
	if _, _, _, err := get(t, c, AttemptOptions{Retry: true}); err != nil {
		t.Errorf("retry after the first retry finished = %v, want success", err)
	}
	if got := stat(t, m, "c", "upstream_rq_retry"); got != 2 {
		t.Errorf("upstream_rq_retry = %d, want 2", got)
	}
}

// TestConnectionFloor: max_connections is per cluster, but Envoy still
// opens one connection to a host that has none, so that its requests are
// not stranded behind other hosts' connections.
func TestConnectionFloor(t *testing.T) {
	bl := newBlocker()
	b1, b2 := newBackend(t, bl, false), newBackend(t, bl, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b1.addr(), b2.addr()) // round robin
	cfg.Policy.ConnectionPool.MaxConnections = 1
	c := update(t, m, cfg)["c"]

	first := async(t, c, AttemptOptions{})
	<-bl.arrived
	second := async(t, c, AttemptOptions{})
	<-bl.arrived
	if got := stat(t, m, "c", "upstream_cx_active"); got != 2 {
		t.Errorf("upstream_cx_active = %d, want 2 (one per host despite maxConnections 1)", got)
	}
	if got := stat(t, m, "c", "upstream_cx_overflow"); got != 1 {
		t.Errorf("upstream_cx_overflow = %d, want 1", got)
	}
	close(bl.release)
	for _, ch := range []<-chan error{first, second} {
		if err := <-ch; err != nil {
			t.Error(err)
		}
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	b := newBackend(t, ok, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.MaxRequestsPerConnection = 2
	c := update(t, m, cfg)["c"]
	for range 5 {
		if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.conns.Load(); got != 3 {
		t.Errorf("server saw %d connections for 5 requests at 2 per connection, want 3", got)
	}
	if got := stat(t, m, "c", "upstream_cx_max_requests"); got != 2 {
		t.Errorf("upstream_cx_max_requests = %d, want 2", got)
	}
}

func TestIdleTimeoutClosesConnection(t *testing.T) {
	b := newBackend(t, ok, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.IdleTimeout = 50 * time.Millisecond
	c := update(t, m, cfg)["c"]
	if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	waitFor(t, "the pool to forget the connection", func() bool { return stat(t, m, "c", "upstream_cx_active") == 0 })
	if got := stat(t, m, "c", "upstream_cx_idle_timeout"); got != 1 {
		t.Errorf("upstream_cx_idle_timeout = %d, want 1", got)
	}
	if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
		t.Fatalf("request after the idle close = %v, want a new connection", err)
	}
	if got := b.conns.Load(); got != 2 {
		t.Errorf("server saw %d connections, want 2", got)
	}
}

func TestMaxConnectionDuration(t *testing.T) {
	bl := newBlocker()
	b := newBackend(t, bl, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.MaxConnectionDuration = 50 * time.Millisecond
	c := update(t, m, cfg)["c"]
	first := async(t, c, AttemptOptions{})
	<-bl.arrived
	waitFor(t, "the connection to reach its maximum duration", func() bool {
		return stat(t, m, "c", "upstream_cx_max_duration_reached") == 1
	})
	// The request in flight finishes; the connection then closes.
	close(bl.release)
	if err := <-first; err != nil {
		t.Fatalf("request in flight when the duration passed = %v, want success", err)
	}
	select {
	case <-b.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the expired connection was not closed after its request")
	}
}

func TestPendingRequestCancelled(t *testing.T) {
	bl := newBlocker()
	b := newBackend(t, bl, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.MaxConnections = 1
	c := update(t, m, cfg)["c"]
	first := async(t, c, AttemptOptions{})
	<-bl.arrived

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := c.RoundTrip(ctx, newRequest(t, "GET", "/").WithContext(ctx), AttemptOptions{})
	if !errors.Is(err, context.DeadlineExceeded) || flagOf(err) != "UT" {
		t.Fatalf("pending request past its deadline = %v, want UT wrapping context.DeadlineExceeded", err)
	}
	if got := stat(t, m, "c", "upstream_rq_pending_active"); got != 0 {
		t.Errorf("upstream_rq_pending_active = %d after the pending request gave up, want 0", got)
	}
	close(bl.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// TestRetryBudget: a retry budget replaces max_retries with a share of
// the active and pending requests, never below its minimum concurrency.
func TestRetryBudget(t *testing.T) {
	bl := newBlocker()
	b := newBackend(t, bl, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Policy.ConnectionPool.MaxRetries = 1000 // ignored with a budget
	cfg.Policy.RetryBudget = &routing.RetryBudget{Percent: 50, MinRetryConcurrency: 1}
	c := update(t, m, cfg)["c"]

	var inflight []<-chan error
	start := func(retry bool) {
		inflight = append(inflight, async(t, c, AttemptOptions{Retry: retry}))
		<-bl.arrived
	}
	start(true) // the minimum concurrency admits one retry
	if _, _, _, err := get(t, c, AttemptOptions{Retry: true}); flagOf(err) != "UO" {
		t.Fatalf("second retry with 1 request active = %v, want UO (budget max(1, 50%% of 1))", err)
	}
	for range 3 {
		start(false)
	}
	// 4 requests active: 50% admits 2 retries, one is in flight.
	start(true)
	if _, _, _, err := get(t, c, AttemptOptions{Retry: true}); flagOf(err) != "UO" {
		t.Fatalf("third retry with 5 requests active = %v, want UO (budget 50%% of 5 = 2)", err)
	}
	if got := stat(t, m, "c", "upstream_rq_retry_overflow"); got != 2 {
		t.Errorf("upstream_rq_retry_overflow = %d, want 2", got)
	}
	close(bl.release)
	for _, ch := range inflight {
		if err := <-ch; err != nil {
			t.Error(err)
		}
	}
}

// TestHTTP2StreamLimits: a connection carries at most
// maxConcurrentStreams requests, and no more than the server allows; the
// pool opens another connection for the rest.
func TestHTTP2StreamLimits(t *testing.T) {
	for _, tc := range []struct {
		name          string
		clientStreams uint32
		serverStreams int
	}{
		{name: "maxConcurrentStreams", clientStreams: 1},
		{name: "server SETTINGS", serverStreams: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bl := newBlocker()
			b := newBackendWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/block" {
					bl.ServeHTTP(w, r)
				}
			}), true, func(s *http.Server) {
				if tc.serverStreams > 0 {
					s.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: tc.serverStreams}
				}
			})
			m := newManager(t, Options{})
			cfg := httpCluster("c", b.addr())
			cfg.Protocol = "HTTP2"
			cfg.Policy.ConnectionPool.MaxConcurrentStreams = tc.clientStreams
			c := update(t, m, cfg)["c"]
			// A first exchange makes sure the server's SETTINGS are in.
			if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
				t.Fatal(err)
			}
			var done []<-chan error
			for range 2 {
				ch := make(chan error, 1)
				go func() {
					_, _, _, err := send(t, c, newRequest(t, "GET", "/block"), AttemptOptions{})
					ch <- err
				}()
				done = append(done, ch)
				<-bl.arrived
			}
			close(bl.release)
			for _, ch := range done {
				if err := <-ch; err != nil {
					t.Error(err)
				}
			}
			if got := b.conns.Load(); got != 2 {
				t.Errorf("server saw %d connections for 2 concurrent requests at 1 stream each, want 2", got)
			}
		})
	}
}

func TestActiveRequestsReleased(t *testing.T) {
	b := newBackend(t, ok, true)
	for _, protocol := range []string{"HTTP", "HTTP2"} {
		t.Run(protocol, func(t *testing.T) {
			m := newManager(t, Options{})
			cfg := httpCluster("c", b.addr())
			cfg.Protocol = protocol
			c := update(t, m, cfg)["c"]
			resp, _, err := c.RoundTrip(t.Context(), newRequest(t, "GET", "/"), AttemptOptions{})
			if err != nil {
				t.Fatal(err)
			}
			es := m.Status()
			var active int64
			for _, cs := range es {
				if cs.Name == "c" {
					active = cs.Endpoints[0].ActiveRequests
				}
			}
			if active != 1 {
				t.Errorf("endpoint ActiveRequests = %d with a body open, want 1", active)
			}
			resp.Body.Close()
			resp.Body.Close()
			for _, cs := range m.Status() {
				if cs.Name == "c" && cs.Endpoints[0].ActiveRequests != 0 {
					t.Errorf("endpoint ActiveRequests = %d after Close, want 0", cs.Endpoints[0].ActiveRequests)
				}
			}
			if got := stat(t, m, "c", "upstream_rq_active"); got != 0 {
				t.Errorf("upstream_rq_active = %d after Close, want 0", got)
			}
		})
	}
}
