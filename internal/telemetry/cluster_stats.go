package telemetry

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/michi-mesh/michi/internal/upstream"
)

// ClusterCollector exports the upstream clusters' statistics the way an
// Istio sidecar's Envoy does on /stats/prometheus: the stat
// cluster.<name>.<stat> becomes envoy_cluster_<stat>{cluster_name="<name>"}
// (Istio's bootstrap extracts the cluster_name tag), so dashboards and
// alerts written for Istio's circuit-breaker and outlier-detection stats
// (envoy_cluster_upstream_rq_pending_overflow,
// envoy_cluster_outlier_detection_ejections_enforced_total, ...) work
// unchanged. It also derives Envoy's membership_total and
// membership_healthy gauges from the endpoint list.
//
// It is an unchecked collector: the set of stats is whatever the upstream
// package reports, read at scrape time.
type ClusterCollector struct {
	status func() []upstream.ClusterStatus

	mu    sync.Mutex // guards descs; scrapes may run concurrently
	descs map[string]*prometheus.Desc
}

// NewClusterCollector returns a collector reading status at every scrape.
func NewClusterCollector(status func() []upstream.ClusterStatus) *ClusterCollector {
	return &ClusterCollector{status: status, descs: map[string]*prometheus.Desc{}}
}

// Describe sends nothing, which makes this an unchecked collector: the
// stat names are only known at scrape time.
func (c *ClusterCollector) Describe(chan<- *prometheus.Desc) {}

// Collect reports every stat of every cluster.
func (c *ClusterCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cs := range c.status() {
		for stat, v := range cs.Stats {
			c.emit(ch, stat, cs.Name, float64(v))
		}
		if _, ok := cs.Stats["membership_total"]; !ok {
			c.emit(ch, "membership_total", cs.Name, float64(len(cs.Endpoints)))
		}
		if _, ok := cs.Stats["membership_healthy"]; !ok {
			healthy := 0
			for _, ep := range cs.Endpoints {
				if ep.Healthy && !ep.Ejected {
					healthy++
				}
			}
			c.emit(ch, "membership_healthy", cs.Name, float64(healthy))
		}
	}
}

func (c *ClusterCollector) emit(ch chan<- prometheus.Metric, stat, cluster string, v float64) {
	vt := prometheus.CounterValue
	if isGaugeStat(stat) {
		vt = prometheus.GaugeValue
	}
	ch <- prometheus.MustNewConstMetric(c.desc(stat), vt, v, cluster)
}

func (c *ClusterCollector) desc(stat string) *prometheus.Desc {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.descs[stat]
	if !ok {
		d = prometheus.NewDesc("envoy_cluster_"+sanitizeStatName(stat), "Envoy cluster statistic "+stat+".", []string{"cluster_name"}, nil)
		c.descs[stat] = d
	}
	return d
}

// isGaugeStat tells Envoy's cluster gauges from its counters
// (configuration/upstream/cluster_manager/cluster_stats): levels such as
// active requests, open breakers and membership counts go up and down;
// every other cluster stat is a counter.
func isGaugeStat(stat string) bool {
	switch {
	case strings.HasSuffix(stat, "_active"),
		strings.HasSuffix(stat, "_open"),
		strings.HasSuffix(stat, "_remaining"),
		strings.HasSuffix(stat, "_buffered"),
		strings.HasPrefix(stat, "membership_") && stat != "membership_change",
		stat == "max_host_weight", stat == "version":
		return true
	}
	return false
}

// sanitizeStatName turns an Envoy stat name into a Prometheus metric name
// component, as Envoy's Prometheus exporter does: every character outside
// [a-zA-Z0-9_] becomes '_' (outlier_detection.ejections_active ->
// outlier_detection_ejections_active).
func sanitizeStatName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
