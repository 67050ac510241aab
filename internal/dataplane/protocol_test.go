package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestH2CDownstream(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, "")
	var prot http.Protocols
	prot.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &prot}}
	req, _ := http.NewRequest("GET", p.url+"/h2", nil)
	req.Host = "ratings:9080"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "ratings" {
		t.Errorf("h2c: proto %s status %d backend %q", resp.Proto, resp.StatusCode, resp.Header.Get("X-Backend"))
	}
}

// grpcServices declares a gRPC service on a real grpc-go server.
const grpcServices = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hello}
spec:
  hosts: [hello.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  endpoints:
  - {address: 127.0.0.1, ports: {grpc: {{.grpc}}}, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hello}
spec:
  hosts: [hello]
  http:
  - match: [{headers: {x-fault: {exact: abort}}}]
    fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
    route: [{destination: {host: hello}}]
  - match: [{headers: {x-fault: {exact: http}}}]
    fault:
      abort: {httpStatus: 503, percentage: {value: 100}}
    route: [{destination: {host: hello}}]
  - match: [{headers: {x-route: {exact: nowhere}}}]
    route: [{destination: {host: hello, subset: missing}}]
  - route: [{destination: {host: hello}}]
`

func TestGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("michi", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p := newProxy(t, strings.ReplaceAll(grpcServices, "{{.grpc}}", port))

	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("hello:50051"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	call := func(md ...string) (*healthpb.HealthCheckResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if len(md) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, md...)
		}
		return client.Check(ctx, &healthpb.HealthCheckRequest{Service: "michi"})
	}
	t.Run("unary call through the proxy", func(t *testing.T) {
		resp, err := call()
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check = %v, %v; want SERVING", resp, err)
		}
	})
	t.Run("upstream gRPC error status passes through trailers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown-service"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("Check(unknown) error %v, want NotFound", err)
		}
	})
	t.Run("fault abort with grpcStatus", func(t *testing.T) {
		_, err := call("x-fault", "abort")
		if status.Code(err) != codes.Unavailable {
			t.Errorf("error %v, want Unavailable", err)
		}
	})
	t.Run("fault abort with httpStatus maps to a gRPC code", func(t *testing.T) {
		_, err := call("x-fault", "http")
		if status.Code(err) != codes.Unavailable {
			t.Errorf("error %v, want Unavailable (503 -> UNAVAILABLE)", err)
		}
	})
	t.Run("missing cluster answered as gRPC", func(t *testing.T) {
		_, err := call("x-route", "nowhere")
		if status.Code(err) != codes.Unavailable {
			t.Errorf("error %v, want Unavailable", err)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "michi"})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("first Recv = %v, %v", first, err)
		}
		// The proxy must not buffer: a status change arrives while the
		// stream stays open.
		hs.SetServingStatus("michi", healthpb.HealthCheckResponse_NOT_SERVING)
		second, err := stream.Recv()
		if err != nil || second.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("second Recv = %v, %v", second, err)
		}
		hs.SetServingStatus("michi", healthpb.HealthCheckResponse_SERVING)
	})
}

func TestWebSocket(t *testing.T) {
	ws := newBackend(t, "ws")
	ws.setHandler(websocket.Handler(func(c *websocket.Conn) {
		for { // echo whole messages
			var msg string
			if websocket.Message.Receive(c, &msg) != nil {
				return
			}
			websocket.Message.Send(c, msg)
		}
	}).ServeHTTP)
	p := newProxy(t, render(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ws}
spec:
  hosts: [ws.example.com]
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: {{.ws}}}}
`, ws))
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg, err := websocket.NewConfig("ws://ws.example.com:8080/echo", "http://ws.example.com")
	if err != nil {
		t.Fatal(err)
	}
	c, err := websocket.NewClient(cfg, conn)
	if err != nil {
		t.Fatalf("websocket handshake through the proxy: %v", err)
	}
	for _, msg := range []string{"hello", "michi", strings.Repeat("x", 100_000)} {
		if err := websocket.Message.Send(c, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := websocket.Message.Receive(c, &got); err != nil || got != msg {
			t.Fatalf("echo of %d bytes: got %d bytes, err %v", len(msg), len(got), err)
		}
	}
	c.Close()
	if line := p.lastLog(1); !strings.Contains(line, " 101 ") {
		t.Errorf("access log %q lacks 101", line)
	}
}

func TestStreamingAndTrailers(t *testing.T) {
	sse := newBackend(t, "sse")
	release := make(chan struct{})
	sse.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: second\n\n")
		w.Header().Set("X-Checksum", "abc")
	})
	p := newProxy(t, render(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sse}
spec:
  hosts: [sse.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: {{.sse}}}}
`, sse))
	req, _ := http.NewRequest("GET", "http://sse.example.com/stream", nil)
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event %q, %v: the proxy must stream, not buffer", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("rest of stream %q", rest)
	}
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("trailer X-Checksum = %q, want abc", got)
	}
}

func TestHopByHopHeaders(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, "")
	resp := p.get("http://ratings:9080/", map[string]string{
		"Connection":      "keep-alive, X-Private",
		"X-Private":       "secret",
		"Keep-Alive":      "timeout=5",
		"X-Request-Id":    "client-id-1",
		"X-Forwarded-For": "10.1.1.1",
	})
	h := resp.echo.Header
	for _, name := range []string{"X-Private", "Keep-Alive"} {
		if h.Get(name) != "" {
			t.Errorf("hop-by-hop header %s reached the upstream", name)
		}
	}
	if h.Get("X-Request-Id") != "client-id-1" {
		t.Errorf("x-request-id %q, want the client's", h.Get("X-Request-Id"))
	}
	if h.Get("X-Forwarded-For") != "10.1.1.1, 127.0.0.1" {
		t.Errorf("x-forwarded-for %q, want appended", h.Get("X-Forwarded-For"))
	}
}

func TestBadRequests(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, "", withOptions(func(o *Options) { o.ReadHeaderTimeout = 300 * time.Millisecond }))
	raw := func(t *testing.T, req string) string {
		t.Helper()
		conn, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, req)
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return line
	}
	t.Run("malformed request line", func(t *testing.T) {
		if got := raw(t, "GARBAGE\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("got %q, want 400", got)
		}
	})
	t.Run("malformed header", func(t *testing.T) {
		if got := raw(t, "GET / HTTP/1.1\r\nHost: ratings:9080\r\nBad Header\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("got %q, want 400", got)
		}
	})
	t.Run("oversized headers", func(t *testing.T) {
		req := "GET / HTTP/1.1\r\nHost: ratings:9080\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"
		if got := raw(t, req); !strings.HasPrefix(got, "HTTP/1.1 431") {
			t.Errorf("got %q, want 431", got)
		}
	})
	t.Run("bad port in host", func(t *testing.T) {
		if got := raw(t, "GET / HTTP/1.1\r\nHost: ratings:99999\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("got %q, want 400", got)
		}
	})
	t.Run("slow headers time out", func(t *testing.T) {
		conn, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: ratin")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		_, err = io.ReadAll(conn)
		if err != nil || time.Since(start) > 3*time.Second {
			t.Errorf("slow client not cut off: %v after %v", err, time.Since(start))
		}
	})
	t.Run("still serving", func(t *testing.T) {
		if resp := p.get("http://ratings:9080/", nil); resp.StatusCode != 200 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

// TestGRPCRetry checks that gRPC retry conditions read grpc-status from a
// trailers-only response, as Envoy does.
func TestGRPCRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if calls.Add(1) == 1 {
			return nil, status.Error(codes.Unavailable, "flaky")
		}
		return h(ctx, req)
	}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p := newProxy(t, strings.ReplaceAll(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hello}
spec:
  hosts: [hello.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1, ports: {grpc: PORT}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hello}
spec:
  hosts: [hello]
  http:
  - route: [{destination: {host: hello}}]
    retries: {attempts: 2, retryOn: unavailable}
`, "PORT", port))
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("hello:50051"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check through a retrying route: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("server saw %d calls, want 2 (UNAVAILABLE retried once)", n)
	}
}
