package upstream

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// BenchmarkRoundTrip measures one request through a cluster against real
// loopback servers, so most of the time is net/http and the kernel; what
// the cluster adds is the difference from net/http's own Transport:
//   - transport: http.Transport with keep-alive, no policy (the floor);
//   - minimal: one endpoint, round robin, no outlier detection;
//   - full: three endpoints, LEAST_REQUEST, outlier detection, finite
//     circuit-breaker limits, idle timeout and per-connection limits.
//
// Each runs sequentially and with parallel clients, over HTTP/1.1 and
// h2c.
func BenchmarkRoundTrip(b *testing.B) {
	body := []byte("ok")
	var servers []*httptest.Server
	for range 3 {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv.Config.Protocols = &p
		srv.Start()
		b.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	addr := func(i int) string { return servers[i].Listener.Addr().String() }

	minimal := func(protocol string) *routing.Cluster {
		c := httpCluster("minimal", addr(0))
		c.Protocol = protocol
		return c
	}
	full := func(protocol string) *routing.Cluster {
		c := httpCluster("full", addr(0), addr(1), addr(2))
		c.Protocol = protocol
		c.Policy.LoadBalancer.Policy = routing.LBLeastRequest
		c.Policy.ConnectionPool.MaxConnections = 1000
		c.Policy.ConnectionPool.MaxPendingRequests = 1000
		c.Policy.ConnectionPool.MaxRequests = 1000
		c.Policy.ConnectionPool.MaxRetries = 10
		c.Policy.ConnectionPool.MaxRequestsPerConnection = 1 << 20
		c.Policy.ConnectionPool.IdleTimeout = time.Minute
		od := istioOutlier(5)
		c.Policy.Outlier = &od
		return c
	}

	for _, protocol := range []string{"HTTP", "HTTP2"} {
		b.Run(protocol+"/transport", func(b *testing.B) {
			var pr http.Protocols
			if protocol == "HTTP2" {
				pr.SetUnencryptedHTTP2(true)
			} else {
				pr.SetHTTP1(true)
			}
			tr := &http.Transport{Protocols: &pr, MaxIdleConnsPerHost: 256, DisableCompression: true}
			b.Cleanup(tr.CloseIdleConnections)
			rt := func(ctx context.Context, req *http.Request) (*http.Response, error) { return tr.RoundTrip(req) }
			benchRoundTrips(b, "http://"+addr(0)+"/", rt)
		})
		for _, cfg := range []*routing.Cluster{minimal(protocol), full(protocol)} {
			b.Run(protocol+"/"+cfg.Name, func(b *testing.B) {
				m := NewManager(Options{})
				b.Cleanup(m.Close)
				c := m.Update(map[string]*routing.Cluster{cfg.Name: cfg})[cfg.Name]
				rt := func(ctx context.Context, req *http.Request) (*http.Response, error) {
					resp, _, err := c.RoundTrip(ctx, req, AttemptOptions{})
					return resp, err
				}
				benchRoundTrips(b, "http://svc.default.svc.cluster.local/", rt)
			})
		}
	}
}

func benchRoundTrips(b *testing.B, url string, rt func(context.Context, *http.Request) (*http.Response, error)) {
	do := func(b *testing.B, req *http.Request) {
		resp, err := rt(req.Context(), req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	newReq := func(b *testing.B) *http.Request {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			b.Fatal(err)
		}
		return req
	}
	b.Run("sequential", func(b *testing.B) {
		req := newReq(b)
		b.ReportAllocs()
		for b.Loop() {
			do(b, req)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := newReq(b)
			for pb.Next() {
				do(b, req)
			}
		})
	})
}
