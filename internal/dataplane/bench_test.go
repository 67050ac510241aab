package dataplane

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/upstream"
)

// discardWriter is a minimal http.ResponseWriter, so the benchmark
// measures the pipeline and the upstream round trip, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkServeHTTP measures the full request path, from the handler to a
// real loopback upstream and back, for a plain default route and for a
// route with Istio features on (header match, 90/10 split, retries,
// timeout, connection pool, outlier detection).
func BenchmarkServeHTTP(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer up.Close()
	port := up.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndexByte(port, ':')+1:]

	se := `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [svc.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: ` + port + `}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: ` + port + `}, labels: {version: v2}}
`
	features := se + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1000}
      http: {http1MaxPendingRequests: 1000, http2MaxRequests: 1000}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: svc, subset: v2}}]
  - route:
    - {destination: {host: svc, subset: v1}, weight: 90}
    - {destination: {host: svc, subset: v2}, weight: 10}
    timeout: 5s
    retries: {attempts: 2, retryOn: "5xx,connect-failure"}
`
	for _, bc := range []struct{ name, cfg string }{{"plain", se}, {"istio-features", features}} {
		b.Run(bc.name, func(b *testing.B) {
			set, diags := config.LoadBytes("bench.yaml", []byte(bc.cfg), config.LoadOptions{})
			if diags.HasErrors() {
				b.Fatal(diags)
			}
			table, cd := compile.Compile(set, registry.Build(set, ""), compile.Options{Proxy: routing.Proxy{Role: routing.RoleMesh, Namespace: "default"}})
			if cd.HasErrors() {
				b.Fatal(cd)
			}
			mgr := upstream.NewManager(upstream.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			defer mgr.Close()
			s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			s.Publish(table, mgr.Update(table.Clusters))
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest("GET", "http://svc/", nil)
				req.RemoteAddr = "127.0.0.1:5555"
				clear(w.h)
				s.ServeHTTP(w, req)
			}
		})
	}
}
