package telemetry

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/michi-mesh/michi/internal/upstream"
)

func TestClusterCollector(t *testing.T) {
	status := []upstream.ClusterStatus{
		{
			Name: "outbound|9080|v1|reviews.default.svc.cluster.local",
			Stats: map[string]int64{
				"upstream_rq_pending_overflow":               7,
				"upstream_rq_active":                         2,
				"outlier_detection.ejections_enforced_total": 1,
				"outlier_detection_ejections_active":         1,
				"circuit_breakers.default.rq_pending_open":   1,
				"upstream_cx_overflow":                       0,
			},
			Endpoints: []upstream.EndpointStatus{
				{Address: "127.0.0.1:9081", Healthy: true},
				{Address: "127.0.0.1:9082", Healthy: true, Ejected: true},
				{Address: "127.0.0.1:9083", Healthy: false},
			},
		},
		{
			Name:  "outbound|9080||ratings.default.svc.cluster.local",
			Stats: map[string]int64{"upstream_rq_pending_overflow": 0, "membership_total": 9},
		},
	}
	c := NewClusterCollector(func() []upstream.ClusterStatus { return status })
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	const reviews = `cluster_name="outbound|9080|v1|reviews.default.svc.cluster.local"`
	const ratings = `cluster_name="outbound|9080||ratings.default.svc.cluster.local"`
	want := `
# HELP envoy_cluster_circuit_breakers_default_rq_pending_open Envoy cluster statistic circuit_breakers.default.rq_pending_open.
# TYPE envoy_cluster_circuit_breakers_default_rq_pending_open gauge
envoy_cluster_circuit_breakers_default_rq_pending_open{` + reviews + `} 1
# HELP envoy_cluster_membership_healthy Envoy cluster statistic membership_healthy.
# TYPE envoy_cluster_membership_healthy gauge
envoy_cluster_membership_healthy{` + ratings + `} 0
envoy_cluster_membership_healthy{` + reviews + `} 1
# HELP envoy_cluster_membership_total Envoy cluster statistic membership_total.
# TYPE envoy_cluster_membership_total gauge
envoy_cluster_membership_total{` + ratings + `} 9
envoy_cluster_membership_total{` + reviews + `} 3
# HELP envoy_cluster_outlier_detection_ejections_active Envoy cluster statistic outlier_detection_ejections_active.
# TYPE envoy_cluster_outlier_detection_ejections_active gauge
envoy_cluster_outlier_detection_ejections_active{` + reviews + `} 1
# HELP envoy_cluster_outlier_detection_ejections_enforced_total Envoy cluster statistic outlier_detection.ejections_enforced_total.
# TYPE envoy_cluster_outlier_detection_ejections_enforced_total counter
envoy_cluster_outlier_detection_ejections_enforced_total{` + reviews + `} 1
# HELP envoy_cluster_upstream_cx_overflow Envoy cluster statistic upstream_cx_overflow.
# TYPE envoy_cluster_upstream_cx_overflow counter
envoy_cluster_upstream_cx_overflow{` + reviews + `} 0
# HELP envoy_cluster_upstream_rq_active Envoy cluster statistic upstream_rq_active.
# TYPE envoy_cluster_upstream_rq_active gauge
envoy_cluster_upstream_rq_active{` + reviews + `} 2
# HELP envoy_cluster_upstream_rq_pending_overflow Envoy cluster statistic upstream_rq_pending_overflow.
# TYPE envoy_cluster_upstream_rq_pending_overflow counter
envoy_cluster_upstream_rq_pending_overflow{` + ratings + `} 0
envoy_cluster_upstream_rq_pending_overflow{` + reviews + `} 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	// The collector reads the status at every scrape.
	status[1].Stats["upstream_rq_pending_overflow"] = 4
	want = `
# HELP envoy_cluster_upstream_rq_pending_overflow Envoy cluster statistic upstream_rq_pending_overflow.
# TYPE envoy_cluster_upstream_rq_pending_overflow counter
envoy_cluster_upstream_rq_pending_overflow{` + ratings + `} 4
envoy_cluster_upstream_rq_pending_overflow{` + reviews + `} 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "envoy_cluster_upstream_rq_pending_overflow"); err != nil {
		t.Errorf("after the stat moved: %v", err)
	}
}
