package lb

import (
	"cmp"
	"slices"

	"github.com/michi-mesh/michi/internal/routing"
)

// hashPicker is the picker of RING_HASH and MAGLEV, Envoy's thread-aware
// load balancers: the request's hash chooses the priority level (hash %
// 100 against the levels' loads) and then, through a table built for the
// level, the host. Without a hash the picker uses a random one, as Envoy
// does.
type hashPicker struct {
	rng *source
	// table maps hash % 100 to a level; nil with a single level.
	table  *[100]uint16
	levels []hashTable
}

// hashTable maps a hash to a host. attempt > 0 asks for an alternative
// for the retry host predicate.
type hashTable interface {
	lookup(hash uint64, attempt int) *Host
}

var _ Picker = (*hashPicker)(nil)

func newHashPicker(lb routing.LoadBalancer, plans []levelPlan, rng *source) *hashPicker {
	p := &hashPicker{rng: rng, table: newLevelTable(plans), levels: make([]hashTable, len(plans))}
	for i := range plans {
		entries := hashEntries(&plans[i])
		if lb.Policy == routing.LBMaglev {
			p.levels[i] = newMaglev(entries, lb.MaglevTableSize)
		} else {
			p.levels[i] = newRing(entries, lb.MinRingSize, maxRingSize)
		}
	}
	return p
}

// Pick implements Picker.
func (p *hashPicker) Pick(ctx *PickContext) *Host {
	if ctx == nil {
		ctx = &noContext
	}
	h := ctx.Hash
	if !ctx.HasHash {
		h = p.rng.uint64()
	}
	t := p.levels[0]
	if p.table != nil {
		t = p.levels[p.table[h%100]]
	}
	var host *Host
	// Istio does not set the previous_hosts predicate for consistent
	// hashing, but an Exclude given anyway is honoured the way Envoy's
	// thread-aware balancers do: the same hash, a different attempt.
	for attempt := range ctx.tries() {
		host = t.lookup(h, attempt)
		if host == nil || ctx.Exclude == nil || !ctx.Exclude(host) {
			return host
		}
	}
	return host
}

// weightedHost is a host and its normalized weight: the weights of one
// table sum to at most 1.
type weightedHost struct {
	host   *Host
	weight float64
}

// hashEntries normalizes a level's weights as Envoy's thread-aware base
// does (normalizeWeights): host weights over the level's candidates, or,
// when localities are weighted, each healthy host's share of its
// locality's share of the configured locality weights, the raw weights
// rather than the availability-scaled ones the other algorithms use. The
// entries are sorted by address so every proxy builds the same table from
// the same hosts, whatever order they came in.
func hashEntries(l *levelPlan) []weightedHost {
	var entries []weightedHost
	if len(l.groups) == 0 {
		entries = normalize(entries, l.candidates(), 1)
	} else {
		var sum uint64
		for _, g := range l.groups {
			sum += g.weight
		}
		for _, g := range l.groups {
			if g.weight > 0 {
				entries = normalize(entries, g.healthy, float64(g.weight)/float64(sum))
			}
		}
	}
	slices.SortStableFunc(entries, func(a, b weightedHost) int {
		return cmp.Compare(a.host.Address, b.host.Address)
	})
	return entries
}

// normalize appends hosts with weights summing to share.
func normalize(entries []weightedHost, hosts []*Host, share float64) []weightedHost {
	sum := float64(sumWeights(hosts))
	for _, h := range hosts {
		entries = append(entries, weightedHost{host: h, weight: float64(weightOf(h)) * share / sum})
	}
	return entries
}
