package dataplane

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/michi-mesh/michi/internal/telemetry"
)

// TestCircuitBreakingTask reproduces Istio's circuit-breaking task
// (maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection
// 1) at client concurrency 1, 2 and 3: all succeed at 1; at 2 and 3 a
// share is rejected locally with 503 UO and x-envoy-overloaded, and the
// rejections are counted in Istio's metrics.
func TestCircuitBreakingTask(t *testing.T) {
	httpbin := newBackend(t, "httpbin")
	httpbin.setHandler(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		w.WriteHeader(200)
	})
	reg := prometheus.NewRegistry()
	metrics := telemetry.NewMetrics(reg, telemetry.MetricsOptions{Namespace: "default"})
	p := newProxy(t, render(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: {{.httpbin}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
`, httpbin), withOptions(func(o *Options) { o.Metrics = metrics }))

	load := func(concurrency, perClient int) (ok, overflow int64) {
		var wg sync.WaitGroup
		var okN, ovN atomic.Int64
		for c := 0; c < concurrency; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perClient; i++ {
					req, _ := http.NewRequest("GET", "http://httpbin:8000/get", nil)
					resp, err := p.client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					switch {
					case resp.StatusCode == 200:
						okN.Add(1)
					case resp.StatusCode == 503 && resp.Header.Get("X-Envoy-Overloaded") == "true":
						ovN.Add(1)
					default:
						t.Errorf("status %d (overloaded %q)", resp.StatusCode, resp.Header.Get("X-Envoy-Overloaded"))
					}
				}
			}()
		}
		wg.Wait()
		return okN.Load(), ovN.Load()
	}
	if ok, ov := load(1, 20); ok != 20 || ov != 0 {
		t.Errorf("concurrency 1: %d ok, %d overflow; want all 20 ok", ok, ov)
	}
	var total int64
	for _, c := range []int{2, 3} {
		ok, ov := load(c, 30)
		if ov == 0 || ok == 0 {
			t.Errorf("concurrency %d: %d ok, %d overflow; want a share of both", c, ok, ov)
		}
		total += ov
	}
	// Rejections are counted as 503 UO in istio_requests_total.
	deadline := time.Now().Add(2 * time.Second)
	var counted float64
	for time.Now().Before(deadline) {
		counted = 0
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "istio_requests_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				var flags, code string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "response_flags":
						flags = l.GetValue()
					case "response_code":
						code = l.GetValue()
					}
				}
				if flags == "UO" && code == "503" {
					counted += m.GetCounter().GetValue()
				}
			}
		}
		if int64(counted) == total {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if int64(counted) != total {
		t.Errorf("istio_requests_total{response_flags=UO} = %v, want %d", counted, total)
	}
	if !strings.Contains(strings.Join(p.accessLog(), "\n"), " 503 UO ") {
		t.Error("access log has no 503 UO line")
	}
}
