package upstream

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/upstream/lb"
)

// endpoint is one upstream address of a cluster. It is created when the
// address first appears and kept, with its outlier state, counters and
// connection pools, until the address leaves the cluster.
type endpoint struct {
	addr string
	c    *Cluster
	od   hostOutlier

	active   atomic.Int64 // requests (and TCP connections) in flight
	total    atomic.Int64 // requests sent
	errors   atomic.Int64 // 5xx responses and local-origin failures
	tcpConns atomic.Int64 // open DialTCP connections

	// Guarded by Cluster.mu.
	host *lb.Host
	spec routing.Endpoint

	// dyn is the member of an ORIGINAL_DST endpoint, guarded by
	// Cluster.dynMu.
	dyn *member

	mu    sync.Mutex // guards pools and gone
	pools map[poolKey]*pool
	gone  bool // removed from the cluster: pools drain and close
}

// member is an endpoint as one configuration snapshot sees it.
type member struct {
	ep   *endpoint
	host *lb.Host
	spec *routing.Endpoint
	// prof is how connections to the endpoint are made: plaintext, or
	// TLS when the cluster originates it (for auto mTLS, only to
	// endpoints whose proxy accepts it).
	prof *transportProfile
}

// attempt labels for Attempt.
func (m *member) attempt() Attempt {
	return Attempt{Endpoint: m.ep.addr, Locality: m.spec.Locality, Labels: m.spec.Labels}
}

// sameHost reports whether a new spec keeps what a picker reads from an
// lb.Host; if not, the endpoint gets a fresh Host, because pickers read
// its fields without synchronisation.
func sameHost(a, b *routing.Endpoint) bool {
	return a.Weight == b.Weight && a.Locality == b.Locality && maps.Equal(a.Labels, b.Labels)
}

// pool returns the endpoint's pool for key, creating it.
func (ep *endpoint) pool(key poolKey) *pool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if p := ep.pools[key]; p != nil {
		return p
	}
	if ep.pools == nil {
		ep.pools = map[poolKey]*pool{}
	}
	p := newPool(ep, key)
	if ep.gone {
		p.drain()
	}
	ep.pools[key] = p
	return p
}

// drainPools drains every pool whose profile is not keep (nil drains all):
// idle connections close now, busy ones when their requests finish.
func (ep *endpoint) drainPools(keep ...*transportProfile) {
	ep.mu.Lock()
	var drain []*pool
	for k, p := range ep.pools {
		if !slices.Contains(keep, k.prof) {
			drain = append(drain, p)
			delete(ep.pools, k)
		}
	}
	ep.mu.Unlock()
	for _, p := range drain {
		p.drain()
	}
}

// retire removes the endpoint from service; its requests in flight finish.
func (ep *endpoint) retire() {
	ep.mu.Lock()
	ep.gone = true
	ep.mu.Unlock()
	ep.drainPools()
}

// close closes every connection of the endpoint at once.
func (ep *endpoint) close() {
	ep.mu.Lock()
	ep.gone = true
	pools := slices.Collect(maps.Values(ep.pools))
	ep.pools = nil
	ep.mu.Unlock()
	for _, p := range pools {
		p.close()
	}
}

// idle reports whether nothing uses the endpoint: no requests and no
// connections (for ORIGINAL_DST clean-up).
func (ep *endpoint) idle() bool {
	if ep.active.Load() != 0 {
		return false
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for _, p := range ep.pools {
		if !p.empty() {
			return false
		}
	}
	return true
}
