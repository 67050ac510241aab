package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/michi-mesh/michi/internal/routing"
)

func TestRoundTripReusesHTTP1Connection(t *testing.T) {
	b := newBackend(t, ok, false)
	m := newManager(t, Options{})
	c := update(t, m, httpCluster("outbound|80||svc", b.addr()))["outbound|80||svc"]

	for i := range 5 {
		code, body, att, err := get(t, c, AttemptOptions{})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if code != 200 || body != "ok" {
			t.Fatalf("request %d = %d %q, want 200 \"ok\"", i, code, body)
		}
		if att.Endpoint != b.addr() {
			t.Errorf("request %d endpoint = %q, want %q", i, att.Endpoint, b.addr())
		}
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("server saw %d connections for 5 sequential requests, want 1", got)
	}
	if got := stat(t, m, c.Name(), "upstream_rq_total"); got != 5 {
		t.Errorf("upstream_rq_total = %d, want 5", got)
	}
	if got := stat(t, m, c.Name(), "upstream_rq_active"); got != 0 {
		t.Errorf("upstream_rq_active = %d after all bodies closed, want 0", got)
	}
	if got := stat(t, m, c.Name(), "upstream_cx_active"); got != 1 {
		t.Errorf("upstream_cx_active = %d, want 1", got)
	}
}

func TestRoundTripConcurrentHTTP1OpensOneConnectionPerRequest(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 3)
	b := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}), false)
	m := newManager(t, Options{})
	c := update(t, m, httpCluster("c", b.addr()))["c"]

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	for range 3 {
		<-arrived
	}
	if got := stat(t, m, "c", "upstream_rq_active"); got != 3 {
		t.Errorf("upstream_rq_active = %d with 3 requests at the server, want 3", got)
	}
	close(release)
	wg.Wait()
	if got := b.conns.Load(); got != 3 {
		t.Errorf("server saw %d connections for 3 concurrent HTTP/1.1 requests, want 3", got)
	}
}

func TestRoundTripH2C(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	b := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		arrived <- struct{}{}
		<-release
	}), true)
	m := newManager(t, Options{})
	cfg := httpCluster("c", b.addr())
	cfg.Protocol = "HTTP2"
	c := update(t, m, cfg)["c"]

	var wg sync.WaitGroup
	protos := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			resp, _, err := c.RoundTrip(context.Background(), newRequest(t, "GET", "/"), AttemptOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			protos <- resp.Header.Get("X-Proto")
			resp.Body.Close()
		})
	}
	for range 4 {
		<-arrived
	}
	close(release)
	wg.Wait()
	close(protos)
	for p := range protos {
		if p != "HTTP/2.0" {
			t.Errorf("upstream saw %q, want HTTP/2.0", p)
		}
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("server saw %d connections for 4 concurrent HTTP/2 requests, want 1 (multiplexed)", got)
	}
	if got := stat(t, m, "c", "upstream_cx_http2_total"); got != 1 {
		t.Errorf("upstream_cx_http2_total = %d, want 1", got)
	}
}

func TestUpstreamProtocol(t *testing.T) {
	b := newBackend(t, ok, true)
	tests := []struct {
		name         string
		protocol     string
		upgrade      string
		useClient    bool
		downstreamH2 bool
		websocket    bool
		want         string
	}{
		{name: "http port", protocol: "HTTP", want: "HTTP/1.1"},
		{name: "http2 port", protocol: "HTTP2", want: "HTTP/2.0"},
		{name: "grpc port", protocol: "GRPC", want: "HTTP/2.0"},
		{name: "h2 upgrade policy", protocol: "HTTP", upgrade: "UPGRADE", want: "HTTP/2.0"},
		{name: "do not upgrade", protocol: "HTTP", upgrade: "DO_NOT_UPGRADE", want: "HTTP/1.1"},
		{name: "client protocol h1", protocol: "HTTP2", useClient: true, want: "HTTP/1.1"},
		{name: "client protocol h2", protocol: "HTTP", useClient: true, downstreamH2: true, want: "HTTP/2.0"},
		{name: "upgrade request stays h1", protocol: "HTTP2", websocket: true, want: "HTTP/1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, Options{})
			cfg := httpCluster("c", b.addr())
			cfg.Protocol = tc.protocol
			cfg.Policy.ConnectionPool.H2UpgradePolicy = tc.upgrade
			cfg.Policy.ConnectionPool.UseClientProtocol = tc.useClient
			c := update(t, m, cfg)["c"]
			req := newRequest(t, "GET", "/")
			if tc.websocket {
				// The backend does not switch; the request must still
				// go over HTTP/1.1.
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Connection", "Upgrade")
			}
			resp, _, err := c.RoundTrip(context.Background(), req, AttemptOptions{DownstreamHTTP2: tc.downstreamH2})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Proto"); got != tc.want {
				t.Errorf("upstream protocol = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConnectFailureIsUF(t *testing.T) {
	// A port nothing listens on: bind, note the address, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	m := newManager(t, Options{})
	c := update(t, m, httpCluster("c", addr))["c"]
	_, _, att, err := get(t, c, AttemptOptions{})
	var ue *Error
	if !errors.As(err, &ue) || ue.Flag != "UF" || !ue.BeforeRequest {
		t.Fatalf("RoundTrip to a closed port = %v, want UF before request", err)
	}
	if att.Endpoint != addr {
		t.Errorf("attempt endpoint = %q, want %q", att.Endpoint, addr)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %q does not say the connection was refused", err)
	}
	for name, want := range map[string]int64{"upstream_cx_connect_fail": 1, "upstream_cx_active": 0, "upstream_rq_pending_active": 0, "upstream_rq_active": 0} {
		if got := stat(t, m, "c", name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

func TestConnectTimeout(t *testing.T) {
	// A listener whose backlog is full never completes another
	// handshake: fill it with connections nobody accepts.
	addr := blackhole(t)
	m := newManager(t, Options{})
	cfg := httpCluster("c", addr)
	cfg.Policy.ConnectionPool.ConnectTimeout = 100 * time.Millisecond
	c := update(t, m, cfg)["c"]

	start := time.Now()
	_, _, _, err := get(t, c, AttemptOptions{})
	if flagOf(err) != "UF" {
		t.Fatalf("RoundTrip to a blackhole = %v, want UF", err)
	}
	if !strings.Contains(err.Error(), "connect timeout") {
		t.Errorf("error %q does not name the connect timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("connect took %v, want about the 100ms connect timeout", d)
	}
	if got := stat(t, m, "c", "upstream_cx_connect_timeout"); got != 1 {
		t.Errorf("upstream_cx_connect_timeout = %d, want 1", got)
	}
}

// blackhole returns an address that completes no more TCP handshakes: a
// socket listening with a backlog of one, filled by connections it never
// accepts (Linux then drops further SYNs). If the kernel still completes
// handshakes, it skips the test.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skip("raw socket:", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	var fill []net.Conn
	t.Cleanup(func() {
		for _, c := range fill {
			c.Close()
		}
	})
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr // the backlog is full
		}
		fill = append(fill, c)
	}
	t.Skip("could not fill the listen backlog")
	return ""
}

func TestNoEndpointsIsUH(t *testing.T) {
	m := newManager(t, Options{})
	c := update(t, m, httpCluster("c"))["c"]
	_, _, att, err := get(t, c, AttemptOptions{})
	if !errors.Is(err, ErrNoHealthyUpstream) || flagOf(err) != "UH" {
		t.Fatalf("RoundTrip on a cluster without endpoints = %v, want UH no healthy upstream", err)
	}
	if att.Endpoint != "" {
		t.Errorf("attempt endpoint = %q, want none", att.Endpoint)
	}
	if got := stat(t, m, "c", "upstream_cx_none_healthy"); got != 1 {
		t.Errorf("upstream_cx_none_healthy = %d, want 1", got)
	}
}

func TestRoundRobinAcrossEndpoints(t *testing.T) {
	b1, b2 := newBackend(t, ok, false), newBackend(t, ok, false)
	m := newManager(t, Options{})
	c := update(t, m, httpCluster("c", b1.addr(), b2.addr()))["c"]
	seen := map[string]int{}
	for range 10 {
		_, _, att, err := get(t, c, AttemptOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seen[att.Endpoint]++
	}
	if seen[b1.addr()] != 5 || seen[b2.addr()] != 5 {
		t.Errorf("round robin over 2 endpoints for 10 requests = %v, want 5 each", seen)
	}
}

func TestPassthroughUsesOriginalDst(t *testing.T) {
	b := newBackend(t, ok, false)
	m := newManager(t, Options{})
	c := m.Passthrough()
	code, _, att, err := get(t, c, AttemptOptions{OriginalDst: b.addr()})
	if err != nil || code != 200 {
		t.Fatalf("passthrough = %d, %v; want 200", code, err)
	}
	if att.Endpoint != b.addr() {
		t.Errorf("passthrough endpoint = %q, want %q", att.Endpoint, b.addr())
	}
	if _, _, _, err := get(t, c, AttemptOptions{}); flagOf(err) != "UH" {
		t.Errorf("passthrough without an original destination = %v, want UH", err)
	}
}

func TestOriginalDstCluster(t *testing.T) {
	b := newBackend(t, ok, false)
	m := newManager(t, Options{})
	cfg := httpCluster("c")
	cfg.Discovery = routing.DiscoveryOriginalDst
	c := update(t, m, cfg)["c"]
	if code, _, att, err := get(t, c, AttemptOptions{OriginalDst: b.addr()}); err != nil || code != 200 || att.Endpoint != b.addr() {
		t.Fatalf("ORIGINAL_DST = %d %+v %v, want 200 from %s", code, att, err, b.addr())
	}
}

// TestServerClosingEveryConnection: a server that closes each connection
// as soon as it accepts it must fail the request, not strand it.
func TestServerClosingEveryConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	m := newManager(t, Options{})
	c := update(t, m, httpCluster("c", ln.Addr().String()))["c"]
	for range 5 {
		_, _, _, err := get(t, c, AttemptOptions{})
		if f := flagOf(err); f != "UF" && f != "UC" {
			t.Fatalf("RoundTrip to a server closing every connection = %v, want UF or UC", err)
		}
	}
	if got := stat(t, m, "c", "upstream_rq_pending_active"); got != 0 {
		t.Errorf("upstream_rq_pending_active = %d, want 0", got)
	}
}

func TestRequestErrors(t *testing.T) {
	slow := make(chan struct{})
	t.Cleanup(func() { close(slow) })
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler) // h1: close the connection; h2: RST_STREAM
		case "/slow":
			select {
			case <-slow:
			case <-r.Context().Done():
			}
		}
	})
	b := newBackend(t, h, true)
	tests := []struct {
		name     string
		protocol string
		path     string
		timeout  time.Duration
		wantFlag string
		wantIs   error
	}{
		{name: "h1 connection closed", protocol: "HTTP", path: "/abort", wantFlag: "UC"},
		{name: "h2 stream reset", protocol: "HTTP2", path: "/abort", wantFlag: "UR"},
		{name: "try deadline", protocol: "HTTP", path: "/slow", timeout: 50 * time.Millisecond, wantFlag: "UT", wantIs: context.DeadlineExceeded},
		{name: "h2 try deadline", protocol: "HTTP2", path: "/slow", timeout: 50 * time.Millisecond, wantFlag: "UT", wantIs: context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, Options{})
			cfg := httpCluster("c", b.addr())
			cfg.Protocol = tc.protocol
			c := update(t, m, cfg)["c"]
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			_, _, err := c.RoundTrip(ctx, newRequest(t, "GET", tc.path).WithContext(ctx), AttemptOptions{})
			if flagOf(err) != tc.wantFlag {
				t.Fatalf("RoundTrip = %v, want flag %s", err, tc.wantFlag)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("RoundTrip = %v, want it to wrap %v", err, tc.wantIs)
			}
			for _, s := range []string{"upstream_rq_active", "upstream_rq_pending_active"} {
				if got := stat(t, m, "c", s); got != 0 {
					t.Errorf("%s = %d after the failure, want 0", s, got)
				}
			}
		})
	}
}

// TestServerClosesIdleConnection: a keep-alive connection the server
// closes while idle leaves the pool, and the next request dials anew.
func TestServerClosesIdleConnection(t *testing.T) {
	b := newBackendWith(t, ok, false, func(s *http.Server) { s.IdleTimeout = 20 * time.Millisecond })
	m := newManager(t, Options{})
	c := update(t, m, httpCluster("c", b.addr()))["c"]
	if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not close the idle connection")
	}
	waitFor(t, "the pool to drop the closed connection", func() bool { return stat(t, m, "c", "upstream_cx_active") == 0 })
	if _, _, _, err := get(t, c, AttemptOptions{}); err != nil {
		t.Fatalf("request after the server closed the idle connection = %v", err)
	}
	if got := b.conns.Load(); got != 2 {
		t.Errorf("server saw %d connections, want 2", got)
	}
}

// TestStrictDNSEndpoint: DNS endpoints are host:port, resolved when a
// connection is made.
func TestStrictDNSEndpoint(t *testing.T) {
	b := newBackend(t, ok, false)
	_, port, _ := net.SplitHostPort(b.addr())
	m := newManager(t, Options{})
	cfg := httpCluster("c", net.JoinHostPort("localhost", port))
	cfg.Discovery = routing.DiscoveryDNS
	c := update(t, m, cfg)["c"]
	code, _, att, err := get(t, c, AttemptOptions{})
	if err != nil || code != 200 {
		t.Fatalf("request to a DNS endpoint = %d, %v", code, err)
	}
	if want := net.JoinHostPort("localhost", port); att.Endpoint != want {
		t.Errorf("endpoint = %q, want %q", att.Endpoint, want)
	}
}

// refusingH2Server speaks just enough cleartext HTTP/2 to refuse every
// stream with RST_STREAM REFUSED_STREAM.
func refusingH2Server(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, preface); err != nil {
					return
				}
				fr := http2.NewFramer(c, c)
				if fr.WriteSettings() != nil {
					return
				}
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							fr.WriteSettingsAck()
						}
					case *http2.HeadersFrame:
						fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRefusedStream(t *testing.T) {
	m := newManager(t, Options{})
	cfg := httpCluster("c", refusingH2Server(t))
	cfg.Protocol = "HTTP2"
	c := update(t, m, cfg)["c"]
	_, _, _, err := get(t, c, AttemptOptions{})
	var ue *Error
	if !errors.As(err, &ue) || ue.Flag != "UR" || !ue.RefusedStream {
		t.Fatalf("RoundTrip to a server refusing the stream = %v, want UR with RefusedStream", err)
	}
	if got := stat(t, m, "c", "upstream_rq_rx_reset"); got != 1 {
		t.Errorf("upstream_rq_rx_reset = %d, want 1", got)
	}
}
