package compile

import (
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// destinationRules indexes the DestinationRules visible to the proxy and
// answers which (merged) rule applies to a host, following Istio's lookup
// order: the client's namespace, then the service's namespace, then the
// root namespace; the most specific host wins.
type destinationRules struct{}

// newDestinationRules indexes set's DestinationRules for the proxy in opts.
func newDestinationRules(set *config.Set, reg *registry.Registry, opts Options) (*destinationRules, config.Diagnostics) {
	return &destinationRules{}, nil
}

// hashPolicy returns the consistent-hash policy for traffic to host (a
// service in svcNamespace) on port, to subset ("" for none), with Istio's
// precedence: subset port-level > subset > rule port-level > rule. It
// returns nil when the load balancer is not consistent-hash.
func (d *destinationRules) hashPolicy(host, svcNamespace, subset string, port uint32) *routing.HashPolicy {
	return nil
}

// hasSubset reports whether a DestinationRule visible to the proxy
// defines subset for host.
func (d *destinationRules) hasSubset(host, svcNamespace, subset string) bool {
	return false
}

// buildClusters returns every cluster of every service visible to the
// proxy: outbound|port||host for each service port and
// outbound|port|subset|host for each subset, with endpoints selected by
// subset labels and the merged traffic policy with defaults filled in.
func buildClusters(reg *registry.Registry, drs *destinationRules, opts Options) (map[string]*routing.Cluster, config.Diagnostics) {
	return map[string]*routing.Cluster{}, nil
}
