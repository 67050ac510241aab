package lb

// random is Envoy's RANDOM: a uniformly random host of the set. Envoy
// ignores endpoint weights here (random_lb.cc picks
// hosts[random % size]); locality weights still apply, since the locality
// is chosen before the host.
type random struct {
	hosts []*Host
}

func (r *random) choose(_ *PickContext, rng *source) *Host {
	return r.hosts[rng.below(len(r.hosts))]
}
