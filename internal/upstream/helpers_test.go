package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// backend is a real upstream server on loopback that counts the
// connections it accepts.
type backend struct {
	*httptest.Server
	conns  atomic.Int64  // connections accepted
	closed chan struct{} // one value per connection closed
}

// newBackend starts an HTTP/1.1 (and, with h2c, cleartext HTTP/2) server.
func newBackend(t *testing.T, h http.Handler, h2c bool) *backend {
	t.Helper()
	return newBackendWith(t, h, h2c, nil)
}

// newBackendWith is newBackend with a hook to adjust the server before it
// starts.
func newBackendWith(t *testing.T, h http.Handler, h2c bool, setup func(*http.Server)) *backend {
	t.Helper()
	b := &backend{closed: make(chan struct{}, 1024)}
	b.Server = httptest.NewUnstartedServer(h)
	if h2c {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		b.Config.Protocols = &p
	}
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.closed <- struct{}{}
		}
	}
	if setup != nil {
		setup(b.Config)
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return b.Listener.Addr().String() }

// ok answers 200 with the protocol the request came in on.
var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Proto", r.Proto)
	io.WriteString(w, "ok")
})

// status answers with a fixed code.
func status(code int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
}

// istioPool is a connection pool with Istio's defaults.
func istioPool() routing.ConnectionPool {
	return routing.ConnectionPool{
		MaxConnections:     routing.Unlimited,
		MaxPendingRequests: routing.Unlimited,
		MaxRequests:        routing.Unlimited,
		MaxRetries:         routing.Unlimited,
		ConnectTimeout:     10 * time.Second,
		IdleTimeout:        time.Hour,
	}
}

// httpCluster is a STATIC HTTP cluster over addrs with Istio's defaults.
func httpCluster(name string, addrs ...string) *routing.Cluster {
	c := &routing.Cluster{
		Name:      name,
		Host:      "svc.default.svc.cluster.local",
		Port:      80,
		Namespace: "default",
		Protocol:  "HTTP",
		Discovery: routing.DiscoveryStatic,
		Policy: routing.Policy{
			LoadBalancer:   routing.LoadBalancer{Policy: routing.LBRoundRobin},
			ConnectionPool: istioPool(),
		},
	}
	for _, a := range addrs {
		c.Endpoints = append(c.Endpoints, routing.Endpoint{Address: a, Weight: 1})
	}
	return c
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeTicker is a Ticker the test fires by hand.
type fakeTicker struct {
	ch chan time.Time
}

func (t *fakeTicker) C() <-chan time.Time   { return t.ch }
func (t *fakeTicker) Reset(d time.Duration) {}
func (t *fakeTicker) Stop()                 {}

// tickers records the fake tickers a Manager creates.
type tickers struct {
	mu  sync.Mutex
	all []*fakeTicker
}

func (ts *tickers) newTicker(time.Duration) Ticker {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := &fakeTicker{ch: make(chan time.Time)}
	ts.all = append(ts.all, t)
	return t
}

// tick fires the last ticker and waits until the sweep it started is
// done: the unbuffered channel accepts the second send only once the
// sweep goroutine is back in its select. The second tick sweeps again,
// which only matters for the ejection multiplier's decay, so tests of it
// call Cluster.sweep directly instead.
func (ts *tickers) tick(now time.Time) {
	ts.mu.Lock()
	t := ts.all[len(ts.all)-1]
	ts.mu.Unlock()
	t.ch <- now
}

// newManager returns a Manager closed at the end of the test.
func newManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	m := NewManager(opts)
	t.Cleanup(m.Close)
	return m
}

// update publishes clusters and returns the handle of the first.
func update(t *testing.T, m *Manager, cs ...*routing.Cluster) map[string]*Cluster {
	t.Helper()
	in := map[string]*routing.Cluster{}
	for _, c := range cs {
		in[c.Name] = c
	}
	return m.Update(in)
}

// get sends a GET through c and returns status, body and endpoint.
func get(t *testing.T, c *Cluster, opts AttemptOptions) (int, string, Attempt, error) {
	t.Helper()
	return send(t, c, newRequest(t, "GET", "/"), opts)
}

func newRequest(t *testing.T, method, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://svc.default.svc.cluster.local"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func send(t *testing.T, c *Cluster, req *http.Request, opts AttemptOptions) (int, string, Attempt, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, att, err := c.RoundTrip(ctx, req.WithContext(ctx), opts)
	if err != nil {
		return 0, "", att, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", att, err
	}
	return resp.StatusCode, string(b), att, nil
}

// flagOf returns the response flag of an upstream error.
func flagOf(err error) string {
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Flag
	}
	return ""
}

// stat reads one stat of a cluster from Status.
func stat(t *testing.T, m *Manager, cluster, name string) int64 {
	t.Helper()
	for _, cs := range m.Status() {
		if cs.Name == cluster {
			v, ok := cs.Stats[name]
			if !ok {
				t.Fatalf("cluster %s has no stat %q", cluster, name)
			}
			return v
		}
	}
	t.Fatalf("no cluster %s in Status", cluster)
	return 0
}

// waitFor waits for a condition driven by another goroutine (a server
// closing a connection), failing after a generous bound. It yields rather
// than sleeping a fixed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
