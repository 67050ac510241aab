package lb

import (
	"math"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// warmup is Envoy's slow start (slow_start.rst, EdfLoadBalancerBase
// applySlowStartFactor), Istio's `warmup`: while a host is younger than
// the window its weight is scaled by
//
//	max(minPercent/100, (max(age, 1ms) / window)^(1/aggression))
//
// Pickers are immutable, so the factor is computed at pick time from the
// host's AddedAt and the pick's Now.
type warmup struct {
	window        time.Duration
	minFactor     float64
	invAggression float64
}

// newWarmup returns nil when w configures no slow start.
func newWarmup(w *routing.Warmup) *warmup {
	if w == nil || w.Duration <= 0 {
		return nil
	}
	aggression := w.Aggression
	// Envoy falls back to 1.0 for a non-positive or NaN aggression.
	if !(aggression > 0) || math.IsInf(aggression, 0) {
		aggression = 1
	}
	return &warmup{
		window:        w.Duration,
		minFactor:     min(max(w.MinPercent, 0), 100) / 100,
		invAggression: 1 / aggression,
	}
}

// factor is the weight multiplier of a host added at addedAt, at now; 1
// once the window has passed or when the host is not warming up.
func (w *warmup) factor(addedAt, now time.Time) float64 {
	if addedAt.IsZero() {
		return 1
	}
	age := now.Sub(addedAt)
	if age >= w.window {
		return 1
	}
	age = max(age, time.Millisecond)
	f := float64(age) / float64(w.window)
	if w.invAggression != 1 {
		f = math.Pow(f, w.invAggression)
	}
	return max(f, w.minFactor)
}

// warmUntil is when the last of hosts leaves slow start; the zero time
// when none ever warms up.
func (w *warmup) warmUntil(hosts []*Host, healthy map[*Host]bool) time.Time {
	var until time.Time
	for _, h := range hosts {
		if eligibleForWarmup(h, healthy) {
			if t := h.AddedAt.Add(w.window); t.After(until) {
				until = t
			}
		}
	}
	return until
}

// eligibleForWarmup reports whether slow start may apply to h: Envoy
// scales only healthy hosts, so a host picked in panic mode while
// unhealthy keeps its weight.
func eligibleForWarmup(h *Host, healthy map[*Host]bool) bool {
	return !h.AddedAt.IsZero() && healthy[h]
}
