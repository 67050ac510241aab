// Package compile turns Istio resources, the service registry and a proxy
// identity into an immutable routing.Table. It is pure: no I/O, no clocks,
// no randomness, and the same input always gives the same table.
//
// compile sits between config (decoded, validated resources) and the
// dataplane (which only reads routing.Table). It imports config, registry
// and routing, never the dataplane, upstream or source packages.
package compile

import (
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// Options are the proxy identity and mesh settings a table is compiled for.
type Options struct {
	// Proxy is the identity: role (mesh or gateway), namespace, labels,
	// the gateways it implements, its locality.
	Proxy routing.Proxy
	// ClusterDomain is the Kubernetes DNS domain (default cluster.local).
	ClusterDomain string
	// OutboundPolicy is Istio's outboundTrafficPolicy.mode (default
	// ALLOW_ANY).
	OutboundPolicy routing.OutboundPolicy
	// RootNamespace is the mesh root namespace (default istio-system).
	RootNamespace string
}

// Defaults for the zero values of Options.
const (
	DefaultNamespace     = "default"
	DefaultRootNamespace = "istio-system"
)

// withDefaults fills in the zero fields: role mesh, namespace "default",
// Istio's mesh defaults for the rest (istio pkg/config/mesh).
func (o Options) withDefaults() Options {
	if o.Proxy.Role == "" {
		o.Proxy.Role = routing.RoleMesh
	}
	if o.Proxy.Namespace == "" {
		o.Proxy.Namespace = DefaultNamespace
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = config.DefaultClusterDomain
	}
	if o.OutboundPolicy == "" {
		o.OutboundPolicy = routing.AllowAny
	}
	if o.RootNamespace == "" {
		o.RootNamespace = DefaultRootNamespace
	}
	return o
}

// Compile builds the routing table. It is best-effort: a resource that
// cannot be used is left out with a diagnostic, and the rest compiles.
//
// It assumes set has passed config.Validate, but never panics on anything
// the loader can produce.
func Compile(set *config.Set, reg *registry.Registry, opts Options) (*routing.Table, config.Diagnostics) {
	opts = opts.withDefaults()
	c := newCompiler(set, reg, opts)

	table := &routing.Table{
		Proxy:          opts.Proxy,
		OutboundPolicy: opts.OutboundPolicy,
		HTTP:           map[uint32]*routing.RouteConfig{},
	}
	switch opts.Proxy.Role {
	case routing.RoleGateway:
		c.buildGateway(table)
	default:
		c.buildMesh(table)
	}

	clusters, cdiags := buildClusters(reg, c.drs, opts)
	c.diags.addAll(cdiags)
	if clusters == nil {
		clusters = map[string]*routing.Cluster{}
	}
	table.Clusters = clusters
	table.Version = tableVersion(table)
	return table, c.diags.list()
}

// compiler carries what every part of a compilation shares. It lives for
// one Compile call.
type compiler struct {
	set  *config.Set
	reg  *registry.Registry
	opts Options
	drs  *destinationRules
	vs   *vsIndex

	diags diagSet
}

func newCompiler(set *config.Set, reg *registry.Registry, opts Options) *compiler {
	c := &compiler{set: set, reg: reg, opts: opts}
	drs, ddiags := newDestinationRules(set, reg, opts)
	c.drs = drs
	c.diags.addAll(ddiags)
	c.vs = indexVirtualServices(set, opts)
	c.diags.addAll(c.vs.delegateFindings)
	return c
}

// diagSet collects diagnostics without duplicates: the same rule is
// compiled once per port and per gateway server, and a problem with it must
// be reported once.
type diagSet struct {
	seen  map[config.Diagnostic]bool
	diags config.Diagnostics
}

func (s *diagSet) add(d config.Diagnostic) {
	if s.seen == nil {
		s.seen = map[config.Diagnostic]bool{}
	}
	if s.seen[d] {
		return
	}
	s.seen[d] = true
	s.diags = append(s.diags, d)
}

func (s *diagSet) addAll(ds config.Diagnostics) {
	for _, d := range ds {
		s.add(d)
	}
}

func (s *diagSet) warnf(r *config.Resource, field, format string, args ...any) {
	s.report(r, config.Warning, field, format, args...)
}

func (s *diagSet) errorf(r *config.Resource, field, format string, args ...any) {
	s.report(r, config.Error, field, format, args...)
}

func (s *diagSet) report(r *config.Resource, sev config.Severity, field, format string, args ...any) {
	var ds config.Diagnostics
	rep := config.NewReporter(r, &ds)
	switch sev {
	case config.Error:
		rep.Errorf(field, format, args...)
	case config.Warning:
		rep.Warnf(field, format, args...)
	default:
		rep.Infof(field, format, args...)
	}
	s.addAll(ds)
}

// list returns the findings in a stable order.
func (s *diagSet) list() config.Diagnostics {
	out := append(config.Diagnostics(nil), s.diags...)
	out.Sort()
	return out
}
