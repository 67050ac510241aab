// Package lb implements Envoy's load-balancing algorithms as immutable
// pickers: LEAST_REQUEST (power of two choices, weighted when endpoint
// weights differ), ROUND_ROBIN (weighted), RANDOM, RING_HASH (xxHash, as
// Envoy) and MAGLEV, with locality-aware priorities, slow start (warmup)
// and the panic threshold.
//
// A Picker is built over a snapshot of hosts and never changes; when hosts
// or their health change, the owner builds a new Picker and swaps it in
// atomically. Host carries the state that must outlive pickers (active
// request counts), so counters survive every rebuild.
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
	Address  string
	Weight   uint32 // >= 1
	Locality string // region/zone/subzone
	Labels   map[string]string
	// AddedAt is when the host joined the cluster, for warmup.
	AddedAt time.Time
	// Active is the number of requests in flight to the host; the caller
	// increments it when a pick is used and decrements it when the request
	// ends. LEAST_REQUEST reads it.
	Active atomic.Int64
}

// PickContext is what one pick may depend on.
type PickContext struct {
	// Hash is the request's consistent-hash key (RING_HASH, MAGLEV).
	Hash    uint64
	HasHash bool
	// Exclude reports hosts to avoid (Envoy's previous_hosts retry
	// predicate); the picker retries up to Attempts times to find another,
	// then returns what it has.
	Exclude  func(*Host) bool
	Attempts int
	// Now is the time of the pick, for warmup.
	Now time.Time
}

// Picker chooses a host. Pick must not block, lock or allocate; it
// returns nil when there is no host to pick (Envoy: no healthy upstream).
type Picker interface {
	Pick(ctx *PickContext) *Host
}

// Config is what a picker is built from.
type Config struct {
	LB routing.LoadBalancer
	// Hosts are all the cluster's hosts; Healthy reports which are not
	// ejected.
	Hosts   []*Host
	Healthy func(*Host) bool
	// PanicThreshold is the percentage of healthy hosts below which the
	// picker ignores health (Envoy healthy_panic_threshold; Istio sets 0
	// with outlier detection, Envoy's default is 50).
	PanicThreshold float64
	// LocalityEnabled turns on locality-aware priorities (Istio: only with
	// outlier detection); Local is the proxy's own locality.
	LocalityEnabled bool
	Local           string
	// Seed seeds the picker's random source (tests fix it).
	Seed uint64
}

// Build returns a picker for cfg.
func Build(cfg Config) Picker {
	panic("lb.Build: not implemented yet")
}
