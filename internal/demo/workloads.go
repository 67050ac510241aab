package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MeshPort is the port every demo service has in the mesh: Bookinfo's
// 9080. The workloads themselves listen on random loopback ports, which
// the ServiceEntries map this port to.
const MeshPort = 9080

// Headers the workloads set on every answer, so that a client can tell
// which instance served it without reading the body.
const (
	HeaderApp     = "X-Demo-App"
	HeaderVersion = "X-Demo-Version"
)

// propagated are the request headers a workload copies onto the calls it
// makes. Istio routes on headers but cannot carry them from an incoming
// request to the outgoing ones; the application must (Bookinfo's
// productpage forwards end-user and the tracing headers for exactly this
// reason), or a header rule further down the chain never matches.
var propagated = []string{"End-User", "X-Test-User", "X-Request-Id", "Traceparent"}

// ratingsServiceTime is how long a healthy ratings instance takes to
// answer. It stands in for a database lookup, and it is what lets a burst
// of parallel requests overlap long enough to trip the circuit breaker.
const ratingsServiceTime = 10 * time.Millisecond

// Workload is one instance of a demo service.
type Workload struct {
	// Name is unique among the workloads: "reviews-v2", "ratings-v1-broken".
	Name string
	// App is the service the instance belongs to, and Version its version
	// label, which the DestinationRule subsets select.
	App, Version string
	// Broken marks the ratings instance that answers 503 to everything,
	// for outlier detection to eject.
	Broken bool
	// Addr is where the instance listens, 127.0.0.1:port, and Port its
	// port.
	Addr string
	Port int

	srv *http.Server
}

// Workloads are the running demo services. They call each other through
// the mesh address set with SetMesh, like applications whose sidecar
// captures their outbound traffic. Workloads is safe for concurrent use.
type Workloads struct {
	list      []*Workload
	mesh      atomic.Pointer[url.URL]
	transport *http.Transport
	client    *http.Client
	serving   sync.WaitGroup
}

// catalogue is the Bookinfo-like set: productpage calls reviews; reviews
// v2 and v3 call ratings, v1 does not (as in Bookinfo); one of the two
// ratings instances is broken.
var catalogue = []Workload{
	{Name: "productpage-v1", App: "productpage", Version: "v1"},
	{Name: "reviews-v1", App: "reviews", Version: "v1"},
	{Name: "reviews-v2", App: "reviews", Version: "v2"},
	{Name: "reviews-v3", App: "reviews", Version: "v3"},
	{Name: "ratings-v1", App: "ratings", Version: "v1"},
	{Name: "ratings-v1-broken", App: "ratings", Version: "v1", Broken: true},
}

// StartWorkloads starts every demo workload on its own random loopback
// port. Close stops them.
func StartWorkloads() (*Workloads, error) {
	ws := &Workloads{}
	ws.transport = &http.Transport{
		Proxy:               ws.proxy,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	ws.client = &http.Client{Transport: ws.transport}
	for _, spec := range catalogue {
		wl := spec
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ws.Close()
			return nil, fmt.Errorf("start workload %s: %w", wl.Name, err)
		}
		wl.Addr = ln.Addr().String()
		wl.Port = ln.Addr().(*net.TCPAddr).Port
		wl.srv = &http.Server{Handler: ws.handler(&wl), ReadHeaderTimeout: 10 * time.Second}
		ws.list = append(ws.list, &wl)
		ws.serving.Add(1)
		go func() {
			defer ws.serving.Done()
			wl.srv.Serve(ln)
		}()
	}
	return ws, nil
}

// List returns the workloads in catalogue order. They must not be
// modified.
func (ws *Workloads) List() []*Workload { return ws.list }

// Ports maps each workload's name to its loopback port, for the
// configuration's ServiceEntries.
func (ws *Workloads) Ports() map[string]int {
	ports := make(map[string]int, len(ws.list))
	for _, wl := range ws.list {
		ports[wl.Name] = wl.Port
	}
	return ports
}

// SetMesh points the workloads' outbound calls at the proxy's mesh
// listener, host:port. Until it is called, calls fail.
func (ws *Workloads) SetMesh(addr string) {
	ws.mesh.Store(&url.URL{Scheme: "http", Host: addr})
}

// proxy sends every outbound request to the mesh listener as an HTTP
// proxy request (absolute-form URL), the way HTTP_PROXY would.
func (ws *Workloads) proxy(*http.Request) (*url.URL, error) {
	u := ws.mesh.Load()
	if u == nil {
		return nil, errors.New("the mesh is not up yet")
	}
	return u, nil
}

// Close stops every workload, dropping requests in flight, and waits for
// their servers to return.
func (ws *Workloads) Close() error {
	var errs []error
	for _, wl := range ws.list {
		if err := wl.srv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	ws.serving.Wait()
	ws.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

func (ws *Workloads) handler(wl *Workload) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderApp, wl.App)
		w.Header().Set(HeaderVersion, wl.Version)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		status, body := ws.answer(wl, r)
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
}

// answer is what each workload says. The first line always names the
// instance ("reviews v2 (stars: black)"); the lines below it, indented,
// are what the services it called said.
func (ws *Workloads) answer(wl *Workload, r *http.Request) (int, string) {
	head := wl.App + " " + wl.Version
	switch {
	case wl.App == "productpage":
		if user := r.Header.Get("End-User"); user != "" {
			head += " (user: " + user + ")"
		}
		return http.StatusOK, head + "\n" + indent(ws.call(r, "reviews", "/reviews/0"))
	case wl.App == "reviews" && wl.Version == "v1":
		return http.StatusOK, head + " (no stars)\n"
	case wl.App == "reviews":
		color := map[string]string{"v2": "black", "v3": "red"}[wl.Version]
		return http.StatusOK, head + " (stars: " + color + ")\n" + indent(ws.call(r, "ratings", "/ratings/0"))
	case wl.Broken:
		return http.StatusServiceUnavailable, head + " (broken instance): database connection lost\n"
	default:
		if err := sleep(r.Context(), ratingsServiceTime); err != nil {
			return http.StatusServiceUnavailable, head + ": " + err.Error() + "\n"
		}
		return http.StatusOK, head + ": 4 of 5 stars\n"
	}
}

// call asks another service through the mesh, carrying the propagated
// headers, and returns its answer or one line saying why there is none.
// Like Bookinfo, a failed call degrades the page instead of failing it.
func (ws *Workloads) call(in *http.Request, app, path string) string {
	req, err := http.NewRequestWithContext(in.Context(), http.MethodGet, fmt.Sprintf("http://%s:%d%s", app, MeshPort, path), nil)
	if err != nil {
		return app + " unavailable: " + err.Error() + "\n"
	}
	for _, h := range propagated {
		if v := in.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	resp, err := ws.client.Do(req)
	if err != nil {
		return app + " unavailable: " + err.Error() + "\n"
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return app + " unavailable: " + err.Error() + "\n"
	}
	if resp.StatusCode != http.StatusOK {
		first, _, _ := strings.Cut(string(body), "\n")
		return fmt.Sprintf("%s unavailable: %s: %s\n", app, resp.Status, first)
	}
	return string(body)
}

// indent shifts every line of s right by two spaces.
func indent(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
