package lb

// leastRequest is Envoy's LEAST_REQUEST, Istio's default. With equal
// weights it is the power of two choices: sample two hosts at random (with
// replacement) and take the one with fewer active requests, keeping the
// first on a tie (Envoy's default choice_count of 2).
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

// choiceCount is Envoy's default least_request_lb_config.choice_count.
const choiceCount = 2

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

// fewestOfSample is the power of two choices.
func (lr *leastRequest) fewestOfSample(rng *source) *Host {
	best := lr.hosts[rng.below(len(lr.hosts))]
	for range choiceCount - 1 {
		if h := lr.hosts[rng.below(len(lr.hosts))]; h.Active.Load() < best.Active.Load() {
			best = h
		}
	}
	return best
}
