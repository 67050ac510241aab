package upstream

import (
	"sync/atomic"

	"github.com/michi-mesh/michi/internal/routing"
)

// clusterStats are a cluster's counters and gauges, named in Status as
// Envoy names them under cluster.<name>. (config/upstream/cluster_manager
// cluster_stats), so dashboards written for Istio read them unchanged.
// The gauges double as the circuit breakers' resource counts, the way
// Envoy's ResourceManager and its stats track the same quantities.
type clusterStats struct {
	cxTotal          atomic.Int64
	cxActive         atomic.Int64 // includes connections being established
	cxHTTP1Total     atomic.Int64
	cxHTTP2Total     atomic.Int64
	cxConnectFail    atomic.Int64
	cxConnectTimeout atomic.Int64
	cxOverflow       atomic.Int64
	cxIdleTimeout    atomic.Int64
	cxMaxRequests    atomic.Int64
	cxMaxDuration    atomic.Int64
	cxNoneHealthy    atomic.Int64
	cxTxBytes        atomic.Int64
	cxRxBytes        atomic.Int64

	rqTotal           atomic.Int64
	rqActive          atomic.Int64
	rqPendingTotal    atomic.Int64
	rqPendingActive   atomic.Int64
	rqPendingOverflow atomic.Int64
	rqPendingFailure  atomic.Int64 // pending requests failed by a connect failure
	rqRetry           atomic.Int64
	rqRetryOverflow   atomic.Int64
	rqRetryActive     atomic.Int64 // not an Envoy stat: the max_retries resource count
	rqTimeout         atomic.Int64
	rqCancelled       atomic.Int64
	rqReset           atomic.Int64 // upstream_rq_rx_reset
	rqClass           [6]atomic.Int64

	odEjectionsActive atomic.Int64
	odEnforcedTotal   atomic.Int64
	odOverflow        atomic.Int64
	odDetected5xx     atomic.Int64
	odEnforced5xx     atomic.Int64
	odDetectedGateway atomic.Int64
	odEnforcedGateway atomic.Int64
	odDetectedLocal   atomic.Int64
	odEnforcedLocal   atomic.Int64
	membershipHealthy atomic.Int64
	membershipTotal   atomic.Int64
}

// tryAcquire takes one unit of a circuit-breaker resource when the count
// stays within max. Like Envoy's ResourceManager it is a plain counter:
// concurrent admissions race benignly and may briefly overshoot by the
// number of racing goroutines, which Envoy's circuit_breaking.rst accepts
// as the price of not locking.
func tryAcquire(g *atomic.Int64, max int64) bool {
	if g.Add(1) > max {
		g.Add(-1)
		return false
	}
	return true
}

// limits are a cluster's circuit-breaker thresholds: Envoy's
// circuit_breakers for the default priority, per cluster per proxy.
type limits struct {
	maxConnections, maxPending, maxRequests, maxRetries int64
}

// limitsOf reads the thresholds from a compiled pool. Istio sets every
// threshold a DestinationRule leaves unset to 2^32-1 (applyConnectionPool);
// a zero here can only come from a hand-built table and means the same.
func limitsOf(p routing.ConnectionPool) limits {
	or := func(v uint32) int64 {
		if v == 0 {
			return routing.Unlimited
		}
		return int64(v)
	}
	return limits{
		maxConnections: or(p.MaxConnections),
		maxPending:     or(p.MaxPendingRequests),
		maxRequests:    or(p.MaxRequests),
		maxRetries:     or(p.MaxRetries),
	}
}

// retryLimit is how many retries may be in flight: max_retries, or, with
// a retry budget (which replaces it in Envoy's circuit breakers), the
// budget's share of the active and pending requests, never below its
// minimum concurrency.
func (st *clusterState) retryLimit(s *clusterStats) int64 {
	b := st.cfg.Policy.RetryBudget
	if b == nil {
		return st.limits.maxRetries
	}
	budget := int64(b.Percent / 100 * float64(s.rqActive.Load()+s.rqPendingActive.Load()))
	return max(budget, int64(b.MinRetryConcurrency))
}

// recordStatus counts a response in upstream_rq_<class>xx.
func (s *clusterStats) recordStatus(code int) {
	if c := code / 100; c >= 1 && c <= 5 {
		s.rqClass[c].Add(1)
	}
}

// snapshot renders the stats for Status. The *_open gauges are Envoy's
// circuit_breakers.default.*_open: 1 while the breaker is at its limit.
func (s *clusterStats) snapshot(l limits) map[string]int64 {
	open := func(v, max int64) int64 {
		if v >= max {
			return 1
		}
		return 0
	}
	m := map[string]int64{
		"upstream_cx_total":                                                s.cxTotal.Load(),
		"upstream_cx_active":                                               s.cxActive.Load(),
		"upstream_cx_http1_total":                                          s.cxHTTP1Total.Load(),
		"upstream_cx_http2_total":                                          s.cxHTTP2Total.Load(),
		"upstream_cx_connect_fail":                                         s.cxConnectFail.Load(),
		"upstream_cx_connect_timeout":                                      s.cxConnectTimeout.Load(),
		"upstream_cx_overflow":                                             s.cxOverflow.Load(),
		"upstream_cx_idle_timeout":                                         s.cxIdleTimeout.Load(),
		"upstream_cx_max_requests":                                         s.cxMaxRequests.Load(),
		"upstream_cx_max_duration_reached":                                 s.cxMaxDuration.Load(),
		"upstream_cx_none_healthy":                                         s.cxNoneHealthy.Load(),
		"upstream_cx_tx_bytes_total":                                       s.cxTxBytes.Load(),
		"upstream_cx_rx_bytes_total":                                       s.cxRxBytes.Load(),
		"upstream_rq_total":                                                s.rqTotal.Load(),
		"upstream_rq_active":                                               s.rqActive.Load(),
		"upstream_rq_pending_total":                                        s.rqPendingTotal.Load(),
		"upstream_rq_pending_active":                                       s.rqPendingActive.Load(),
		"upstream_rq_pending_overflow":                                     s.rqPendingOverflow.Load(),
		"upstream_rq_pending_failure_eject":                                s.rqPendingFailure.Load(),
		"upstream_rq_retry":                                                s.rqRetry.Load(),
		"upstream_rq_retry_overflow":                                       s.rqRetryOverflow.Load(),
		"upstream_rq_timeout":                                              s.rqTimeout.Load(),
		"upstream_rq_cancelled":                                            s.rqCancelled.Load(),
		"upstream_rq_rx_reset":                                             s.rqReset.Load(),
		"upstream_rq_1xx":                                                  s.rqClass[1].Load(),
		"upstream_rq_2xx":                                                  s.rqClass[2].Load(),
		"upstream_rq_3xx":                                                  s.rqClass[3].Load(),
		"upstream_rq_4xx":                                                  s.rqClass[4].Load(),
		"upstream_rq_5xx":                                                  s.rqClass[5].Load(),
		"circuit_breakers.default.cx_open":                                 open(s.cxActive.Load(), l.maxConnections),
		"circuit_breakers.default.rq_pending_open":                         open(s.rqPendingActive.Load(), l.maxPending),
		"circuit_breakers.default.rq_open":                                 open(s.rqActive.Load(), l.maxRequests),
		"circuit_breakers.default.rq_retry_open":                           open(s.rqRetryActive.Load(), l.maxRetries),
		"outlier_detection.ejections_active":                               s.odEjectionsActive.Load(),
		"outlier_detection.ejections_enforced_total":                       s.odEnforcedTotal.Load(),
		"outlier_detection.ejections_overflow":                             s.odOverflow.Load(),
		"outlier_detection.ejections_detected_consecutive_5xx":             s.odDetected5xx.Load(),
		"outlier_detection.ejections_enforced_consecutive_5xx":             s.odEnforced5xx.Load(),
		"outlier_detection.ejections_detected_consecutive_gateway_failure": s.odDetectedGateway.Load(),
		"outlier_detection.ejections_enforced_consecutive_gateway_failure": s.odEnforcedGateway.Load(),
		"outlier_detection.ejections_detected_consecutive_local_origin_failure": s.odDetectedLocal.Load(),
		"outlier_detection.ejections_enforced_consecutive_local_origin_failure": s.odEnforcedLocal.Load(),
		"membership_total":   s.membershipTotal.Load(),
		"membership_healthy": s.membershipHealthy.Load(),
	}
	return m
}
