package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConfigMetrics count configuration reloads:
//
//	michi_config_reloads_total{result="success"|"error"}
//	michi_config_reload_errors_total
//	michi_config_last_reload_success_timestamp_seconds
//	michi_config_info{version}
//
// michi_config_reload_errors_total repeats reloads_total{result="error"}
// as a single unlabelled series, the shape alert rules want
// (increase(...[5m]) > 0), like Envoy's per-xDS update_rejected counter.
// A nil *ConfigMetrics records nothing. It is safe for concurrent use.
type ConfigMetrics struct {
	reloads     *prometheus.CounterVec
	success     prometheus.Counter
	failure     prometheus.Counter
	errors      prometheus.Counter
	lastSuccess prometheus.Gauge
	info        *prometheus.GaugeVec

	mu      sync.Mutex // orders info updates
	version string
}

// NewConfigMetrics creates the metrics and registers them with reg.
func NewConfigMetrics(reg prometheus.Registerer) *ConfigMetrics {
	m := &ConfigMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "michi_config_reloads_total",
			Help: "Configuration reloads, by result.",
		}, []string{"result"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "michi_config_reload_errors_total",
			Help: "Configuration reloads rejected because the configuration had errors.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "michi_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration reload.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "michi_config_info",
			Help: "The version of the live configuration; always 1.",
		}, []string{"version"}),
	}
	// Both results exist from the start, so that rate() sees the first
	// error rather than a series appearing out of nothing.
	m.success = m.reloads.WithLabelValues("success")
	m.failure = m.reloads.WithLabelValues("error")
	reg.MustRegister(m.reloads, m.errors, m.lastSuccess, m.info)
	return m
}

// Succeeded records a reload that left version live at time at.
func (m *ConfigMetrics) Succeeded(version string, at time.Time) {
	if m == nil {
		return
	}
	m.success.Inc()
	m.lastSuccess.Set(float64(at.UnixNano()) / 1e9)
	m.mu.Lock()
	defer m.mu.Unlock()
	if version != m.version {
		m.info.Reset()
		m.info.WithLabelValues(version).Set(1)
		m.version = version
	}
}

// Failed records a rejected reload; the live configuration is unchanged.
func (m *ConfigMetrics) Failed() {
	if m == nil {
		return
	}
	m.failure.Inc()
	m.errors.Inc()
}
