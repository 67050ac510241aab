package config

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// vsContext is what the rules of one VirtualService need to know about the
// whole resource.
type vsContext struct {
	spec *networking.VirtualService
	// delegate is true for a VirtualService without hosts: it can only be
	// used through another VirtualService's delegate (Istio
	// ValidateVirtualService).
	delegate bool
	// gatewayOnly is true when gateways are listed and "mesh" is not one
	// of them: sidecars ignore the VirtualService.
	gatewayOnly bool
	// sniExact, when set, holds the hosts SNI hosts are looked up in
	// instead of being matched against every host (see maxPairChecks).
	sniExact map[string]bool
}

// virtualService checks a VirtualService (Istio ValidateVirtualService and
// virtualservice.go).
func (v *validator) virtualService(vs *networking.VirtualService) {
	c := &vsContext{spec: vs, delegate: len(vs.Hosts) == 0}
	for _, g := range vs.Gateways {
		if g != "mesh" {
			c.gatewayOnly = true
		}
		if g == "mesh" {
			c.gatewayOnly = false
			break
		}
	}

	if c.delegate {
		// A VirtualService without hosts is a delegate; what it cannot have
		// would be meaningless there.
		if len(vs.Gateways) > 0 {
			v.errorf("spec.gateways", "a delegate VirtualService (one without hosts) must not list gateways: it is bound through the VirtualService that delegates to it")
		}
		if len(vs.Tls) > 0 {
			v.errorf("spec.tls", "a delegate VirtualService (one without hosts) must not have tls routes: only HTTP routes can be delegated")
		}
		if len(vs.Tcp) > 0 {
			v.errorf("spec.tcp", "a delegate VirtualService (one without hosts) must not have tcp routes: only HTTP routes can be delegated")
		}
	}
	v.vsHosts(c)
	for i, g := range vs.Gateways {
		v.gatewayName(index("spec.gateways", i), g)
	}
	if len(vs.Http) == 0 && len(vs.Tcp) == 0 && len(vs.Tls) == 0 {
		v.errorf("spec", "a VirtualService needs at least one http, tcp or tls route")
	}
	for i, r := range vs.Http {
		v.httpRoute(index("spec.http", i), r, c)
	}
	sni := 0
	for _, r := range vs.Tls {
		for _, m := range r.Match {
			sni += len(m.SniHosts)
		}
	}
	if sni*len(vs.Hosts) > maxPairChecks {
		v.warnf("spec.tls", "%d SNI hosts and %d hosts are too many to compare every pair; SNI hosts were only checked against exact hosts", sni, len(vs.Hosts))
		c.sniExact = map[string]bool{}
		for _, h := range vs.Hosts {
			c.sniExact[strings.ToLower(h)] = true
			c.sniExact[ResolveHost(h, v.res.Namespace, v.opts.ClusterDomain)] = true
		}
	}
	for i, r := range vs.Tls {
		v.tlsRoute(index("spec.tls", i), r, c)
	}
	for i, r := range vs.Tcp {
		v.tcpRoute(index("spec.tcp", i), r, vs.Gateways)
	}
	v.exportTo("spec.exportTo", vs.ExportTo, false)
}

// vsHosts checks spec.hosts: valid names with an optional leading
// wildcard, "*" only for gateways, IPs only useful on gateways, and no two
// hosts naming the same service.
func (v *validator) vsHosts(c *vsContext) {
	type host struct {
		i        int
		resolved string
	}
	var valid []host
	for i, h := range c.spec.Hosts {
		p := index("spec.hosts", i)
		switch {
		case h == "*":
			if !c.gatewayOnly {
				v.errorf(p, `host "*" is not allowed for a VirtualService bound to the mesh (sidecars): name the services, or bind the VirtualService to gateways only`)
				continue
			}
		case isIP(h):
			if !c.gatewayOnly {
				// Istio accepts it, but sidecars match VirtualService hosts
				// against service names, never addresses.
				v.warnf(p, "IP address host %q only matters on gateways; sidecars match hosts by service name, so the mesh never uses it", h)
			}
		default:
			if err := checkWildcardHost(h); err != nil {
				v.errorf(p, "invalid host %q: %v", h, err)
				continue
			}
		}
		valid = append(valid, host{i, ResolveHost(h, v.res.Namespace, v.opts.ClusterDomain)})
	}
	dup := func(a, b host) {
		v.errorf(index("spec.hosts", b.i), "duplicate host: %q overlaps %q (spec.hosts[%d]); list each host once", c.spec.Hosts[b.i], c.spec.Hosts[a.i], a.i)
	}
	if len(valid)*len(valid) > maxPairChecks {
		// Bounded work for absurd inputs: exact duplicates only.
		v.warnf("spec.hosts", "%d hosts are too many to compare every pair for wildcard overlaps; only exact duplicates were checked", len(valid))
		first := map[string]host{}
		for _, b := range valid {
			if a, ok := first[b.resolved]; ok {
				dup(a, b)
				continue
			}
			first[b.resolved] = b
		}
		return
	}
	for j := 1; j < len(valid); j++ {
		for i := 0; i < j; i++ {
			if HostsOverlap(valid[i].resolved, valid[j].resolved) {
				dup(valid[i], valid[j])
				break
			}
		}
	}
}

// maxPairChecks bounds the pairwise host comparisons of one resource, so
// that a pathological list cannot stall validation. Real VirtualServices
// stay far below it.
const maxPairChecks = 1 << 20

// tlsRoute checks a TLS (SNI passthrough) route.
func (v *validator) tlsRoute(p string, r *networking.TLSRoute, c *vsContext) {
	if len(r.Match) == 0 {
		v.errorf(p+".match", "required: a tls route needs at least one match with sniHosts")
	}
	for i, m := range r.Match {
		mp := index(p+".match", i)
		if len(m.SniHosts) == 0 {
			v.errorf(mp+".sniHosts", "required: a tls match needs at least one SNI host")
		}
		if !c.delegate { // a delegate's tls routes are already an error
			for j, sni := range m.SniHosts {
				v.sniHost(index(mp+".sniHosts", j), sni, c)
			}
		}
		v.subnets(mp+".destinationSubnets", m.DestinationSubnets)
		v.optionalPort(mp+".port", m.Port)
		v.selectors(mp, m.SourceLabels, m.Gateways, m.SourceNamespace, c.spec.Gateways)
	}
	if len(r.Route) == 0 {
		v.errorf(p+".route", "required: a tls route needs at least one destination")
	}
	v.routeDestinations(p+".route", r.Route)
}

// sniHost checks that an SNI host is a valid name within the
// VirtualService's hosts (Istio validateSniHost).
func (v *validator) sniHost(p, sni string, c *vsContext) {
	if isIP(sni) {
		v.warnf(p, "SNI host %q is an IP address; the TLS spec forbids IP addresses in SNI and most clients never send one", sni)
		return
	}
	if err := checkWildcardHost(sni); err != nil {
		v.errorf(p, "invalid SNI host %q: %v", sni, err)
		return
	}
	s := strings.ToLower(sni)
	if c.sniExact != nil {
		if !c.sniExact[s] {
			v.errorf(p, "SNI host %q is not one of the VirtualService hosts", sni)
		}
		return
	}
	for _, h := range c.spec.Hosts {
		if HostMatches(strings.ToLower(h), s) || HostMatches(ResolveHost(h, v.res.Namespace, v.opts.ClusterDomain), s) {
			return
		}
	}
	v.errorf(p, "SNI host %q is not within the VirtualService hosts [%s]", sni, strings.Join(c.spec.Hosts, ", "))
}

// tcpRoute checks a TCP route.
func (v *validator) tcpRoute(p string, r *networking.TCPRoute, gateways []string) {
	for i, m := range r.Match {
		mp := index(p+".match", i)
		v.subnets(mp+".destinationSubnets", m.DestinationSubnets)
		v.optionalPort(mp+".port", m.Port)
		if m.SourceSubnet != "" {
			if err := checkIPOrCIDR(m.SourceSubnet); err != nil {
				v.errorf(mp+".sourceSubnet", "%v", err)
			}
		}
		v.selectors(mp, m.SourceLabels, m.Gateways, m.SourceNamespace, gateways)
	}
	if len(r.Route) == 0 {
		v.errorf(p+".route", "required: a tcp route needs at least one destination")
	}
	v.routeDestinations(p+".route", r.Route)
}

func (v *validator) subnets(p string, subnets []string) {
	for i, s := range subnets {
		if err := checkIPOrCIDR(s); err != nil {
			v.errorf(index(p, i), "%v", err)
		}
	}
}

// selectors checks the config-time conditions of a match: sourceLabels,
// gateways and sourceNamespace. vsGateways are the VirtualService's own
// gateways, which apply when the match lists none.
func (v *validator) selectors(mp string, sourceLabels map[string]string, gateways []string, sourceNamespace string, vsGateways []string) {
	v.labels(mp+".sourceLabels", sourceLabels)
	for i, g := range gateways {
		v.gatewayName(index(mp+".gateways", i), g)
	}
	if sourceNamespace != "" && !isDNS1123Label(sourceNamespace) {
		v.errorf(mp+".sourceNamespace", "invalid namespace %q: %s", sourceNamespace, dns1123LabelRule)
	}
	if len(sourceLabels) == 0 {
		return
	}
	// sourceLabels select sidecars by their labels; a match that only
	// applies to gateways can never satisfy them.
	effective := gateways
	if len(effective) == 0 {
		effective = vsGateways
	}
	if len(effective) == 0 {
		return
	}
	for _, g := range effective {
		if g == "mesh" {
			return
		}
	}
	v.errorf(mp+".sourceLabels", "sourceLabels select sidecars, but this match only applies to gateways [%s]: add \"mesh\" to the gateways", strings.Join(effective, ", "))
}

// routeDestinations checks the weighted destinations of a tcp or tls
// route. Weights are relative; see httpDestinations.
func (v *validator) routeDestinations(p string, ds []*networking.RouteDestination) {
	weights := make([]int32, len(ds))
	for i, d := range ds {
		dp := index(p, i)
		v.destination(dp+".destination", d.Destination, true)
		weights[i] = d.Weight
	}
	v.weights(p, weights)
}

// weights checks relative destination weights (Istio
// validateHTTPRouteDestinations; route.go drops zero-weight destinations
// from a split).
func (v *validator) weights(p string, weights []int32) {
	var total int64
	negative := false
	for i, w := range weights {
		if w < 0 {
			v.errorf(index(p, i)+".weight", "must not be negative, found %d", w)
			negative = true
			continue
		}
		total += int64(w)
	}
	if len(weights) < 2 || negative {
		return
	}
	if total == 0 {
		v.errorf(p, "total weight is 0: with more than one destination, give at least one a positive weight (weights are relative and need not add up to 100)")
		return
	}
	if total > 1<<32-1 {
		v.errorf(p, "total weight %d is too large: the sum must fit in 32 bits", total)
	}
	for i, w := range weights {
		if w == 0 {
			v.warnf(index(p, i)+".weight", "weight is 0, so this destination receives no traffic: Istio drops it from the split")
		}
	}
}

// destination checks a route, mirror or L4 destination (Istio
// validateDestination). required says whether a missing destination is an
// error at p.
func (v *validator) destination(p string, d *networking.Destination, required bool) {
	if d == nil {
		if required {
			v.errorf(p, "required: a destination needs a host")
		}
		return
	}
	switch {
	case d.Host == "":
		v.errorf(p+".host", "required: name the service to send traffic to")
	case d.Host == "*":
		v.errorf(p+".host", `"*" is not a valid destination: name one service`)
	default:
		if err := checkWildcardHost(d.Host); err != nil {
			v.errorf(p+".host", "invalid host %q: %v", d.Host, err)
		}
	}
	if d.Subset != "" && !isDNS1123Label(d.Subset) {
		v.errorf(p+".subset", "invalid subset name %q: %s", d.Subset, dns1123LabelRule)
	}
	if d.Port != nil {
		v.port(p+".port.number", d.Port.GetNumber())
	}
}
