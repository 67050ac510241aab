package compile

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// Analyze runs the cross-resource checks: references to missing subsets,
// hosts or gateways, unreachable rules, duplicate hosts, delegate problems.
//
// Unlike Compile it looks at every VirtualService, not only those the proxy
// in opts sees, and judges each reference from the namespace of the
// resource that makes it: that is where its clients are, and what Istio's
// own analyzers do. Findings are warnings, or errors when the traffic
// concerned would certainly fail.
func Analyze(set *config.Set, reg *registry.Registry, opts Options) config.Diagnostics {
	opts = opts.withDefaults()
	a := &analyzer{set: set, reg: reg, opts: opts, drs: map[string]*destinationRules{}}
	ix := indexVirtualServices(set, opts)
	a.diags.addAll(ix.delegateFindings)
	for _, r := range set.OfKind(config.KindVirtualService) {
		spec := r.VirtualService()
		if spec == nil {
			continue
		}
		a.checkDestinations(r, spec)
		a.checkUnreachableRules(r, spec)
		a.checkGatewayRefs(r, spec)
	}
	a.checkDuplicateHosts(ix.roots)
	a.checkSubsets()
	return a.diags.list()
}

type analyzer struct {
	set   *config.Set
	reg   *registry.Registry
	opts  Options
	drs   map[string]*destinationRules // by client namespace
	diags diagSet
}

// rulesFor returns the DestinationRules as a client in ns sees them.
func (a *analyzer) rulesFor(ns string) *destinationRules {
	if d, ok := a.drs[ns]; ok {
		return d
	}
	opts := a.opts
	opts.Proxy = routing.Proxy{Role: routing.RoleMesh, Namespace: ns}
	d, _ := newDestinationRules(a.set, a.reg, opts)
	a.drs[ns] = d
	return d
}

// checkDestinations checks every destination of r: the host must be a
// service visible in r's namespace, the port one of its ports, and the
// subset one a visible DestinationRule defines. A route to a missing port
// or subset has no cluster and answers 503, which is an error; a mirror
// that goes nowhere loses only copies, which is a warning.
func (a *analyzer) checkDestinations(r *config.Resource, spec *networking.VirtualService) {
	for i, h := range spec.Http {
		if h == nil {
			continue
		}
		for j, rd := range h.Route {
			a.checkDestination(r, rd.GetDestination(), fmt.Sprintf("spec.http[%d].route[%d].destination", i, j), config.Error)
		}
		if h.Mirror != nil {
			a.checkDestination(r, h.Mirror, fmt.Sprintf("spec.http[%d].mirror", i), config.Warning)
		}
		for j, m := range h.Mirrors {
			a.checkDestination(r, m.GetDestination(), fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j), config.Warning)
		}
	}
	for i, t := range spec.Tcp {
		for j, rd := range t.GetRoute() {
			a.checkDestination(r, rd.GetDestination(), fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j), config.Error)
		}
	}
	for i, t := range spec.Tls {
		for j, rd := range t.GetRoute() {
			a.checkDestination(r, rd.GetDestination(), fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j), config.Error)
		}
	}
}

func (a *analyzer) checkDestination(r *config.Resource, d *networking.Destination, field string, missing config.Severity) {
	if d == nil || d.Host == "" {
		return
	}
	ns := r.Namespace
	host := config.ResolveHost(d.Host, ns, a.opts.ClusterDomain)
	svc := a.reg.Lookup(host, ns)
	if svc == nil {
		if other := a.reg.LookupAny(host); other != nil {
			a.diags.warnf(r, field+".host", "host %s (ServiceEntry in namespace %s) is not exported to namespace %s; %s",
				host, other.Namespace, ns, consequence(missing))
		} else {
			a.diags.warnf(r, field+".host", "host %s is not in the service registry (no ServiceEntry defines it); %s", host, consequence(missing))
		}
		return
	}
	if p := d.GetPort().GetNumber(); p != 0 {
		if _, ok := svc.PortByNumber(p); !ok {
			a.diags.report(r, missing, field+".port.number", "service %s has no port %d; %s", host, p, consequence(missing))
			return
		}
	} else if len(svc.Ports) > 1 {
		a.diags.warnf(r, field+".port", "service %s has %d ports, so the destination must name one; without it the listener's port is used", host, len(svc.Ports))
	}
	if d.Subset != "" && !a.rulesFor(ns).hasSubset(host, svc.Namespace, d.Subset) {
		a.diags.report(r, missing, field+".subset", "subset %q of host %s is not defined by the DestinationRule that applies in namespace %s "+
			"(Istio uses one rule per host: the client namespace's, else the service's, else the root namespace's); %s",
			d.Subset, host, ns, consequence(missing))
	}
}

// consequence says what a broken destination does to traffic: a route
// destination (reported as an error) fails requests, a mirror (reported
// as a warning) only loses the copies.
func consequence(sev config.Severity) string {
	if sev == config.Error {
		return "requests routed here get no cluster and fail with 503"
	}
	return "the mirror has no cluster and nothing is mirrored"
}

// checkUnreachableRules reports rules, and matches within a rule, that
// come after one matching every request: Istio stops emitting routes at a
// catch-all, so they never apply. A match with config-time conditions is
// not a catch-all, since it may not apply to every proxy.
func (a *analyzer) checkUnreachableRules(r *config.Resource, spec *networking.VirtualService) {
	catchAll := -1
	for i, h := range spec.Http {
		if h == nil {
			continue
		}
		if catchAll >= 0 {
			a.diags.warnf(r, fmt.Sprintf("spec.http[%d]", i), "rule can never match: spec.http[%d] before it matches every request", catchAll)
			continue
		}
		if h.Delegate != nil {
			// What a delegating rule matches depends on its delegate.
			continue
		}
		if len(h.Match) == 0 {
			catchAll = i
			continue
		}
		for j, m := range h.Match {
			if !unconditional(m) {
				continue
			}
			for k := j + 1; k < len(h.Match); k++ {
				a.diags.warnf(r, fmt.Sprintf("spec.http[%d].match[%d]", i, k), "match is never used: spec.http[%d].match[%d] before it matches every request", i, j)
			}
			catchAll = i
			break
		}
	}
}

// unconditional reports whether m matches every request on every proxy.
func unconditional(m *networking.HTTPMatchRequest) bool {
	if m == nil {
		return true
	}
	if m.Port != 0 || len(m.SourceLabels) > 0 || len(m.Gateways) > 0 || m.SourceNamespace != "" {
		return false
	}
	cm, err := compileMatch(m)
	return err == nil && cm.IsCatchAll()
}

// checkGatewayRefs reports gateways named by r that do not exist: the
// VirtualService (or match) then applies nowhere for them.
func (a *analyzer) checkGatewayRefs(r *config.Resource, spec *networking.VirtualService) {
	check := func(g, field string) {
		gw := resolveGatewayName(g, r.Namespace)
		if gw == meshGateway {
			return
		}
		ns, name, _ := strings.Cut(gw, "/")
		if a.set.Find(config.KindGateway, ns, name) == nil {
			a.diags.warnf(r, field, "Gateway %s not found; nothing routes through it", gw)
		}
	}
	for i, g := range spec.Gateways {
		check(g, fmt.Sprintf("spec.gateways[%d]", i))
	}
	for i, h := range spec.Http {
		for j, m := range h.GetMatch() {
			for k, g := range m.GetGateways() {
				check(g, fmt.Sprintf("spec.http[%d].match[%d].gateways[%d]", i, j, k))
			}
		}
	}
	for i, t := range spec.Tcp {
		for j, m := range t.GetMatch() {
			for k, g := range m.GetGateways() {
				check(g, fmt.Sprintf("spec.tcp[%d].match[%d].gateways[%d]", i, j, k))
			}
		}
	}
	for i, t := range spec.Tls {
		for j, m := range t.GetMatch() {
			for k, g := range m.GetGateways() {
				check(g, fmt.Sprintf("spec.tls[%d].match[%d].gateways[%d]", i, j, k))
			}
		}
	}
}

// checkDuplicateHosts reports a VirtualService for sidecars that repeats a
// host of an older one some namespace sees both of: sidecars use only the
// oldest (IST0109), so the younger one is ignored for that host.
func (a *analyzer) checkDuplicateHosts(roots []*virtualService) {
	owner := map[string][]*virtualService{}
	for _, v := range roots {
		if !v.boundTo(meshGateway) {
			continue
		}
		for i, h := range v.hosts {
			for _, older := range owner[h] {
				if older == v || !exportsOverlap(older, v) {
					continue
				}
				a.diags.warnf(v.res, fmt.Sprintf("spec.hosts[%d]", i),
					"host %s is also a host of the older VirtualService %s; sidecars use only the oldest VirtualService for a host (IST0109), so this one is ignored for it",
					h, older.name())
				break
			}
			if !slices.Contains(owner[h], v) {
				owner[h] = append(owner[h], v)
			}
		}
	}
}

// exportsOverlap reports whether some namespace sees both VirtualServices.
// Only the namespaces the two name matter, plus one that neither names.
func exportsOverlap(a, b *virtualService) bool {
	candidates := []string{a.res.Namespace, b.res.Namespace, "\x00unnamed"}
	candidates = append(candidates, a.spec.ExportTo...)
	candidates = append(candidates, b.spec.ExportTo...)
	for _, ns := range candidates {
		if config.ExportedTo(a.spec.ExportTo, a.res.Namespace, ns) && config.ExportedTo(b.spec.ExportTo, b.res.Namespace, ns) {
			return true
		}
	}
	return false
}

// checkSubsets reports DestinationRules whose host matches no service, and
// subsets whose labels select no endpoint of the services they apply to:
// traffic routed to such a subset finds no upstream and fails with 503.
func (a *analyzer) checkSubsets() {
	for _, r := range a.set.OfKind(config.KindDestinationRule) {
		dr := r.DestinationRule()
		if dr == nil || dr.Host == "" {
			continue
		}
		host := config.ResolveHost(dr.Host, r.Namespace, a.opts.ClusterDomain)
		var services []*registry.Service
		if config.IsWildcard(host) {
			services = a.reg.Match(host, r.Namespace)
		} else if s := a.reg.Lookup(host, r.Namespace); s != nil {
			services = []*registry.Service{s}
		}
		if len(services) == 0 {
			a.diags.warnf(r, "spec.host", "no service visible in namespace %s matches host %s; Istio ignores this DestinationRule", r.Namespace, host)
			continue
		}
		for i, sub := range dr.Subsets {
			if sub == nil || len(sub.Labels) == 0 || selectsEndpoint(services, sub.Labels) {
				continue
			}
			a.diags.warnf(r, fmt.Sprintf("spec.subsets[%d].labels", i), "subset %q selects no endpoint of %s; requests routed to it find no upstream and fail with 503",
				sub.Name, host)
		}
	}
}

func selectsEndpoint(services []*registry.Service, labels map[string]string) bool {
	for _, s := range services {
		for _, ep := range s.Endpoints {
			if registry.LabelsMatch(labels, ep.Labels) {
				return true
			}
		}
	}
	return false
}
