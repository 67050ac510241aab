package lb

import (
	"sync/atomic"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// Host is one endpoint as pickers see it. It is created once per endpoint
// and kept across picker rebuilds and config reloads while the endpoint
// exists.
type Host struct {
	Address string
	// Weight is the endpoint's load-balancing weight; 0 counts as 1.
	Weight   uint32
	Locality string // region/zone/subzone
	Labels   map[string]string
	// AddedAt is when the host joined the cluster, for warmup. The zero
	// time means the host is not warming up. Envoy puts a host in slow
	// start only when it joins a cluster that already exists, so the owner
	// leaves AddedAt zero for the hosts a cluster starts with.
	AddedAt time.Time
	// Active is the number of requests in flight to the host; the caller
	// increments it when a pick is used and decrements it when the request
	// ends. LEAST_REQUEST reads it.
	Active atomic.Int64
}

// PickContext is what one pick may depend on. Pickers only read it; a
// nil *PickContext is an empty one.
type PickContext struct {
	// Hash is the request's consistent-hash key (RING_HASH, MAGLEV). Without
	// it a hash picker picks at random, as Envoy does.
	Hash    uint64
	HasHash bool
	// Exclude reports hosts to avoid (Envoy's previous_hosts retry
	// predicate). When a pick lands on an excluded host the picker picks
	// again, up to Attempts more times (Envoy
	// host_selection_retry_max_attempts), then returns the last host it
	// found even if excluded.
	Exclude  func(*Host) bool
	Attempts int
	// Now is the time of the pick, for warmup; the zero time disables
	// warmup for the pick.
	Now time.Time
}

// Picker chooses a host. Pick must not block, lock or allocate; it
// returns nil when there is no host to pick (Envoy: no healthy upstream,
// response flag UH).
type Picker interface {
	Pick(ctx *PickContext) *Host
}

// Config is what a picker is built from.
type Config struct {
	LB routing.LoadBalancer
	// Hosts are all the cluster's hosts; Healthy reports which are not
	// ejected. A nil Healthy means every host is healthy. Build calls
	// Healthy once per host: the picker is a snapshot.
	Hosts   []*Host
	Healthy func(*Host) bool
	// PanicThreshold is the percentage of healthy hosts below which the
	// picker ignores health (Envoy healthy_panic_threshold; Istio sets 0
	// with outlier detection, Envoy's default is 50). Like Envoy it is
	// rounded to a whole percent; 0 disables panic mode.
	PanicThreshold float64
	// LocalityEnabled turns on Istio's locality load balancing: the owner
	// sets it when the locality setting is enabled (DestinationRule
	// localityLbSetting.enabled, else the mesh default, true) and Istio
	// would apply it — `distribute` whenever it is set, failover
	// priorities only when the cluster has outlier detection, because
	// without ejections Envoy never leaves priority 0
	// (istio loadbalancer.go ApplyLocalityLoadBalancer). LB.Locality holds
	// the setting; nil means the mesh default: failover by proximity.
	// LB.Locality.Enabled is not read here; the owner folds it into this
	// flag.
	LocalityEnabled bool
	// Local is the proxy's own locality (region/zone/subzone) and
	// LocalLabels its labels, against which locality priorities and
	// failoverPriority labels are computed.
	Local       string
	LocalLabels map[string]string
	// Seed, when non-zero, makes the picker's random choices a
	// deterministic sequence (tests fix it). That sequence is one atomic
	// counter every goroutine contends on, so in production Seed is left
	// zero: math/rand/v2's lock-free, per-CPU generator.
	Seed uint64
}

// Build returns a picker for cfg. It never returns nil: for PASSTHROUGH,
// which has no hosts to choose from (the cluster connects to the original
// destination), and for a cluster without hosts, the picker's Pick
// returns nil.
func Build(cfg Config) Picker {
	if cfg.LB.Policy == routing.LBPassthrough {
		return noHost{}
	}
	hosts := make([]*Host, 0, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		if h != nil {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return noHost{}
	}
	healthy := make(map[*Host]bool, len(hosts))
	for _, h := range hosts {
		healthy[h] = cfg.Healthy == nil || cfg.Healthy(h)
	}
	levels := planLevels(arrange(cfg, hosts), healthy, cfg.PanicThreshold)
	rng := newSource(cfg.Seed)
	switch cfg.LB.Policy {
	case routing.LBRingHash, routing.LBMaglev:
		return newHashPicker(cfg.LB, levels, rng)
	default:
		return newScheduledPicker(cfg.LB, levels, healthy, rng)
	}
}

// noHost is the picker of a cluster with nothing to pick.
type noHost struct{}

func (noHost) Pick(*PickContext) *Host { return nil }

// noContext stands in for a nil *PickContext.
var noContext PickContext

// tries is how many picks one Pick may make: the first, plus Attempts
// re-picks when an Exclude predicate is set.
func (ctx *PickContext) tries() int {
	if ctx.Exclude == nil || ctx.Attempts <= 0 {
		return 1
	}
	return 1 + ctx.Attempts
}

// weightOf is the host's load-balancing weight; the contract says >= 1,
// and a 0 that slips through counts as 1 rather than removing the host.
func weightOf(h *Host) uint64 {
	if h.Weight == 0 {
		return 1
	}
	return uint64(h.Weight)
}
