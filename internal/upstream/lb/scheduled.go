package lb

import (
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// scheduledPicker is the picker of ROUND_ROBIN, LEAST_REQUEST and RANDOM,
// the algorithms Envoy builds on EdfLoadBalancerBase: each pick chooses a
// priority level at random by load, then, when localities are weighted, a
// locality by effective weight, then a host with the algorithm.
type scheduledPicker struct {
	rng *source
	// table maps a random percent to a level; nil with a single level.
	table  *[100]uint16
	levels []scheduledLevel
}

// scheduledLevel is one priority level's choosers.
type scheduledLevel struct {
	// hosts chooses among the level's candidate hosts (all of them in
	// panic, else the healthy ones); nil when there are none.
	hosts chooser
	// localities, when non-empty, are chosen first by pickLocality, in
	// proportion to their effective weights.
	localities   []chooser
	pickLocality aliasTable
}

// chooser picks a host from a fixed, non-empty set.
type chooser interface {
	choose(ctx *PickContext, rng *source) *Host
}

var _ Picker = (*scheduledPicker)(nil)

func newScheduledPicker(lb routing.LoadBalancer, plans []levelPlan, healthy map[*Host]bool, rng *source) *scheduledPicker {
	// Slow start applies to round robin and least request only.
	var warm *warmup
	if lb.Policy != routing.LBRandom {
		warm = newWarmup(lb.Warmup)
	}
	newChooser := func(hosts []*Host) chooser {
		if len(hosts) == 0 {
			return nil
		}
		switch lb.Policy {
		case routing.LBRoundRobin:
			return newRoundRobin(newHostSet(hosts, warm, healthy), rng)
		case routing.LBRandom:
			return &random{hosts: hosts}
		default:
			// LEAST_REQUEST, Istio's default for an unset policy.
			return &leastRequest{hostSet: newHostSet(hosts, warm, healthy)}
		}
	}
	p := &scheduledPicker{rng: rng, table: newLevelTable(plans), levels: make([]scheduledLevel, len(plans))}
	for i := range plans {
		plan := &plans[i]
		level := &p.levels[i]
		level.hosts = newChooser(plan.candidates())
		var weights []float64
		for _, g := range plan.groups {
			if g.effective > 0 && len(g.healthy) > 0 {
				level.localities = append(level.localities, newChooser(g.healthy))
				weights = append(weights, g.effective)
			}
		}
		if len(weights) > 0 {
			level.pickLocality = newAliasTable(weights)
		}
	}
	return p
}

// Pick implements Picker.
func (p *scheduledPicker) Pick(ctx *PickContext) *Host {
	if ctx == nil {
		ctx = &noContext
	}
	var h *Host
	for range ctx.tries() {
		// Like Envoy's chooseHostOnce, a re-pick starts over with fresh
		// randomness: another level and locality may take it.
		h = p.pickOnce(ctx)
		if h == nil || ctx.Exclude == nil || !ctx.Exclude(h) {
			return h
		}
	}
	return h
}

func (p *scheduledPicker) pickOnce(ctx *PickContext) *Host {
	level := &p.levels[0]
	if p.table != nil {
		level = &p.levels[p.table[p.rng.uint64()%100]]
	}
	c := level.hosts
	if len(level.localities) > 0 {
		c = level.localities[level.pickLocality.pick(p.rng.uint64())]
	}
	if c == nil {
		return nil
	}
	return c.choose(ctx, p.rng)
}

// maxRejections bounds the rejection sampling of dynamic weights before a
// pick falls back to an exact scan of the set.
const maxRejections = 8

// hostSet is the hosts one pick chooses among (a level, or a locality of
// it) with what the weighted algorithms need to weigh them.
type hostSet struct {
	hosts   []*Host
	weights []float64
	// equal says every host has the same weight.
	equal bool
	// proposal draws hosts in proportion to their static weights; built
	// only when weights differ.
	proposal aliasTable
	// warm is the slow-start configuration (nil without it); warmUntil is
	// when the last host leaves slow start, and addedAt[i] is hosts[i]'s
	// AddedAt, zero when slow start does not apply to it.
	warm      *warmup
	warmUntil time.Time
	addedAt   []time.Time
}

func newHostSet(hosts []*Host, warm *warmup, healthy map[*Host]bool) hostSet {
	s := hostSet{hosts: hosts, weights: make([]float64, len(hosts)), equal: true}
	for i, h := range hosts {
		s.weights[i] = float64(weightOf(h))
		if s.weights[i] != s.weights[0] {
			s.equal = false
		}
	}
	if !s.equal {
		s.proposal = newAliasTable(s.weights)
	}
	if warm != nil {
		if until := warm.warmUntil(hosts, healthy); !until.IsZero() {
			s.warm = warm
			s.warmUntil = until
			s.addedAt = make([]time.Time, len(hosts))
			for i, h := range hosts {
				if eligibleForWarmup(h, healthy) {
					s.addedAt[i] = h.AddedAt
				}
			}
		}
	}
	return s
}

// warming reports whether any host may be in slow start at now. When none
// is, Envoy uses its unweighted fast paths again (noHostsAreInSlowStart).
func (s *hostSet) warming(now time.Time) bool {
	return s.warm != nil && !now.IsZero() && now.Before(s.warmUntil)
}

// propose draws a host index in proportion to static weights.
func (s *hostSet) propose(rng *source) int {
	if s.equal {
		return rng.below(len(s.hosts))
	}
	return s.proposal.pick(rng.uint64())
}

// dynamicWeight is host i's weight at the time of a pick: divided by its
// active requests plus one for least request (Envoy's active_request_bias
// of 1.0, which Istio does not change), scaled by slow start.
func (s *hostSet) dynamicWeight(i int, now time.Time, warming, byActive bool) float64 {
	w := s.weights[i]
	if byActive {
		w /= float64(activeRequests(s.hosts[i]) + 1)
	}
	if warming {
		w *= s.warm.factor(s.addedAt[i], now)
	}
	return w
}

// sample draws a host index in exact proportion to dynamic weights with
// one pass to sum them and one to find the draw. Active counts may move
// between the passes; the draw then falls on the last host.
func (s *hostSet) sample(now time.Time, warming, byActive bool, rng *source) int {
	var total float64
	for i := range s.hosts {
		total += s.dynamicWeight(i, now, warming, byActive)
	}
	target := rng.float64() * total
	for i := range s.hosts {
		target -= s.dynamicWeight(i, now, warming, byActive)
		if target < 0 {
			return i
		}
	}
	return len(s.hosts) - 1
}

func activeRequests(h *Host) int64 {
	return max(h.Active.Load(), 0)
}
