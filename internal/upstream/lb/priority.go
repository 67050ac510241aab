package lb

import "math"

// This file decides how traffic splits across priority levels and which
// levels are in panic, as Envoy's LoadBalancerBase does
// (load_balancer_impl.cc recalculatePerPriorityState,
// recalculatePerPriorityPanic, recalculateLoadInTotalPanic; priority.rst,
// panic_threshold.rst).

// overprovisioningFactor is Envoy's default overprovisioning factor (1.4)
// in percent: a level keeps all of its traffic until fewer than 1/1.4
// (~72%) of its hosts are healthy.
const overprovisioningFactor = 140

// levelPlan is one priority level, ready for an algorithm to build on.
type levelPlan struct {
	// load is the level's percentage of traffic.
	load uint32
	// panic says the level ignores health: its picks go to all its hosts.
	panic bool
	// hosts are the level's hosts in order; healthy those of them that
	// are healthy.
	hosts, healthy []*Host
	// groups are the level's localities, set when Envoy weights
	// localities (and the level is not in panic).
	groups []groupPlan
}

// groupPlan is one locality of a level.
type groupPlan struct {
	// weight is the locality's configured weight.
	weight uint64
	// effective is the weight scaled down by the locality's availability,
	// Envoy's effectiveLocalityWeight.
	effective float64
	healthy   []*Host
}

// candidates are the hosts a pick at this level chooses from when it does
// not choose a locality first.
func (l *levelPlan) candidates() []*Host {
	if l.panic {
		return l.hosts
	}
	return l.healthy
}

// planLevels computes each level's load and panic state from host health.
func planLevels(a arrangement, healthy map[*Host]bool, panicThreshold float64) []levelPlan {
	levels := make([]levelPlan, len(a.levels))
	counts := make([]levelCount, len(a.levels))
	for i, groups := range a.levels {
		l := &levels[i]
		for _, g := range groups {
			gp := groupPlan{weight: g.weight}
			for _, h := range g.hosts {
				l.hosts = append(l.hosts, h)
				if healthy[h] {
					l.healthy = append(l.healthy, h)
					gp.healthy = append(gp.healthy, h)
				}
			}
			// Availability uses host counts, not weights, as Envoy does
			// unless weighted_priority_health is set (Istio never sets it).
			if len(g.hosts) > 0 {
				availability := min(1, overprovisioningFactor/100.0*float64(len(gp.healthy))/float64(len(g.hosts)))
				gp.effective = float64(g.weight) * availability
			}
			if a.localityWeighted {
				l.groups = append(l.groups, gp)
			}
		}
		counts[i] = levelCount{total: len(l.hosts), healthy: len(l.healthy)}
	}
	loads, panics := priorityLoads(counts, roundThreshold(panicThreshold))
	for i := range levels {
		levels[i].load = loads[i]
		levels[i].panic = panics[i]
		if panics[i] {
			// In panic Envoy returns all the level's hosts before it
			// would choose a locality (hostSourceToUse).
			levels[i].groups = nil
		}
	}
	return levels
}

// roundThreshold rounds a panic threshold to a whole percent in [0, 100],
// as Envoy's PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT does.
func roundThreshold(p float64) uint32 {
	if math.IsNaN(p) || p <= 0 {
		return 0
	}
	return uint32(math.Round(min(p, 100)))
}

// levelCount is a level's host counts.
type levelCount struct{ total, healthy int }

// priorityLoads returns each level's percentage of traffic and whether it
// is in panic.
//
// A level's health is healthy/total × 1.4, capped at 100%. Traffic fills
// the levels in order, each taking its health's share of the normalized
// total health (the sum capped at 100%), so P0 keeps everything while its
// health is 100% and spills to lower levels in proportion as it degrades.
// Rounding leftovers go to the first level with any health.
//
// A level is in panic when the total is below 100% and its healthy
// percentage is below the threshold. If every level is in panic, traffic
// splits by host count regardless of health. With a threshold of 0 and no
// healthy host anywhere, P0 gets all traffic and, having no healthy host,
// picks nothing.
func priorityLoads(levels []levelCount, panicThreshold uint32) (load []uint32, panic []bool) {
	load = make([]uint32, len(levels))
	panic = make([]bool, len(levels))
	health := make([]uint32, len(levels))
	var sum uint32
	for i, l := range levels {
		if l.total > 0 {
			health[i] = min(100, uint32(overprovisioningFactor*l.healthy/l.total))
		}
		sum += health[i]
	}
	normalized := min(100, sum)
	if normalized > 0 {
		remaining := uint32(100)
		first := -1
		for i, h := range health {
			if first < 0 && h > 0 {
				first = i
			}
			load[i] = min(remaining, h*100/normalized)
			remaining -= load[i]
		}
		load[first] += remaining
	}
	if panicThreshold == 0 && normalized == 0 {
		load[0] = 100
		return load, panic
	}
	totalPanic := true
	for i, l := range levels {
		panic[i] = normalized < 100 && inPanic(l, panicThreshold)
		totalPanic = totalPanic && panic[i]
	}
	if totalPanic {
		loadByHostCount(levels, load)
	}
	return load, panic
}

// inPanic reports whether a level's healthy percentage is below the
// threshold; an empty level always is (unless the threshold is 0).
func inPanic(l levelCount, threshold uint32) bool {
	var healthyPercent float64
	if l.total > 0 {
		healthyPercent = 100 * float64(l.healthy) / float64(l.total)
	}
	return healthyPercent < float64(threshold)
}

// loadByHostCount splits traffic in proportion to each level's host count,
// the remainder to the first level with hosts (Envoy
// recalculateLoadInTotalPanic).
func loadByHostCount(levels []levelCount, load []uint32) {
	total := 0
	for _, l := range levels {
		total += l.total
	}
	clear(load)
	if total == 0 {
		load[0] = 100
		return
	}
	remaining := uint32(100)
	first := -1
	for i, l := range levels {
		if first < 0 && l.total > 0 {
			first = i
		}
		load[i] = uint32(100 * l.total / total)
		remaining -= load[i]
	}
	load[first] += remaining
}

// newLevelTable maps a number in [0, 100) to the level that takes it,
// Envoy's choosePriority over cumulative loads. It is nil for a single
// level.
func newLevelTable(levels []levelPlan) *[100]uint16 {
	if len(levels) <= 1 {
		return nil
	}
	var t [100]uint16
	level, cumulative := 0, levels[0].load
	for x := range uint32(100) {
		for x+1 > cumulative && level < len(levels)-1 {
			level++
			cumulative += levels[level].load
		}
		t[x] = uint16(level)
	}
	return &t
}
