package upstream

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/michi-mesh/michi/internal/meshca"
	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/upstream/lb"
)

// clusterState is one immutable snapshot of a cluster: its configuration,
// members and picker. A new snapshot replaces it atomically when the
// configuration changes or an ejection changes health.
type clusterState struct {
	cfg     *routing.Cluster
	members []*member
	byHost  map[*lb.Host]*member
	byEP    map[*endpoint]*member
	picker  lb.Picker // nil for ORIGINAL_DST clusters

	limits  limits
	proto   protoPolicy
	outlier *outlierConfig // nil: no outlier detection

	// plain makes plaintext connections; mtls, when set, originates TLS to
	// every member, or only to those labelled for it with autoMTLS.
	plain    *transportProfile
	mtls     *transportProfile
	autoMTLS bool
	identity *meshca.Identity // the mesh identity the profiles were built with
	// err is a configuration error (unreadable certificates, ISTIO_MUTUAL
	// without a mesh identity): every request fails with UF and it.
	err error

	originalDst    bool
	connectTimeout time.Duration
	idleTimeout    time.Duration // 0: connections never idle out
	maxConnAge     time.Duration // 0: unlimited
	maxRqPerConn   int           // 0: unlimited
	maxStreams     int           // HTTP/2 streams per connection
	withWarmup     bool
}

func (st *clusterState) has(ep *endpoint) bool { _, ok := st.byEP[ep]; return ok }

// profileFor picks the transport for an endpoint (auto mTLS is decided
// per endpoint, like Istio's transport_socket_matches on tlsMode).
func (st *clusterState) profileFor(spec *routing.Endpoint) *transportProfile {
	if st.mtls != nil && (!st.autoMTLS || spec.TLSMode == "istio") {
		return st.mtls
	}
	return st.plain
}

// newCluster creates the runtime for cfg.
func (m *Manager) newCluster(cfg *routing.Cluster) *Cluster {
	c := &Cluster{name: cfg.Name, m: m, endpoints: map[string]*endpoint{}, dynamic: map[string]*endpoint{}}
	c.mu.Lock()
	c.applyLocked(cfg)
	c.mu.Unlock()
	return c
}

// Name is the cluster name, outbound|port|subset|host.
func (c *Cluster) Name() string { return c.name }

// Config returns the cluster's current compiled configuration.
func (c *Cluster) Config() *routing.Cluster { return c.state.Load().cfg }

// update swaps in a new configuration if it differs from the current one.
func (c *Cluster) update(cfg *routing.Cluster) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.state.Load(); old != nil && (old.cfg == cfg || reflect.DeepEqual(old.cfg, cfg)) && !c.m.identityChanged(old) {
		return // an identical recompile: keep the picker (ring builds are not free)
	}
	c.applyLocked(cfg)
}

// applyLocked builds and publishes a snapshot for cfg, carrying over the
// endpoints that are kept. Called with c.mu held.
func (c *Cluster) applyLocked(cfg *routing.Cluster) {
	old := c.state.Load()
	pol := cfg.Policy.ConnectionPool
	st := &clusterState{
		cfg:            cfg,
		limits:         limitsOf(pol),
		proto:          newProtoPolicy(cfg),
		outlier:        newOutlierConfig(cfg.Policy.Outlier),
		originalDst:    cfg.Discovery == routing.DiscoveryOriginalDst || cfg.Policy.LoadBalancer.Policy == routing.LBPassthrough,
		connectTimeout: pol.ConnectTimeout,
		idleTimeout:    pol.IdleTimeout,
		maxConnAge:     pol.MaxConnectionDuration,
		maxRqPerConn:   int(pol.MaxRequestsPerConnection),
		maxStreams:     int(pol.MaxConcurrentStreams),
		withWarmup:     cfg.Policy.LoadBalancer.Warmup != nil,
	}
	if st.connectTimeout <= 0 {
		st.connectTimeout = 10 * time.Second // mesh connectTimeout default
	}
	if st.maxStreams <= 0 {
		st.maxStreams = 1<<31 - 1 // Envoy's http2 max_concurrent_streams default
	}
	st.identity, _ = c.m.meshID()
	st.plain, st.mtls, st.autoMTLS, st.err = c.m.profiles(cfg, old)
	if st.err != nil {
		c.m.log.Warn("cluster cannot originate TLS; requests fail with UF", "cluster", c.name, "err", st.err)
	}

	// Members, keeping endpoint state by address.
	seen := make(map[string]bool, len(cfg.Endpoints))
	if !st.originalDst {
		st.byHost = make(map[*lb.Host]*member, len(cfg.Endpoints))
		st.byEP = make(map[*endpoint]*member, len(cfg.Endpoints))
		for i := range cfg.Endpoints {
			spec := &cfg.Endpoints[i]
			if seen[spec.Address] {
				continue // a duplicate address is one host
			}
			seen[spec.Address] = true
			ep := c.endpoints[spec.Address]
			if ep == nil {
				ep = &endpoint{addr: spec.Address, c: c}
				c.endpoints[spec.Address] = ep
			}
			if ep.host == nil || !sameHost(&ep.spec, spec) {
				h := &lb.Host{Address: spec.Address, Weight: max(spec.Weight, 1), Locality: spec.Locality, Labels: spec.Labels}
				switch {
				case ep.host != nil:
					h.AddedAt = ep.host.AddedAt // a re-weighted host is not new
				case old != nil:
					// Envoy starts slow start only for hosts joining a
					// cluster that already exists.
					h.AddedAt = c.m.now()
				}
				ep.host = h
			}
			ep.spec = *spec
			m := &member{ep: ep, host: ep.host, spec: spec, prof: st.profileFor(spec)}
			st.members = append(st.members, m)
			st.byHost[m.host] = m
			st.byEP[ep] = m
			// Connections made for another transport (TLS settings
			// changed) drain.
			ep.drainPools(m.prof)
		}
	}
	for addr, ep := range c.endpoints {
		if seen[addr] {
			continue
		}
		if ep.od.ejected.Load() {
			c.stats.odEjectionsActive.Add(-1)
		}
		delete(c.endpoints, addr)
		ep.retire()
	}
	if st.outlier == nil {
		// Without a detector nothing stays ejected.
		for _, m := range st.members {
			if m.ep.od.ejected.Swap(false) {
				c.stats.odEjectionsActive.Add(-1)
			}
		}
	}
	c.syncTimer(st.outlier)
	c.rebuildLocked(st)
}

// syncTimer starts, re-arms or stops the outlier interval timer.
func (c *Cluster) syncTimer(cfg *outlierConfig) {
	switch {
	case cfg == nil || c.retired:
		c.timer.stopTimer()
		c.timer = nil
	case c.timer == nil:
		c.timer = c.startTimer(cfg.interval)
	case c.timer.interval != cfg.interval:
		c.timer.t.Reset(cfg.interval)
		c.timer.interval = cfg.interval
	}
}

// rebuildLocked publishes st with a picker over its members' current
// health. Called with c.mu held.
func (c *Cluster) rebuildLocked(st *clusterState) {
	n := *st
	healthy := 0
	for _, m := range n.members {
		if !m.ep.od.ejected.Load() {
			healthy++
		}
	}
	n.picker = nil
	if !n.originalDst {
		n.picker = lb.Build(c.lbConfig(&n))
	}
	c.stats.membershipTotal.Store(int64(len(n.members)))
	c.stats.membershipHealthy.Store(int64(healthy))
	c.state.Store(&n)
}

// lbConfig describes st's members to lb.Build.
func (c *Cluster) lbConfig(st *clusterState) lb.Config {
	hosts := make([]*lb.Host, len(st.members))
	healthy := make(map[*lb.Host]bool, len(st.members))
	for i, m := range st.members {
		hosts[i] = m.host
		healthy[m.host] = !m.ep.od.ejected.Load()
	}
	pol := st.cfg.Policy.LoadBalancer
	cfg := lb.Config{
		LB:      pol,
		Hosts:   hosts,
		Healthy: func(h *lb.Host) bool { return healthy[h] },
		// Envoy's healthy_panic_threshold default is 50%; Istio sets it
		// to minHealthPercent (default 0) whenever outlier detection is
		// configured, and without it no host is ever ejected.
		PanicThreshold: 50,
		Local:          c.m.opts.Locality,
		LocalLabels:    c.m.opts.Labels,
	}
	if st.outlier != nil {
		cfg.PanicThreshold = st.outlier.panicThreshold
	}
	// Locality load balancing is on unless the rule turns it off (mesh
	// default enabled); Istio applies `distribute` always, and failover
	// priorities only to clusters with outlier detection
	// (loadbalancer.go ApplyLocalityLoadBalancer).
	loc := pol.Locality
	if loc == nil || loc.Enabled {
		cfg.LocalityEnabled = st.outlier != nil || loc != nil && len(loc.Distribute) > 0
	}
	return cfg
}

// retire takes the cluster out of service once a new table no longer has
// it: its connections close as their requests finish. A request still
// holding the handle keeps working.
func (c *Cluster) retire() {
	c.mu.Lock()
	c.retired = true
	c.syncTimer(nil)
	eps := make([]*endpoint, 0, len(c.endpoints)+len(c.dynamic))
	for _, ep := range c.endpoints {
		eps = append(eps, ep)
	}
	c.mu.Unlock()
	c.dynMu.Lock()
	for _, ep := range c.dynamic {
		eps = append(eps, ep)
	}
	c.dynMu.Unlock()
	for _, ep := range eps {
		ep.retire()
	}
}

// close closes every connection of the cluster now.
func (c *Cluster) close() {
	c.mu.Lock()
	c.retired = true
	c.syncTimer(nil)
	eps := make([]*endpoint, 0, len(c.endpoints)+len(c.dynamic))
	for _, ep := range c.endpoints {
		eps = append(eps, ep)
	}
	c.mu.Unlock()
	c.dynMu.Lock()
	for _, ep := range c.dynamic {
		eps = append(eps, ep)
	}
	c.dynMu.Unlock()
	for _, ep := range eps {
		ep.close()
	}
}

// pick chooses the member for one try.
func (c *Cluster) pick(st *clusterState, opts *AttemptOptions) *member {
	if st.originalDst {
		return c.originalDstMember(st, opts.OriginalDst)
	}
	if st.picker == nil {
		return nil
	}
	pc := lb.PickContext{Hash: opts.Hash, HasHash: opts.HasHash, Attempts: opts.HostSelectionAttempts}
	if st.withWarmup {
		pc.Now = c.m.now()
	}
	if len(opts.Exclude) > 0 {
		exclude := opts.Exclude
		pc.Exclude = func(h *lb.Host) bool { return slices.Contains(exclude, h.Address) }
	}
	h := st.picker.Pick(&pc)
	if h == nil {
		return nil
	}
	return st.byHost[h]
}

// dynamicSweepEvery bounds how often ORIGINAL_DST hosts nobody uses are
// dropped (Envoy's original_dst cleanup_interval default is 5s).
const dynamicSweepEvery = 5 * time.Second

// originalDstMember returns the member for an ORIGINAL_DST address,
// creating its endpoint on first use (Envoy's ORIGINAL_DST cluster adds a
// host per destination and removes it once unused). These hosts are not
// load balanced and not subject to outlier detection: there is nothing to
// choose between.
func (c *Cluster) originalDstMember(st *clusterState, addr string) *member {
	if addr == "" {
		return nil
	}
	now := c.m.now()
	c.dynMu.Lock()
	defer c.dynMu.Unlock()
	ep := c.dynamic[addr]
	if ep != nil && ep.dyn.prof == st.plain {
		return ep.dyn
	}
	if ep != nil {
		ep.drainPools(st.plain) // the way connections are made changed
	}
	if ep == nil {
		if now.Sub(c.dynSwept) >= dynamicSweepEvery {
			c.dynSwept = now
			for a, e := range c.dynamic {
				if e.idle() {
					delete(c.dynamic, a)
					e.retire()
				}
			}
		}
		ep = &endpoint{addr: addr, c: c}
		ep.host = &lb.Host{Address: addr, Weight: 1, AddedAt: now}
		ep.spec = routing.Endpoint{Address: addr, Weight: 1}
		c.dynamic[addr] = ep
	}
	ep.dyn = &member{ep: ep, host: ep.host, spec: &ep.spec, prof: st.plain}
	return ep.dyn
}

// configError is the UF returned while a cluster's configuration cannot
// be used.
func configError(c *Cluster, err error) *Error {
	return &Error{Flag: "UF", BeforeRequest: true, Err: fmt.Errorf("cluster %s: %w", c.name, err)}
}

// errNoOriginalDst is returned by ORIGINAL_DST clusters for a request
// without a destination address.
var errNoOriginalDst = errors.New("no original destination for an ORIGINAL_DST cluster")
