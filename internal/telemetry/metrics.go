package telemetry

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// EnvoyBuckets are Envoy's default histogram bucket bounds. Istio does
// not override them (only the sidecar.istio.io/statsHistogramBuckets
// annotation does), so every Istio histogram uses them, the byte-size
// histograms included: a real istio_response_bytes series has buckets
// le="0.5" through le="3600000".
var EnvoyBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
	30000, 60000, 300000, 600000, 1800000, 3600000}

// defaultClusterName is Istio's default global.multiCluster.clusterName,
// what a single-cluster mesh reports as source_cluster.
const defaultClusterName = "Kubernetes"

// istioLabels are the labels of Istio's standard HTTP metrics
// (https://istio.io/latest/docs/reference/config/metrics/), in the order
// labelValues returns their values.
var istioLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal",
	"source_app", "source_version", "source_cluster",
	"source_canonical_service", "source_canonical_revision",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"destination_cluster",
	"destination_canonical_service", "destination_canonical_revision",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
	"connection_security_policy",
}

// MetricsOptions are the identity of this proxy, which Istio reports as
// the source of every request it sends.
type MetricsOptions struct {
	// Workload is the workload name, e.g. the Deployment's name.
	Workload string
	// Namespace is the workload's namespace.
	Namespace string
	// Labels are the workload's labels; app, version and the canonical
	// service labels are read from them.
	Labels map[string]string
	// Principal is this proxy's SPIFFE identity, when it has one.
	Principal string
	// Cluster is the multi-cluster name (default "Kubernetes", as Istio).
	Cluster string
}

// Metrics records Istio's standard request metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes) with reporter="source": michi sits where a
// client's sidecar does, so its reports are the client-side ones, and
// Istio's Grafana dashboards and Kiali read them unchanged. It is safe for
// concurrent use.
type Metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqBytes  *prometheus.HistogramVec
	respBytes *prometheus.HistogramVec

	source sourceLabels

	// series caches the metric children per label set. Resolving a child
	// through a Vec hashes every label value and allocates; looking up a
	// comparable struct in a map does neither, so Observe is
	// allocation-free once a series has been seen.
	mu     sync.RWMutex
	series map[seriesKey]*series
}

// sourceLabels are the labels that describe this proxy; they are the same
// for every request.
type sourceLabels struct {
	workload, namespace, principal, app, version, cluster string
	canonicalService, canonicalRevision                   string
}

// seriesKey is every label value that varies per request.
type seriesKey struct {
	destWorkload, destWorkloadNamespace, destPrincipal string
	destApp, destVersion                               string
	destService, destServiceName, destServiceNamespace string
	destCluster, destCanonicalService, destCanonical   string
	protocol                                           string
	responseCode                                       int
	grpcStatus, responseFlags                          string
}

type series struct {
	requests                      prometheus.Counter
	duration, reqBytes, respBytes prometheus.Observer
}

// NewMetrics creates the metrics and registers them with reg. It panics
// if they are registered already, which is a programming error.
func NewMetrics(reg prometheus.Registerer, opts MetricsOptions) *Metrics {
	id := identityFromLabels(opts.Labels, opts.Workload)
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests handled by the proxy.",
		}, istioLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds.",
			Buckets: EnvoyBuckets,
		}, istioLabels),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_bytes",
			Help:    "Request body size in bytes.",
			Buckets: EnvoyBuckets,
		}, istioLabels),
		respBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_response_bytes",
			Help:    "Response body size in bytes.",
			Buckets: EnvoyBuckets,
		}, istioLabels),
		source: sourceLabels{
			workload:          orUnknown(opts.Workload),
			namespace:         orUnknown(opts.Namespace),
			principal:         orUnknown(opts.Principal),
			app:               orUnknown(id.app),
			version:           orUnknown(id.version),
			cluster:           first(opts.Cluster, defaultClusterName),
			canonicalService:  orUnknown(id.canonicalService),
			canonicalRevision: id.canonicalRevision,
		},
		series: map[seriesKey]*series{},
	}
	reg.MustRegister(m.requests, m.duration, m.reqBytes, m.respBytes)
	return m
}

// Observe records one finished request. A nil *Metrics does nothing.
func (m *Metrics) Observe(r *Record) {
	if m == nil {
		return
	}
	s := m.seriesFor(r)
	s.requests.Inc()
	s.duration.Observe(float64(r.Duration) / 1e6)
	s.reqBytes.Observe(float64(r.BytesReceived))
	s.respBytes.Observe(float64(r.BytesSent))
}

func (m *Metrics) seriesFor(r *Record) *series {
	k := seriesKey{
		destWorkload:          r.DestinationWorkload,
		destWorkloadNamespace: r.DestinationWorkloadNamespace,
		destPrincipal:         r.DestinationPrincipal,
		destApp:               r.DestinationApp,
		destVersion:           r.DestinationVersion,
		destService:           r.DestinationService,
		destServiceName:       r.DestinationName,
		destServiceNamespace:  r.DestinationNamespace,
		destCluster:           r.DestinationCluster,
		destCanonicalService:  r.DestinationCanonicalService,
		destCanonical:         r.DestinationCanonicalRevision,
		protocol:              r.RequestProtocol,
		responseCode:          r.ResponseCode,
		grpcStatus:            r.GRPCStatus,
		responseFlags:         r.ResponseFlags,
	}
	m.mu.RLock()
	s := m.series[k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.series[k]; s != nil {
		return s
	}
	lv := m.labelValues(k)
	s = &series{
		requests:  m.requests.WithLabelValues(lv...),
		duration:  m.duration.WithLabelValues(lv...),
		reqBytes:  m.reqBytes.WithLabelValues(lv...),
		respBytes: m.respBytes.WithLabelValues(lv...),
	}
	m.series[k] = s
	return s
}

// labelValues renders a series key in istioLabels order, with Istio's
// defaults for what is missing.
func (m *Metrics) labelValues(k seriesKey) []string {
	src := &m.source
	return []string{
		"source",
		src.workload, src.namespace, src.principal,
		src.app, src.version, src.cluster,
		src.canonicalService, src.canonicalRevision,
		orUnknown(k.destWorkload), orUnknown(k.destWorkloadNamespace), orUnknown(k.destPrincipal),
		orUnknown(k.destApp), orUnknown(k.destVersion),
		orUnknown(k.destService), orUnknown(k.destServiceName), orUnknown(k.destServiceNamespace),
		orUnknown(k.destCluster),
		orUnknown(k.destCanonicalService), first(k.destCanonical, "latest"),
		first(k.protocol, "http"),
		strconv.Itoa(k.responseCode),
		k.grpcStatus, // "" on plain HTTP, as Istio reports it
		dash(k.responseFlags),
		// A client-side proxy cannot tell what the server enforced, so
		// Istio reports "unknown" here when reporter is "source".
		unknown,
	}
}
