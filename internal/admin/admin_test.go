package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/engine"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/telemetry"
	"github.com/michi-mesh/michi/internal/upstream"
)

// get fetches path from srv and returns the status, content type and body.
func get(t *testing.T, srv *httptest.Server, path string) (int, string, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// tinyCompile stands in for compile.Compile, which other work fills in:
// one cluster per registry service port, versioned by the resource names.
// A VirtualService whose only host is "broken" is an error.
func tinyCompile(set *config.Set, reg *registry.Registry, opts compile.Options) (*routing.Table, config.Diagnostics) {
	var diags config.Diagnostics
	version := "v"
	for _, r := range set.Resources {
		version += "-" + r.Name
		if vs := r.VirtualService(); vs != nil && len(vs.Hosts) == 1 && vs.Hosts[0] == "broken" {
			diags = append(diags, r.Diagnostic(config.Error, "spec.hosts[0]", `host "broken" is not in the registry`))
		}
	}
	t := &routing.Table{Version: version, Proxy: opts.Proxy, Clusters: map[string]*routing.Cluster{}}
	for _, svc := range reg.Services() {
		for _, p := range svc.Ports {
			name := routing.ClusterName(p.Number, "", svc.Hostname)
			t.Clusters[name] = &routing.Cluster{Name: name, Host: svc.Hostname, Port: p.Number}
		}
	}
	return t, diags
}

const ratingsSE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
  namespace: default
spec:
  hosts: [ratings.default.svc.cluster.local]
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
`

const brokenVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: broken
  namespace: default
spec:
  hosts: [broken]
  http:
  - route:
    - destination: {host: broken}
`

// applyFiles writes files to a fresh directory and applies them.
func applyFiles(t *testing.T, e *engine.Engine, files map[string]string) error {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, diags := config.Load([]string{dir}, config.LoadOptions{})
	return e.Apply(set, diags)
}

func newEngine(now *time.Time) *engine.Engine {
	return engine.New(engine.Options{
		CompileFunc: tinyCompile,
		Logger:      discardLogger(),
		Now:         func() time.Time { return *now },
	})
}

func TestReady(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	e := newEngine(&now)
	s := New(Options{Status: e.Status, Logger: discardLogger()})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	check := func(when string, wantCode int, wantBody string) {
		t.Helper()
		code, _, body := get(t, srv, "/ready")
		if code != wantCode || body != wantBody {
			t.Errorf("%s: /ready = %d %q, want %d %q", when, code, body, wantCode, wantBody)
		}
	}
	check("before any configuration", 503, "INITIALIZING\n")
	if err := applyFiles(t, e, map[string]string{"vs.yaml": brokenVS}); err == nil {
		t.Fatal("broken configuration was accepted")
	}
	check("after a rejected first configuration", 503, "INITIALIZING\n")
	if err := applyFiles(t, e, map[string]string{"se.yaml": ratingsSE}); err != nil {
		t.Fatal(err)
	}
	check("after the first publish", 200, "LIVE\n")
	if err := applyFiles(t, e, map[string]string{"se.yaml": ratingsSE, "vs.yaml": brokenVS}); err == nil {
		t.Fatal("broken configuration was accepted")
	}
	check("after a rejected reload", 200, "LIVE\n")
	s.Drain()
	check("while draining", 503, "DRAINING\n")
}

func TestConfigDump(t *testing.T) {
	type dump struct {
		Version         string             `json:"version"`
		LastApplied     *time.Time         `json:"lastApplied"`
		Table           *routing.Table     `json:"table"`
		Diagnostics     config.Diagnostics `json:"diagnostics"`
		LastReloadError *struct {
			Time     time.Time          `json:"time"`
			Findings config.Diagnostics `json:"findings"`
		} `json:"lastReloadError"`
		Resources []string `json:"resources"`
	}
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	e := newEngine(&now)
	srv := httptest.NewServer(New(Options{Status: e.Status, Logger: discardLogger()}).Handler())
	defer srv.Close()
	fetch := func() (dump, string) {
		t.Helper()
		code, ctype, body := get(t, srv, "/config_dump")
		if code != 200 || ctype != "application/json" {
			t.Fatalf("/config_dump = %d %s, want 200 application/json", code, ctype)
		}
		var d dump
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("/config_dump is not JSON: %v\n%s", err, body)
		}
		return d, body
	}

	d, body := fetch()
	for _, want := range []string{`"table": null`, `"lastApplied": null`, `"lastReloadError": null`, `"diagnostics": []`, `"resources": []`} {
		if !strings.Contains(body, want) {
			t.Errorf("empty /config_dump lacks %s:\n%s", want, body)
		}
	}

	if err := applyFiles(t, e, map[string]string{"se.yaml": ratingsSE}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if err := applyFiles(t, e, map[string]string{"se.yaml": ratingsSE, "vs.yaml": brokenVS}); err == nil {
		t.Fatal("broken configuration was accepted")
	}
	d, _ = fetch()
	if d.Version != "v-ratings" || d.LastApplied == nil || !d.LastApplied.Equal(now.Add(-time.Minute)) {
		t.Errorf("/config_dump version %q applied %v, want v-ratings applied a minute ago", d.Version, d.LastApplied)
	}
	if d.Table == nil || d.Table.Clusters["outbound|9080||ratings.default.svc.cluster.local"] == nil {
		t.Errorf("/config_dump table = %+v, want the live table with the ratings cluster", d.Table)
	}
	if len(d.Resources) != 1 || !strings.HasPrefix(d.Resources[0], "ServiceEntry default/ratings ") || !strings.HasSuffix(d.Resources[0], "se.yaml:1") {
		t.Errorf("/config_dump resources = %q, want the live ServiceEntry with file:line", d.Resources)
	}
	if d.LastReloadError == nil || !d.LastReloadError.Time.Equal(now) {
		t.Fatalf("/config_dump lastReloadError = %+v, want the rejection at %v", d.LastReloadError, now)
	}
	findings := d.LastReloadError.Findings.Errors()
	if len(findings) != 1 || findings[0].Field != "spec.hosts[0]" || findings[0].Name != "broken" || !strings.HasSuffix(findings[0].File, "vs.yaml") {
		t.Errorf("/config_dump findings = %+v, want the broken VirtualService's spec.hosts[0] error", findings)
	}
}

func TestClusters(t *testing.T) {
	const reviews = "outbound|9080|v1|reviews.default.svc.cluster.local"
	status := []upstream.ClusterStatus{
		{Name: "outbound|9080||ratings.default.svc.cluster.local", Stats: map[string]int64{"upstream_rq_total": 0}},
		{
			Name:  reviews,
			Stats: map[string]int64{"upstream_rq_total": 7},
			Endpoints: []upstream.EndpointStatus{
				{Address: "127.0.0.1:9081", Weight: 1, Locality: "us-east1/us-east1-b/rack1", Healthy: true, ActiveRequests: 2, TotalRequests: 5, Errors: 1},
				{Address: "127.0.0.1:9082", Weight: 3, Healthy: true, Ejected: true, EjectionCount: 2, EjectedFor: 30 * time.Second, TotalRequests: 2, Errors: 2},
			},
		},
	}
	table := &routing.Table{Version: "v1", Clusters: map[string]*routing.Cluster{
		reviews: {Name: reviews, Policy: routing.Policy{ConnectionPool: routing.ConnectionPool{
			MaxConnections: 1, MaxPendingRequests: 2, MaxRequests: 3, MaxRetries: routing.Unlimited,
		}}},
	}}
	s := New(Options{
		Status:   func() *engine.Status { return &engine.Status{Version: "v1", Table: table} },
		Clusters: func() []upstream.ClusterStatus { return status },
		Logger:   discardLogger(),
	})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	t.Run("text", func(t *testing.T) {
		code, ctype, body := get(t, srv, "/clusters")
		if code != 200 || !strings.HasPrefix(ctype, "text/plain") {
			t.Fatalf("/clusters = %d %s, want 200 text/plain", code, ctype)
		}
		want := `outbound|9080|v1|reviews.default.svc.cluster.local::observability_name::outbound|9080|v1|reviews.default.svc.cluster.local
outbound|9080|v1|reviews.default.svc.cluster.local::default_priority::max_connections::1
outbound|9080|v1|reviews.default.svc.cluster.local::default_priority::max_pending_requests::2
outbound|9080|v1|reviews.default.svc.cluster.local::default_priority::max_requests::3
outbound|9080|v1|reviews.default.svc.cluster.local::default_priority::max_retries::4294967295
outbound|9080|v1|reviews.default.svc.cluster.local::added_via_api::true
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::rq_active::2
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::rq_error::1
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::rq_total::5
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::weight::1
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::region::us-east1
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::zone::us-east1-b
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::sub_zone::rack1
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::health_flags::healthy
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::ejected::false
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9081::ejection_count::0
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::rq_active::0
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::rq_error::2
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::rq_total::2
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::weight::3
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::region::
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::zone::
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::sub_zone::
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::health_flags::/failed_outlier_check
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::ejected::true
outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9082::ejection_count::2
outbound|9080||ratings.default.svc.cluster.local::observability_name::outbound|9080||ratings.default.svc.cluster.local
outbound|9080||ratings.default.svc.cluster.local::added_via_api::true
`
		if diff := cmp.Diff(want, body); diff != "" {
			t.Errorf("/clusters mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("json", func(t *testing.T) {
		code, ctype, body := get(t, srv, "/clusters?format=json")
		if code != 200 || ctype != "application/json" {
			t.Fatalf("/clusters?format=json = %d %s, want 200 application/json", code, ctype)
		}
		var got []upstream.ClusterStatus
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, body)
		}
		// Sorted by name; '|' sorts after letters.
		if diff := cmp.Diff([]upstream.ClusterStatus{status[1], status[0]}, got); diff != "" {
			t.Errorf("/clusters?format=json mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("unknown format", func(t *testing.T) {
		if code, _, body := get(t, srv, "/clusters?format=yaml"); code != 400 || !strings.Contains(body, `"yaml"`) {
			t.Errorf("/clusters?format=yaml = %d %q, want 400 naming the format", code, body)
		}
	})
}

func TestHealthFlags(t *testing.T) {
	tests := []struct {
		name string
		ep   upstream.EndpointStatus
		want string
	}{
		{"healthy", upstream.EndpointStatus{Healthy: true}, "healthy"},
		{"ejected", upstream.EndpointStatus{Healthy: true, Ejected: true}, "/failed_outlier_check"},
		{"unhealthy", upstream.EndpointStatus{}, "/failed_active_hc"},
		{"both", upstream.EndpointStatus{Ejected: true}, "/failed_active_hc/failed_outlier_check"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := healthFlags(tc.ep); got != tc.want {
				t.Errorf("healthFlags(%+v) = %q, want %q", tc.ep, got, tc.want)
			}
		})
	}
}

func TestStatsPrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := telemetry.NewMetrics(reg, telemetry.MetricsOptions{Workload: "productpage-v1", Namespace: "default"})
	m.Observe(&telemetry.Record{ResponseCode: 200, DestinationService: "reviews.default.svc.cluster.local"})
	telemetry.NewConfigMetrics(reg).Succeeded("abc", time.Unix(1714557600, 0))
	srv := httptest.NewServer(New(Options{Status: func() *engine.Status { return &engine.Status{} }, Gatherer: reg, Logger: discardLogger()}).Handler())
	defer srv.Close()

	code, ctype, body := get(t, srv, "/stats/prometheus")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("/stats/prometheus = %d %s, want 200 text/plain", code, ctype)
	}
	for _, want := range []string{
		`istio_requests_total{connection_security_policy="unknown",destination_app="unknown"`,
		`destination_service="reviews.default.svc.cluster.local"`,
		`michi_config_info{version="abc"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/stats/prometheus lacks %s", want)
		}
	}
}

func TestPprofAndIndex(t *testing.T) {
	srv := httptest.NewServer(New(Options{Status: func() *engine.Status { return &engine.Status{} }, Logger: discardLogger()}).Handler())
	defer srv.Close()
	tests := []struct{ path, want string }{
		{"/", "/config_dump"},
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:"},
		{"/debug/pprof/cmdline", ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			code, _, body := get(t, srv, tc.path)
			if code != 200 || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s = %d, body lacks %q", tc.path, code, tc.want)
			}
		})
	}
	if code, _, _ := get(t, srv, "/nope"); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}
	resp, err := srv.Client().Post(srv.URL+"/ready", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ready = %d, want 405", resp.StatusCode)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
