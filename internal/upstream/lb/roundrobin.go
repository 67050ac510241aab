package lb

import "sync/atomic"

// roundRobin is Envoy's ROUND_ROBIN. With equal weights it walks the
// hosts in order from a random start, as Envoy's unweighted pick does.
// With unequal weights Envoy uses an EDF schedule; this picker must stay
// lock-free, so it walks the cumulative weight line instead: pick k lands
// on slot k×stride mod W, where W is the sum of the weights and the
// stride is coprime with W and near W/φ. Every W consecutive picks visit
// every slot once, so each host gets exactly its weight per cycle, and the
// golden-ratio stride interleaves hosts smoothly the way EDF does.
//
// The counter itself advances by the stride, so a pick costs one atomic
// add and one division. When it wraps at 2^64 the schedule shifts once:
// the cycle in progress is the only one not exact (every 2^64/stride
// picks, at least 2^32 for weights summing below 2^32).
type roundRobin struct {
	hostSet
	// next is the schedule's position, advanced by stride per pick.
	next atomic.Uint64
	// cumulative[i] is the sum of the weights of hosts 0..i; nil when the
	// weights are equal (and stride is 1).
	cumulative []uint64
	stride     uint64
}

func newRoundRobin(set hostSet, rng *source) *roundRobin {
	rr := &roundRobin{hostSet: set}
	rr.next.Store(rng.uint64())
	rr.stride = 1
	if !set.equal {
		rr.cumulative = make([]uint64, len(set.hosts))
		var sum uint64
		for i, h := range set.hosts {
			sum += weightOf(h)
			rr.cumulative[i] = sum
		}
		rr.stride = goldenStride(sum)
	}
	return rr
}

func (rr *roundRobin) choose(ctx *PickContext, rng *source) *Host {
	if len(rr.hosts) == 1 {
		return rr.hosts[0]
	}
	if !rr.warming(ctx.Now) {
		return rr.hosts[rr.step()]
	}
	// Slow start: keep each scheduled host with probability equal to its
	// warmup factor, so hosts are picked in proportion to weight × factor
	// (Envoy scales the EDF weight the same way).
	for range maxRejections {
		i := rr.step()
		if rng.float64() < rr.warm.factor(rr.addedAt[i], ctx.Now) {
			return rr.hosts[i]
		}
	}
	return rr.hosts[rr.sample(ctx.Now, true, false, rng)]
}

// step advances the schedule and returns the next host's index.
func (rr *roundRobin) step() int {
	k := rr.next.Add(rr.stride)
	if rr.cumulative == nil {
		return int(k % uint64(len(rr.hosts)))
	}
	return searchCumulative(rr.cumulative, k%rr.cumulative[len(rr.cumulative)-1])
}

// searchCumulative returns the index of the first cumulative weight above
// slot.
func searchCumulative(cumulative []uint64, slot uint64) int {
	lo, hi := 0, len(cumulative)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if cumulative[mid] > slot {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// goldenStride returns the integer nearest to total/φ that is coprime
// with total, so stepping by it visits every slot of [0, total).
func goldenStride(total uint64) uint64 {
	if total <= 2 {
		return 1
	}
	s := max(uint64(float64(total)*0.6180339887498949), 1)
	for gcd(s, total) != 1 {
		s++
	}
	return s
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
