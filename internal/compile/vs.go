package compile

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
)

// meshGateway is the reserved gateway name for every sidecar.
const meshGateway = "mesh"

// virtualService is a VirtualService as the compiler uses it: short host
// and gateway names resolved in its namespace (istio
// model.resolveVirtualServiceShortnames) and delegate rules merged into
// the root (istio model.mergeVirtualServicesIfNeeded). It is built once
// per compilation and shared by every port and server.
type virtualService struct {
	res  *config.Resource
	spec *networking.VirtualService
	// nsName is "namespace/name", as routes and virtual hosts record it.
	nsName string
	// hosts are the resolved, lower-cased spec.hosts.
	hosts []string
	// gateways are the resolved spec.gateways ("ns/name" or "mesh"); an
	// empty spec.gateways means ["mesh"].
	gateways []string
	// http is spec.http with every delegating rule replaced by the merged
	// rules of its delegate.
	http []*httpRule
}

func (v *virtualService) name() string { return v.nsName }

// boundTo reports whether the VirtualService applies to gateway gw
// ("ns/name" or "mesh").
func (v *virtualService) boundTo(gw string) bool {
	for _, g := range v.gateways {
		if g == gw {
			return true
		}
	}
	return false
}

// httpRule is one HTTPRoute ready for translation, with what is needed to
// trace it back to the YAML it came from.
type httpRule struct {
	rule *networking.HTTPRoute
	// index is the rule's index in the root's spec.http.
	index int
	// res and field name the resource and field that problems with the
	// rule are reported against: the root's spec.http[i], or the
	// delegate's spec.http[j] for a merged rule.
	res   *config.Resource
	field string
	// delegate is "ns/name" of the delegate the rule was merged from, and
	// delegateIndex its index in the delegate's spec.http.
	delegate      string
	delegateIndex int
	// hostNS is the namespace short destination hosts resolve in: the
	// delegate's for merged rules. mirrorNS is the same for rule.mirror,
	// which a merged rule may inherit from the root.
	hostNS   string
	mirrorNS string
	// matchNS resolves short gateway names in rule.match[].gateways;
	// merged matches carry names already resolved.
	matchNS string
	// matchIndex maps each entry of rule.match to the index reported as
	// Route.MatchIndex: the YAML index for a plain rule; for a merged rule
	// the delegate's match index, or the root's when the delegate rule has
	// no match of its own.
	matchIndex []int
}

// vsIndex holds every VirtualService of the set, oldest first, which is
// the order Istio applies them in (sortConfigByCreationTime).
type vsIndex struct {
	set *config.Set
	// roots are the VirtualServices with hosts; delegates (no hosts) never
	// produce virtual hosts of their own.
	roots []*virtualService
	// delegates are the VirtualServices without hosts, by "ns/name".
	delegates map[string]*config.Resource
	// delegateFindings are the problems found while merging delegates.
	// Compile and Analyze both report them.
	delegateFindings config.Diagnostics
}

func indexVirtualServices(set *config.Set, opts Options) *vsIndex {
	ix := &vsIndex{set: set, delegates: map[string]*config.Resource{}}
	resources := set.OfKind(config.KindVirtualService)
	for _, r := range resources {
		if spec := r.VirtualService(); spec != nil && len(spec.Hosts) == 0 {
			ix.delegates[r.NamespacedName()] = r
		}
	}
	for _, r := range resources {
		spec := r.VirtualService()
		if spec == nil || len(spec.Hosts) == 0 {
			continue
		}
		v := &virtualService{res: r, spec: spec, nsName: r.NamespacedName()}
		for _, h := range spec.Hosts {
			v.hosts = append(v.hosts, config.ResolveHost(h, r.Namespace, opts.ClusterDomain))
		}
		if len(spec.Gateways) == 0 {
			v.gateways = []string{meshGateway}
		}
		for _, g := range spec.Gateways {
			v.gateways = append(v.gateways, resolveGatewayName(g, r.Namespace))
		}
		v.http = ix.expandRules(r, spec)
		ix.roots = append(ix.roots, v)
	}
	return ix
}

// expandRules lists the HTTP rules of root r with delegates merged in.
func (ix *vsIndex) expandRules(r *config.Resource, spec *networking.VirtualService) []*httpRule {
	out := make([]*httpRule, 0, len(spec.Http))
	for i, rule := range spec.Http {
		if rule == nil {
			continue
		}
		field := fmt.Sprintf("spec.http[%d]", i)
		if rule.Delegate == nil {
			out = append(out, &httpRule{
				rule: rule, index: i, res: r, field: field,
				hostNS: r.Namespace, mirrorNS: r.Namespace, matchNS: r.Namespace,
				matchIndex: identityIndex(len(rule.Match)),
			})
			continue
		}
		out = append(out, ix.mergeDelegate(r, i, rule)...)
	}
	return out
}

func identityIndex(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// resolveGatewayName turns a gateway reference written in a resource in
// namespace ns into "namespace/name", as Istio does before binding
// (model.resolveGatewayName): "mesh" stays, "name" and "./name" are in ns,
// and the legacy "name.namespace[.svc.cluster.local]" form names
// namespace/name.
func resolveGatewayName(g, ns string) string {
	if g == meshGateway {
		return g
	}
	if gwNS, name, ok := strings.Cut(g, "/"); ok {
		if gwNS == "." {
			return ns + "/" + name
		}
		return g
	}
	if name, rest, ok := strings.Cut(g, "."); ok {
		gwNS, _, _ := strings.Cut(rest, ".")
		return gwNS + "/" + name
	}
	return ns + "/" + g
}
