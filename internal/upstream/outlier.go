package upstream

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// Outlier detection after Envoy's outlier_detection_impl.cc, with the
// detectors Istio enables: consecutive 5xx, consecutive gateway failure and
// (with splitExternalLocalOriginErrors) consecutive local-origin failure.
// Istio turns success-rate ejection off (enforcing_success_rate 0), so
// there is no success-rate or failure-percentage detector here.
//
// Errors are counted inline on the request path with atomics; the Nth
// consecutive error ejects the host at once (Envoy posts it to the main
// thread, we take Cluster.mu). Un-ejection and the decay of the ejection
// multiplier run on one interval timer per cluster.

// outlierConfig is routing.OutlierDetection with Envoy's defaults resolved.
type outlierConfig struct {
	consecutive5xx     uint32 // 0 disables
	consecutiveGateway uint32 // 0 disables
	consecutiveLocal   uint32 // split mode only; 0 disables
	split              bool
	interval           time.Duration
	baseEjection       time.Duration
	maxEjection        time.Duration
	maxEjectionPercent uint32
	panicThreshold     float64
	errorCodes         []int // sorted; empty means 5xx
}

func newOutlierConfig(o *routing.OutlierDetection) *outlierConfig {
	if o == nil {
		return nil
	}
	cfg := &outlierConfig{
		consecutive5xx:     o.Consecutive5xx,
		consecutiveGateway: o.ConsecutiveGatewayErrors,
		split:              o.SplitExternalLocalOriginErrors,
		interval:           o.Interval,
		baseEjection:       o.BaseEjectionTime,
		maxEjection:        o.MaxEjectionTime,
		maxEjectionPercent: o.MaxEjectionPercent,
		panicThreshold:     float64(o.MinHealthPercent),
		errorCodes:         slices.Sorted(slices.Values(o.ErrorCodes)),
	}
	if cfg.split {
		cfg.consecutiveLocal = o.ConsecutiveLocalOriginFailures
	}
	// Envoy's defaults for what Istio leaves out of the cluster.
	if cfg.interval <= 0 {
		cfg.interval = 10 * time.Second
	}
	if cfg.baseEjection <= 0 {
		cfg.baseEjection = 30 * time.Second
	}
	if cfg.maxEjection <= 0 {
		cfg.maxEjection = max(300*time.Second, cfg.baseEjection)
	}
	if cfg.maxEjectionPercent == 0 {
		// Istio sends max_ejection_percent only when it is > 0.
		cfg.maxEjectionPercent = 10
	}
	cfg.maxEjectionPercent = min(cfg.maxEjectionPercent, 100)
	return cfg
}

// ejectionType names the detector that found an outlier.
type ejectionType int

const (
	ejectConsecutive5xx ejectionType = iota
	ejectConsecutiveGateway
	ejectConsecutiveLocal
)

// localResult is a locally originated outcome (Envoy Outlier::Result).
type localResult int

const (
	localConnectSuccess localResult = iota // a connection carried the request
	localConnectFailed                     // connect failure, reset, connection termination
	localTimeout                           // the try timed out
)

// hostOutlier is one endpoint's outlier state. It lives in the endpoint,
// so it outlives configuration updates while the endpoint is kept.
type hostOutlier struct {
	consec5xx     atomic.Uint32
	consecGateway atomic.Uint32
	consecLocal   atomic.Uint32
	// ejected is written under Cluster.mu and read without it by Status.
	ejected atomic.Bool

	// Guarded by Cluster.mu.
	ejectedAt    time.Time
	unejectedAt  time.Time // zero until the first un-ejection
	backoff      uint32    // ejection-time multiplier
	numEjections int
}

// reportStatus feeds a response status to outlier detection. With
// outlierDetectionHttpErrorCodes the codes listed are errors and every
// other code a success: Envoy's error matcher reports matched responses as
// ExtOriginRequestFailed (treated as 500) and the rest as success.
func (c *Cluster) reportStatus(st *clusterState, ep *endpoint, code int) {
	cfg := st.outlier
	if cfg == nil {
		return
	}
	if len(cfg.errorCodes) > 0 {
		if _, ok := slices.BinarySearch(cfg.errorCodes, code); ok {
			code = 500
		} else {
			code = 200
		}
	}
	c.putHTTPCode(cfg, ep, code)
}

// reportLocal feeds a locally originated outcome to outlier detection.
// Without the split, Envoy maps timeouts to 504 and connect failures and
// resets to 503, so they count as 5xx and gateway errors; with it they
// only count toward consecutive local-origin failures, and a successful
// connection resets that count.
func (c *Cluster) reportLocal(st *clusterState, ep *endpoint, r localResult) {
	cfg := st.outlier
	if cfg == nil {
		return
	}
	if !cfg.split {
		switch r {
		case localConnectFailed:
			c.putHTTPCode(cfg, ep, 503)
		case localTimeout:
			c.putHTTPCode(cfg, ep, 504)
		}
		return
	}
	if r == localConnectSuccess {
		ep.od.consecLocal.Store(0)
		return
	}
	if n := ep.od.consecLocal.Add(1); cfg.consecutiveLocal > 0 && n == cfg.consecutiveLocal {
		c.consecutiveError(ep, ejectConsecutiveLocal)
	}
}

// putHTTPCode is Envoy's DetectorHostMonitorImpl::putHttpResponseCode. A
// detector fires when its count reaches the threshold exactly, so a host
// whose ejection was refused (max ejection percent) needs another full run
// of errors before it is considered again.
func (c *Cluster) putHTTPCode(cfg *outlierConfig, ep *endpoint, code int) {
	if code < 500 || code > 599 {
		ep.od.consec5xx.Store(0)
		ep.od.consecGateway.Store(0)
		return
	}
	if code == 502 || code == 503 || code == 504 {
		if n := ep.od.consecGateway.Add(1); cfg.consecutiveGateway > 0 && n == cfg.consecutiveGateway {
			c.consecutiveError(ep, ejectConsecutiveGateway)
		}
	} else {
		ep.od.consecGateway.Store(0)
	}
	if n := ep.od.consec5xx.Add(1); cfg.consecutive5xx > 0 && n == cfg.consecutive5xx {
		c.consecutiveError(ep, ejectConsecutive5xx)
	}
}

// consecutiveError ejects ep if the ejection limit allows, then resets the
// detector's count (Envoy onConsecutiveErrorWorker).
//
// The limit is Envoy's current rule (envoyproxy/envoy#27909): a host is
// ejected only if the ejected share, counting it, stays within
// max_ejection_percent. The older "always eject at least one host" is now
// the opt-in always_eject_one_host, which Istio does not set. With Istio's
// default of 10%, a cluster needs at least 10 endpoints before anything is
// ejected.
func (c *Cluster) consecutiveError(ep *endpoint, typ ejectionType) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state.Load()
	cfg := st.outlier
	if cfg == nil || c.retired || !st.has(ep) || ep.od.ejected.Load() {
		return
	}
	s := &c.stats
	switch typ {
	case ejectConsecutive5xx:
		s.odDetected5xx.Add(1)
	case ejectConsecutiveGateway:
		s.odDetectedGateway.Add(1)
	case ejectConsecutiveLocal:
		s.odDetectedLocal.Add(1)
	}
	active := s.odEjectionsActive.Load()
	if float64(active+1)*100/float64(len(st.members)) <= float64(cfg.maxEjectionPercent) {
		s.odEjectionsActive.Add(1)
		s.odEnforcedTotal.Add(1)
		switch typ {
		case ejectConsecutive5xx:
			s.odEnforced5xx.Add(1)
		case ejectConsecutiveGateway:
			s.odEnforcedGateway.Add(1)
		case ejectConsecutiveLocal:
			s.odEnforcedLocal.Add(1)
		}
		od := &ep.od
		od.ejected.Store(true)
		od.ejectedAt = c.m.now()
		od.numEjections++
		if time.Duration(od.backoff)*cfg.baseEjection < cfg.maxEjection+cfg.baseEjection {
			od.backoff++
		}
		c.m.log.Info("outlier ejected", "cluster", c.name, "endpoint", ep.addr, "ejections", od.numEjections,
			"ejection_seconds", ejectionTime(cfg, od).Seconds())
		c.rebuildLocked(st)
	} else {
		s.odOverflow.Add(1)
	}
	switch typ {
	case ejectConsecutive5xx:
		ep.od.consec5xx.Store(0)
	case ejectConsecutiveGateway:
		ep.od.consecGateway.Store(0)
	case ejectConsecutiveLocal:
		ep.od.consecLocal.Store(0)
	}
}

// ejectionTime is how long an ejection lasts: base × multiplier, capped.
func ejectionTime(cfg *outlierConfig, od *hostOutlier) time.Duration {
	return min(time.Duration(od.backoff)*cfg.baseEjection, cfg.maxEjection)
}

// sweep is the interval timer (Envoy DetectorImpl::onIntervalTimer): it
// returns hosts whose ejection time has passed, resetting their counts so a
// few new errors do not re-eject them, and decrements the multiplier of
// every host that has stayed in service for a whole interval since it last
// came back.
func (c *Cluster) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state.Load()
	cfg := st.outlier
	if cfg == nil || c.retired {
		return
	}
	changed := false
	for _, m := range st.members {
		od := &m.ep.od
		if !od.ejected.Load() || now.Sub(od.ejectedAt) < ejectionTime(cfg, od) {
			continue
		}
		od.ejected.Store(false)
		od.unejectedAt = now
		od.consec5xx.Store(0)
		od.consecGateway.Store(0)
		od.consecLocal.Store(0)
		c.stats.odEjectionsActive.Add(-1)
		c.m.log.Info("outlier returned", "cluster", c.name, "endpoint", m.ep.addr)
		changed = true
	}
	for _, m := range st.members {
		od := &m.ep.od
		if !od.ejected.Load() && !od.unejectedAt.IsZero() && now.Sub(od.unejectedAt) >= cfg.interval && od.backoff > 0 {
			od.backoff--
		}
	}
	if changed {
		c.rebuildLocked(st)
	}
}

// intervalTimer runs a cluster's sweeps; there is one per cluster with
// outlier detection, stopped when the cluster loses it or is retired.
type intervalTimer struct {
	t        Ticker
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
}

// startTimer starts the sweep goroutine. Called with c.mu held.
func (c *Cluster) startTimer(interval time.Duration) *intervalTimer {
	it := &intervalTimer{
		t:        c.m.ticker(interval),
		interval: interval,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go c.runTimer(it)
	return it
}

func (c *Cluster) runTimer(it *intervalTimer) {
	defer close(it.done)
	defer it.t.Stop()
	for {
		select {
		case <-it.stop:
			return
		case <-it.t.C():
			c.sweep(c.m.now())
		}
	}
}

// stopTimer stops the sweeps without waiting: the sweep goroutine may be
// blocked on c.mu, which the caller holds.
func (it *intervalTimer) stopTimer() {
	if it != nil {
		close(it.stop)
	}
}

// realTicker adapts *time.Ticker to Ticker.
type realTicker struct{ *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.Ticker.C }

func newRealTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }
