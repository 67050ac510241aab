package upstream

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// passthroughName is Istio's name for the cluster of ALLOW_ANY traffic.
const passthroughName = "PassthroughCluster"

// NewManager returns an empty Manager.
func NewManager(opts Options) *Manager {
	m := &Manager{opts: opts, log: opts.Logger, now: opts.Now, ticker: opts.NewTicker, clusters: map[string]*Cluster{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "upstream")
	if m.now == nil {
		m.now = time.Now
	}
	if m.ticker == nil {
		m.ticker = newRealTicker
	}
	m.loadIdentity()
	m.passthrough = m.newCluster(passthroughConfig())
	return m
}

// passthroughConfig is Istio's PassthroughCluster: ORIGINAL_DST, the
// mesh connect timeout, no circuit breaking, and the downstream's HTTP
// version (Istio sets use_downstream_protocol on it).
func passthroughConfig() *routing.Cluster {
	pool := routing.DefaultConnectionPool()
	pool.UseClientProtocol = true
	return &routing.Cluster{
		Name:      passthroughName,
		Protocol:  "HTTP",
		Discovery: routing.DiscoveryOriginalDst,
		Policy: routing.Policy{
			LoadBalancer:   routing.LoadBalancer{Policy: routing.LBPassthrough},
			ConnectionPool: pool,
		},
	}
}

// Update reconciles with the clusters of a newly compiled table: state for
// new clusters is created, clusters whose config changed get it swapped in
// atomically (counters, ejections and connections are kept where the
// endpoint is kept), and clusters no longer present are closed once their
// in-flight requests finish. It returns the handles for the new table.
func (m *Manager) Update(clusters map[string]*routing.Cluster) map[string]*Cluster {
	m.loadIdentity()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*Cluster, len(clusters))
	if m.closed {
		return out
	}
	for name, cfg := range clusters {
		if c := m.clusters[name]; c != nil {
			c.update(cfg)
			out[name] = c
			continue
		}
		out[name] = m.newCluster(cfg)
	}
	for name, c := range m.clusters {
		if _, ok := out[name]; !ok {
			c.retire()
		}
	}
	m.clusters = out
	// The passthrough cluster follows identity reloads like the rest.
	m.passthrough.update(m.passthrough.Config())
	return maps.Clone(out) // the caller owns what it gets
}

// Passthrough returns the cluster for requests to hosts no route knows
// when the outbound policy is ALLOW_ANY (Istio's PassthroughCluster): it
// connects to AttemptOptions.OriginalDst.
func (m *Manager) Passthrough() *Cluster { return m.passthrough }

// Status describes every cluster and endpoint, for the admin /clusters
// page, sorted by cluster name and endpoint address.
func (m *Manager) Status() []ClusterStatus {
	m.mu.Lock()
	cs := make([]*Cluster, 0, len(m.clusters)+1)
	for _, c := range m.clusters {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	cs = append(cs, m.passthrough)
	out := make([]ClusterStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.status())
	}
	slices.SortFunc(out, func(a, b ClusterStatus) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// StatusUsed is Status restricted to the clusters that have tried a
// connection or a request, or have an ejected endpoint. Metrics scrapes
// use it: a proxy that knows 10,000 services but talks to a few exports
// the few, so a scrape costs what the workload uses (Istio's sidecars
// likewise export no per-cluster stats by default).
func (m *Manager) StatusUsed() []ClusterStatus {
	m.mu.Lock()
	cs := make([]*Cluster, 0, 16)
	for _, c := range m.clusters {
		if c.used() {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	if m.passthrough.used() {
		cs = append(cs, m.passthrough)
	}
	out := make([]ClusterStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.status())
	}
	slices.SortFunc(out, func(a, b ClusterStatus) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// used reports whether the cluster has seen any traffic or ejection.
func (c *Cluster) used() bool {
	s := &c.stats
	return s.cxTotal.Load() > 0 || s.rqTotal.Load() > 0 || s.cxConnectFail.Load() > 0 ||
		s.cxNoneHealthy.Load() > 0 || s.rqPendingOverflow.Load() > 0 || s.cxOverflow.Load() > 0 ||
		s.odEnforcedTotal.Load() > 0
}

// status describes one cluster.
func (c *Cluster) status() ClusterStatus {
	st := c.state.Load()
	cs := ClusterStatus{Name: c.name, Stats: c.stats.snapshot(st.limits), Endpoints: []EndpointStatus{}}
	now := c.m.now()
	describe := func(m *member) EndpointStatus {
		ep := m.ep
		es := EndpointStatus{
			Address:  ep.addr,
			Weight:   max(m.spec.Weight, 1),
			Locality: m.spec.Locality,
			// Healthy is the active health-check verdict (Envoy's
			// failed_active_hc); nothing checks actively, and an
			// ejection is reported apart, as Envoy's
			// failed_outlier_check.
			Healthy:        true,
			ActiveRequests: ep.active.Load(),
			TotalRequests:  ep.total.Load(),
			Errors:         ep.errors.Load(),
		}
		if st.outlier != nil {
			c.mu.Lock()
			es.Ejected = ep.od.ejected.Load()
			es.EjectionCount = ep.od.numEjections
			if es.Ejected {
				es.EjectedFor = max(ejectionTime(st.outlier, &ep.od)-now.Sub(ep.od.ejectedAt), 0)
			}
			c.mu.Unlock()
		}
		return es
	}
	for _, m := range st.members {
		cs.Endpoints = append(cs.Endpoints, describe(m))
	}
	if st.originalDst {
		c.dynMu.Lock()
		for _, ep := range c.dynamic {
			if ep.dyn != nil {
				cs.Endpoints = append(cs.Endpoints, describe(ep.dyn))
			}
		}
		c.dynMu.Unlock()
	}
	slices.SortFunc(cs.Endpoints, func(a, b EndpointStatus) int { return cmp.Compare(a.Address, b.Address) })
	return cs
}

// Close closes every connection, failing requests in flight. The Manager
// serves nothing afterwards.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	cs := make([]*Cluster, 0, len(m.clusters))
	for _, c := range m.clusters {
		cs = append(cs, c)
	}
	m.clusters = map[string]*Cluster{}
	m.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
	m.passthrough.close()
}
