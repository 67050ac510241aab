package telemetry

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var productpage = MetricsOptions{
	Workload:  "productpage-v1",
	Namespace: "default",
	Labels:    map[string]string{"app": "productpage", "version": "v1"},
}

// reviewsRecord is a request productpage sent to reviews v2.
func reviewsRecord() *Record {
	r := &Record{
		ResponseCode:         200,
		Duration:             12500 * time.Microsecond,
		BytesReceived:        40,
		BytesSent:            3000,
		DestinationService:   "reviews.default.svc.cluster.local",
		DestinationName:      "reviews",
		DestinationNamespace: "default",
		DestinationWorkload:  "reviews-v2",
		RequestProtocol:      "http",
	}
	r.SetEndpointLabels(map[string]string{"app": "reviews", "version": "v2"})
	return r
}

// gather returns the families of reg by name.
func gather(t testing.TB, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func TestObserveLabels(t *testing.T) {
	tests := []struct {
		name string
		opts MetricsOptions
		rec  *Record
		want map[string]string
	}{
		{
			name: "known destination",
			opts: productpage,
			rec:  reviewsRecord(),
			want: map[string]string{
				"reporter":                       "source",
				"source_workload":                "productpage-v1",
				"source_workload_namespace":      "default",
				"source_principal":               "unknown",
				"source_app":                     "productpage",
				"source_version":                 "v1",
				"source_cluster":                 "Kubernetes",
				"source_canonical_service":       "productpage",
				"source_canonical_revision":      "v1",
				"destination_workload":           "reviews-v2",
				"destination_workload_namespace": "unknown",
				"destination_principal":          "unknown",
				"destination_app":                "reviews",
				"destination_version":            "v2",
				"destination_service":            "reviews.default.svc.cluster.local",
				"destination_service_name":       "reviews",
				"destination_service_namespace":  "default",
				"destination_cluster":            "unknown",
				"destination_canonical_service":  "reviews",
				"destination_canonical_revision": "v2",
				"request_protocol":               "http",
				"response_code":                  "200",
				"grpc_response_status":           "",
				"response_flags":                 "-",
				"connection_security_policy":     "unknown",
			},
		},
		{
			name: "no route, empty identity",
			opts: MetricsOptions{Cluster: "east"},
			rec:  &Record{ResponseCode: 404, ResponseFlags: "NR"},
			want: map[string]string{
				"reporter":                       "source",
				"source_workload":                "unknown",
				"source_workload_namespace":      "unknown",
				"source_principal":               "unknown",
				"source_app":                     "unknown",
				"source_version":                 "unknown",
				"source_cluster":                 "east",
				"source_canonical_service":       "unknown",
				"source_canonical_revision":      "latest",
				"destination_workload":           "unknown",
				"destination_workload_namespace": "unknown",
				"destination_principal":          "unknown",
				"destination_app":                "unknown",
				"destination_version":            "unknown",
				"destination_service":            "unknown",
				"destination_service_name":       "unknown",
				"destination_service_namespace":  "unknown",
				"destination_cluster":            "unknown",
				"destination_canonical_service":  "unknown",
				"destination_canonical_revision": "latest",
				"request_protocol":               "http",
				"response_code":                  "404",
				"grpc_response_status":           "",
				"response_flags":                 "NR",
				"connection_security_policy":     "unknown",
			},
		},
		{
			name: "grpc with canonical labels",
			opts: MetricsOptions{
				Workload: "gw", Namespace: "istio-system", Principal: "spiffe://cluster.local/ns/istio-system/sa/gw",
				Labels: map[string]string{"service.istio.io/canonical-name": "ingress", "app.kubernetes.io/version": "1.2"},
			},
			rec: &Record{
				ResponseCode: 200, RequestProtocol: "grpc", GRPCStatus: "14",
				DestinationService: "echo.ns.svc.cluster.local", DestinationPrincipal: "spiffe://cluster.local/ns/ns/sa/echo",
			},
			want: map[string]string{
				"reporter":                       "source",
				"source_workload":                "gw",
				"source_workload_namespace":      "istio-system",
				"source_principal":               "spiffe://cluster.local/ns/istio-system/sa/gw",
				"source_app":                     "unknown",
				"source_version":                 "1.2",
				"source_cluster":                 "Kubernetes",
				"source_canonical_service":       "ingress",
				"source_canonical_revision":      "1.2",
				"destination_workload":           "unknown",
				"destination_workload_namespace": "unknown",
				"destination_principal":          "spiffe://cluster.local/ns/ns/sa/echo",
				"destination_app":                "unknown",
				"destination_version":            "unknown",
				"destination_service":            "echo.ns.svc.cluster.local",
				"destination_service_name":       "unknown",
				"destination_service_namespace":  "unknown",
				"destination_cluster":            "unknown",
				"destination_canonical_service":  "unknown",
				"destination_canonical_revision": "latest",
				"request_protocol":               "grpc",
				"response_code":                  "200",
				"grpc_response_status":           "14",
				"response_flags":                 "-",
				"connection_security_policy":     "unknown",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg, tc.opts)
			m.Observe(tc.rec)
			fams := gather(t, reg)
			for _, name := range []string{"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
				mf := fams[name]
				if mf == nil || len(mf.Metric) != 1 {
					t.Fatalf("%s: got %v, want one series", name, mf)
				}
				if diff := cmp.Diff(tc.want, labelMap(mf.Metric[0])); diff != "" {
					t.Errorf("%s labels mismatch (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

func TestObserveValues(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, productpage)
	ok := reviewsRecord()
	m.Observe(ok)
	m.Observe(ok)
	failed := reviewsRecord()
	failed.ResponseCode = 503
	failed.ResponseFlags = "UO"
	failed.Duration = 2 * time.Second
	m.Observe(failed)

	fams := gather(t, reg)
	counts := map[string]float64{}
	for _, s := range fams["istio_requests_total"].Metric {
		l := labelMap(s)
		counts[l["response_code"]+" "+l["response_flags"]] = s.GetCounter().GetValue()
	}
	if diff := cmp.Diff(map[string]float64{"200 -": 2, "503 UO": 1}, counts); diff != "" {
		t.Errorf("istio_requests_total by code and flags mismatch (-want +got):\n%s", diff)
	}

	for _, s := range fams["istio_request_duration_milliseconds"].Metric {
		h := s.GetHistogram()
		var bounds []float64
		for _, b := range h.Bucket {
			bounds = append(bounds, b.GetUpperBound())
		}
		if diff := cmp.Diff(EnvoyBuckets, bounds); diff != "" {
			t.Errorf("duration buckets mismatch (-want +got):\n%s", diff)
		}
		switch labelMap(s)["response_code"] {
		case "200":
			if got, want := h.GetSampleSum(), 25.0; got != want {
				t.Errorf("200 duration sum = %v ms, want %v", got, want)
			}
		case "503":
			if got, want := h.GetSampleSum(), 2000.0; got != want {
				t.Errorf("503 duration sum = %v ms, want %v", got, want)
			}
		}
	}
	for name, want := range map[string]float64{"istio_request_bytes": 80, "istio_response_bytes": 6000} {
		for _, s := range fams[name].Metric {
			if labelMap(s)["response_code"] != "200" {
				continue
			}
			if got := s.GetHistogram().GetSampleSum(); got != want {
				t.Errorf("%s sum = %v, want %v", name, got, want)
			}
			if got := len(s.GetHistogram().Bucket); got != len(EnvoyBuckets) {
				t.Errorf("%s has %d buckets, want Envoy's %d", name, got, len(EnvoyBuckets))
			}
		}
	}
}

func TestObserveAllocations(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), productpage)
	r := reviewsRecord()
	m.Observe(r) // creates the series
	if got := testing.AllocsPerRun(100, func() { m.Observe(r) }); got != 0 {
		t.Errorf("Observe allocates %.1f times per record after warm-up, want 0", got)
	}
}

func TestObserveConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, productpage)
	const goroutines, each, codes = 8, 500, 5
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := reviewsRecord()
			for i := range each {
				r.ResponseCode = 200 + (g+i)%codes
				m.Observe(r)
			}
		}()
	}
	wg.Wait()
	var total float64
	series := gather(t, reg)["istio_requests_total"].Metric
	for _, s := range series {
		total += s.GetCounter().GetValue()
	}
	if len(series) != codes || total != goroutines*each {
		t.Errorf("got %d series totalling %v, want %d series totalling %d", len(series), total, codes, goroutines*each)
	}
}

func TestNilMetricsDiscards(t *testing.T) {
	var m *Metrics
	m.Observe(reviewsRecord()) // must not panic
}

func TestSetEndpointLabels(t *testing.T) {
	tests := []struct {
		name     string
		workload string
		labels   map[string]string
		want     [4]string // app, version, canonical service, canonical revision
	}{
		{"app and version", "", map[string]string{"app": "reviews", "version": "v3"}, [4]string{"reviews", "v3", "reviews", "v3"}},
		{"kubernetes recommended labels", "", map[string]string{"app.kubernetes.io/name": "ratings", "app.kubernetes.io/version": "2"},
			[4]string{"ratings", "2", "ratings", "2"}},
		{"explicit canonical labels win", "", map[string]string{"app": "a", "version": "v1",
			"service.istio.io/canonical-name": "svc", "service.istio.io/canonical-revision": "r7"}, [4]string{"a", "v1", "svc", "r7"}},
		{"no labels: workload name and latest", "details-v1", nil, [4]string{"", "", "details-v1", "latest"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Record{DestinationWorkload: tc.workload}
			r.SetEndpointLabels(tc.labels)
			got := [4]string{r.DestinationApp, r.DestinationVersion, r.DestinationCanonicalService, r.DestinationCanonicalRevision}
			if got != tc.want {
				t.Errorf("SetEndpointLabels(%v) = %q, want %q", tc.labels, got, tc.want)
			}
		})
	}
}

func BenchmarkObserve(b *testing.B) {
	for _, seriesCount := range []int{1, 100} {
		b.Run(fmt.Sprintf("series=%d", seriesCount), func(b *testing.B) {
			m := NewMetrics(prometheus.NewRegistry(), productpage)
			recs := make([]*Record, seriesCount)
			for i := range recs {
				recs[i] = reviewsRecord()
				recs[i].DestinationService = fmt.Sprintf("svc-%d.default.svc.cluster.local", i)
				m.Observe(recs[i])
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					m.Observe(recs[i%len(recs)])
					i++
				}
			})
		})
	}
}
