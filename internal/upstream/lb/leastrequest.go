package lb

import "math/bits"

// leastRequest is Envoy's LEAST_REQUEST, Istio's default. With equal
// weights it is the power of two choices: sample two hosts at random (with
// replacement) and take the one with fewer active requests, keeping the
// first on a tie (Envoy's default choice_count of 2, which Istio does not
// change).
//
// With unequal weights, or while a host warms up, Envoy schedules hosts
// by weight / (active+1) (times the slow-start factor). Active counts
// change with every request, so nothing can be precomputed; the picker
// draws a host by static weight and keeps it with probability
// 1/(active+1) × factor, which picks hosts in exact proportion to their
// dynamic weights. After maxRejections misses (all hosts busy) it draws
// exactly by scanning the set.
type leastRequest struct {
	hostSet
}

func (lr *leastRequest) choose(ctx *PickContext, rng *source) *Host {
	if len(lr.hosts) == 1 {
		return lr.hosts[0]
	}
	warming := lr.warming(ctx.Now)
	if lr.equal && !warming {
		return lr.fewestOfSample(rng)
	}
	for range maxRejections {
		i := lr.propose(rng)
		keep := 1 / float64(activeRequests(lr.hosts[i])+1)
		if warming {
			keep *= lr.warm.factor(lr.addedAt[i], ctx.Now)
		}
		if rng.float64() < keep {
			return lr.hosts[i]
		}
	}
	return lr.hosts[lr.sample(ctx.Now, warming, true, rng)]
}

// fewestOfSample is the power of two choices. Both samples come from one
// random number: the high word of r×n is the first index, and the low
// word, uniform in its own right, times n gives the second.
func (lr *leastRequest) fewestOfSample(rng *source) *Host {
	n := uint64(len(lr.hosts))
	first, rest := bits.Mul64(rng.uint64(), n)
	second, _ := bits.Mul64(rest, n)
	best, other := lr.hosts[first], lr.hosts[second]
	if other.Active.Load() < best.Active.Load() {
		return other
	}
	return best
}
