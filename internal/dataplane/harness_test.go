package dataplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/telemetry"
	"github.com/michi-mesh/michi/internal/upstream"
)

// backend is a real HTTP server standing in for a workload. It answers
// with what it received, so tests can assert on what the proxy sent, and
// its behaviour can be steered per request with x-test-* headers.
type backend struct {
	name     string
	srv      *httptest.Server
	hits     atomic.Int64
	mu       sync.Mutex
	last     *http.Request
	lastBody []byte
	handler  http.HandlerFunc // optional override
}

// echo is what a backend answers with.
type echo struct {
	Backend string      `json:"backend"`
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	Path    string      `json:"path"` // RequestURI as received
	Header  http.Header `json:"header"`
	Body    string      `json:"body"`
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	b.srv.Config.Protocols = &p
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.last = r
	b.lastBody = body
	h := b.handler
	b.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	if d := r.Header.Get("X-Test-Delay"); d != "" {
		dur, _ := time.ParseDuration(d)
		select {
		case <-time.After(dur):
		case <-r.Context().Done():
			return
		}
	}
	if s := r.Header.Get("X-Test-Fail-" + b.name); s != "" {
		var code int
		fmt.Sscanf(s, "%d", &code)
		w.WriteHeader(code)
		return
	}
	code := http.StatusOK
	if s := r.Header.Get("X-Test-Status"); s != "" {
		fmt.Sscanf(s, "%d", &code)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Backend", b.name)
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(echo{Backend: b.name, Method: r.Method, Host: r.Host, Path: r.RequestURI, Header: r.Header, Body: string(body)})
}

// setHandler replaces the echo behaviour.
func (b *backend) setHandler(h http.HandlerFunc) {
	b.mu.Lock()
	b.handler = h
	b.mu.Unlock()
}

// addr is the backend's host:port.
func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// port is the backend's port.
func (b *backend) port() string {
	_, p, _ := net.SplitHostPort(b.addr())
	return p
}

// proxy is a michi dataplane on a loopback listener, configured from
// Istio YAML through the real loader, validator, compiler and upstream
// manager.
type proxy struct {
	t       *testing.T
	srv     *Server
	url     string // http://127.0.0.1:port
	addr    string
	mgr     *upstream.Manager
	log     *bytes.Buffer
	logMu   *sync.Mutex
	client  *http.Client
	opts    compile.Options
	sleeps  []time.Duration
	sleepMu sync.Mutex
}

type proxyOption func(*Options, *compile.Options)

// withRand fixes the dataplane's random source.
func withRand(f func() uint64) proxyOption {
	return func(o *Options, _ *compile.Options) { o.Rand = f }
}

func withCompile(f func(*compile.Options)) proxyOption {
	return func(_ *Options, c *compile.Options) { f(c) }
}

func withOptions(f func(*Options)) proxyOption {
	return func(o *Options, _ *compile.Options) { f(o) }
}

// render executes a YAML template with the backends' ports: {{.v1}} is the
// port of the backend named v1.
func render(t *testing.T, tmpl string, backends ...*backend) string {
	t.Helper()
	data := map[string]string{}
	for _, b := range backends {
		data[b.name] = b.port()
	}
	var out bytes.Buffer
	if err := template.Must(template.New("cfg").Option("missingkey=error").Parse(tmpl)).Execute(&out, data); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func newProxy(t *testing.T, yaml string, opts ...proxyOption) *proxy {
	return newProxyWith(t, yaml, upstream.Options{}, opts...)
}

// newProxyWith is newProxy with upstream manager options, such as a mesh
// identity.
func newProxyWith(t *testing.T, yaml string, upOpts upstream.Options, opts ...proxyOption) *proxy {
	t.Helper()
	p := &proxy{t: t, log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	upOpts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr := upstream.NewManager(upOpts)
	t.Cleanup(mgr.Close)
	p.mgr = mgr
	al, err := telemetry.NewAccessLog(lockedWriter{p.logMu, p.log}, "text")
	if err != nil {
		t.Fatal(err)
	}
	dopts := Options{
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		AccessLog:   al,
		Passthrough: mgr.Passthrough(),
		Sleep: func(ctx context.Context, d time.Duration) error {
			p.sleepMu.Lock()
			p.sleeps = append(p.sleeps, d)
			p.sleepMu.Unlock()
			return ctx.Err()
		},
	}
	p.opts = compile.Options{
		Proxy:          routing.Proxy{Role: routing.RoleMesh, Namespace: "default"},
		OutboundPolicy: routing.AllowAny,
	}
	for _, o := range opts {
		o(&dopts, &p.opts)
	}
	p.srv = New(dopts)
	p.apply(yaml)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
	})
	p.addr = ln.Addr().String()
	p.url = "http://" + p.addr
	// Every request goes through michi as an HTTP proxy (absolute-form
	// request line), the way HTTP_PROXY users send it.
	proxyURL, _ := url.Parse(p.url)
	p.client = &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 20 * time.Second,
	}
	return p
}

// apply compiles yaml and publishes it, failing the test on any error.
func (p *proxy) apply(yaml string) *routing.Table {
	t := p.t
	t.Helper()
	set, diags := config.LoadBytes("test.yaml", []byte(yaml), config.LoadOptions{})
	diags = append(diags, config.Validate(set, config.ValidateOptions{})...)
	if diags.HasErrors() {
		for _, d := range diags {
			t.Log(d.String())
		}
		t.Fatal("invalid test config")
	}
	reg := registry.Build(set, "")
	table, cdiags := compile.Compile(set, reg, p.opts)
	if cdiags.HasErrors() {
		for _, d := range cdiags {
			t.Log(d.String())
		}
		t.Fatal("test config does not compile")
	}
	p.srv.Publish(table, p.mgr.Update(table.Clusters))
	return table
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// accessLog returns the access log lines written so far.
func (p *proxy) accessLog() []string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	s := strings.TrimSpace(p.log.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// lastLog waits briefly for the access-log line of the last request (the
// line is written after the response is sent) and returns it.
func (p *proxy) lastLog(n int) string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		lines := p.accessLog()
		if len(lines) >= n {
			return lines[n-1]
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("access log has %d lines, want %d", len(lines), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// do sends a request through the proxy. target is "http://host:port/path".
func (p *proxy) do(method, target string, hdr map[string]string, body string) *response {
	p.t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rb)
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := &response{Response: resp, body: data}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		var e echo
		if json.Unmarshal(data, &e) == nil {
			out.echo = &e
		}
	}
	return out
}

func (p *proxy) get(target string, hdr map[string]string) *response {
	p.t.Helper()
	return p.do("GET", target, hdr, "")
}

type response struct {
	*http.Response
	body []byte
	echo *echo
}

// backendName is the backend that answered, or "".
func (r *response) backendName() string {
	if r.echo == nil {
		return ""
	}
	return r.echo.Backend
}
