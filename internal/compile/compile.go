// Package compile turns Istio resources, the service registry and a proxy
// identity into an immutable routing.Table. It is pure: no I/O, no clocks,
// no randomness, and the same input always gives the same table.
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

// Compile builds the routing table. It is best-effort: a resource that
// cannot be used is left out with a diagnostic, and the rest compiles.
func Compile(set *config.Set, reg *registry.Registry, opts Options) (*routing.Table, config.Diagnostics) {
	panic("compile.Compile: not implemented yet")
}

// Analyze runs the cross-resource checks: references to missing subsets,
// hosts or gateways, unreachable rules, duplicate hosts, delegate problems.
func Analyze(set *config.Set, reg *registry.Registry, opts Options) config.Diagnostics {
	return nil
}
