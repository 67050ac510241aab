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

// Layer-4 routes follow Istio's listener builders: on sidecars
// buildSidecarOutboundTCPFilterChainOpts and
// buildSidecarOutboundTLSFilterChainOpts (networking/core/tls.go), which
// build filter chains per service; on gateways
// buildGatewayNetworkFiltersFromTCPRoutes and ...FromTLSRoutes
// (networking/core/gateway.go). Envoy picks a filter chain by destination
// address and SNI; michi flattens the chains of one port into an ordered
// route list, so a sidecar's routes carry the service's addresses as
// destination subnets where Istio would bind the listener to them.

// sidecarL4Applies applies the config-time conditions of a sidecar TCP or
// TLS match (istio matchTCP, matchTLS): port, gateways ("mesh"),
// sourceLabels and sourceNamespace must all hold.
func (c *compiler) sidecarL4Applies(port uint32, gateways []string, labels map[string]string, sourceNS, ns string, l listener) bool {
	return gatewayL4Applies(port, gateways, ns, l) &&
		registry.LabelsMatch(labels, c.opts.Proxy.Labels) &&
		(sourceNS == "" || sourceNS == c.opts.Proxy.Namespace)
}

// gatewayL4Applies applies the conditions Istio checks for a TCP or TLS
// match on a gateway (l4SingleMatch): only port and gateways. Short gateway
// names resolve in ns.
func gatewayL4Applies(port uint32, gateways []string, ns string, l listener) bool {
	if port != 0 && port != l.port {
		return false
	}
	if len(gateways) == 0 {
		return true
	}
	for _, g := range gateways {
		if resolveGatewayName(g, ns) == l.gateway {
			return true
		}
	}
	return false
}

// l4Destinations resolves the destinations of a TCP or TLS rule with the
// same weight rules as HTTP: a lone destination takes everything, and with
// several, weight-0 ones are dropped.
func (c *compiler) l4Destinations(v *virtualService, route []*networking.RouteDestination, l listener) ([]*routing.Destination, uint32) {
	var out []*routing.Destination
	var total uint32
	for _, rd := range route {
		if rd == nil || rd.Destination == nil {
			continue
		}
		weight := uint32(max(rd.Weight, 0))
		if len(route) == 1 && weight == 0 {
			weight = 100
		} else if weight == 0 {
			continue
		}
		d := c.destination(rd.Destination, v.res.Namespace, v, l)
		// Hash policies are HTTP route settings; TCP proxying balances on
		// the cluster's own policy.
		d.Hash = nil
		d.Weight = weight
		out = append(out, d)
		total += weight
	}
	return out, total
}

// l4RuleDestinations resolves a rule's destinations, reporting a rule that
// has none.
func (c *compiler) l4RuleDestinations(v *virtualService, field string, route []*networking.RouteDestination, l listener) ([]*routing.Destination, uint32, bool) {
	dests, total := c.l4Destinations(v, route, l)
	if len(dests) == 0 {
		c.diags.errorf(v.res, field+".route", "no destination with a non-zero weight; the rule is dropped")
		return nil, 0, false
	}
	return dests, total, true
}

// reportIgnoredSourceSubnet warns about sourceSubnet, which Istio accepts
// but applies nowhere.
func (c *compiler) reportIgnoredSourceSubnet(v *virtualService, field string, m *networking.L4MatchAttributes) {
	if m.SourceSubnet != "" {
		c.diags.warnf(v.res, field+".sourceSubnet", "Istio does not apply sourceSubnet; the condition is ignored")
	}
}

// buildMeshL4 compiles the TCP and TLS routes of a sidecar, service by
// service in host order on each port that is neither HTTP nor sniffed.
func (c *compiler) buildMeshL4(t *routing.Table, mv *meshView) {
	type portService struct {
		s   *registry.Service
		tls bool
	}
	byPort := map[uint32][]portService{}
	for _, s := range mv.services {
		for _, p := range s.Ports {
			proto := portProtocol(p)
			if isTLSProtocol(proto) || isTCPProtocol(proto) {
				byPort[p.Number] = append(byPort[p.Number], portService{s, isTLSProtocol(proto)})
			}
		}
	}
	ports := map[uint32]bool{}
	for p := range byPort {
		ports[p] = true
	}
	for _, port := range sortedPorts(ports) {
		l := listener{port: port, gateway: meshGateway}
		var tcp []*routing.TCPRoute
		var tls []*routing.TLSRoute
		for _, ps := range byPort[port] {
			vss := l4VirtualServices(mv.vss, ps.s.Hostname)
			if ps.tls {
				rts, dflt := c.sidecarTLS(ps.s, vss, l)
				tls = append(tls, rts...)
				if dflt != nil {
					tcp = append(tcp, dflt)
				}
				continue
			}
			tcp = append(tcp, c.sidecarTCP(ps.s, vss, l)...)
		}
		if len(tcp) > 0 {
			if t.TCP == nil {
				t.TCP = map[uint32][]*routing.TCPRoute{}
			}
			t.TCP[port] = tcp
		}
		if len(tls) > 0 {
			if t.TLS == nil {
				t.TLS = map[uint32][]*routing.TLSRoute{}
			}
			t.TLS[port] = tls
		}
	}
}

// l4VirtualServices are the sidecar VirtualServices whose hosts match
// host, oldest first (istio tls.go getConfigsForHost): all of them
// contribute, in order.
func l4VirtualServices(vss []*virtualService, host string) []*virtualService {
	var out []*virtualService
	for _, v := range vss {
		for _, h := range v.hosts {
			if config.HostsOverlap(h, host) {
				out = append(out, v)
				break
			}
		}
	}
	return out
}

// sidecarTCP compiles the routes of a TCP service port (istio
// buildSidecarOutboundTCPFilterChainOpts). A rule without match, or with
// an applicable match that names no destinationSubnets, takes every
// connection for the service and ends the list; the destinationSubnets of
// a rule's other applicable matches make one route for it. Unless a rule
// took every connection, the service's default route (its own cluster)
// follows. Routes are scoped to the service's addresses.
func (c *compiler) sidecarTCP(s *registry.Service, vss []*virtualService, l listener) []*routing.TCPRoute {
	scope := serviceAddresses(s)
	var out []*routing.TCPRoute
	defaultCovered := false
	emit := func(v *virtualService, i int, rule *networking.TCPRoute, subnets []string) bool {
		dests, total, ok := c.l4RuleDestinations(v, fmt.Sprintf("spec.tcp[%d]", i), rule.Route, l)
		if !ok {
			return false
		}
		out = append(out, &routing.TCPRoute{
			VirtualService: v.name(), RuleIndex: i, Hosts: v.hosts, Matches: subnetMatch(subnets),
			Destinations: dests, TotalWeight: total,
		})
		return true
	}
rules:
	for _, v := range vss {
		for i, rule := range v.spec.Tcp {
			if rule == nil {
				continue
			}
			if len(rule.Match) == 0 {
				if emit(v, i, rule, scope) {
					defaultCovered = true
					break rules
				}
				continue
			}
			var subnets []string
			for j, m := range rule.Match {
				if m == nil {
					continue
				}
				c.reportIgnoredSourceSubnet(v, fmt.Sprintf("spec.tcp[%d].match[%d]", i, j), m)
				if !c.sidecarL4Applies(m.Port, m.Gateways, m.SourceLabels, m.SourceNamespace, v.res.Namespace, l) {
					continue
				}
				if len(m.DestinationSubnets) == 0 {
					if emit(v, i, rule, scope) {
						defaultCovered = true
						break rules
					}
					continue rules
				}
				subnets = append(subnets, m.DestinationSubnets...)
			}
			if len(subnets) > 0 && emit(v, i, rule, subnets) && sameSet(subnets, scope) {
				// Istio does not add a default filter chain with the same
				// match as this one, which Envoy would reject.
				defaultCovered = true
			}
		}
	}
	if !defaultCovered {
		out = append(out, c.defaultTCPRoute(s, l.port, scope))
	}
	return out
}

// sidecarTLS compiles the routes of a TLS or HTTPS service port (istio
// buildSidecarOutboundTLSFilterChainOpts): every applicable tls match
// routes its SNI names, within its destinationSubnets or else the
// service's addresses; a match repeating the SNI names and subnets of an
// earlier one could never be reached and is left out. Only when no match
// applies does the service get its default route: by SNI (its host name)
// when it has no address to tell its connections apart, else by address.
func (c *compiler) sidecarTLS(s *registry.Service, vss []*virtualService, l listener) ([]*routing.TLSRoute, *routing.TCPRoute) {
	scope := serviceAddresses(s)
	var out []*routing.TLSRoute
	seen := map[string]bool{}
	for _, v := range vss {
		for i, rule := range v.spec.Tls {
			if rule == nil {
				continue
			}
			var matches []routing.L4Match
			for _, m := range rule.Match {
				if m == nil || !c.sidecarL4Applies(m.Port, m.Gateways, m.SourceLabels, m.SourceNamespace, v.res.Namespace, l) {
					continue
				}
				key := strings.Join(m.SniHosts, ",") + "|" + strings.Join(m.DestinationSubnets, ",")
				if seen[key] {
					continue
				}
				seen[key] = true
				subnets := m.DestinationSubnets
				if len(subnets) == 0 {
					subnets = scope
				}
				matches = append(matches, routing.L4Match{SNIHosts: m.SniHosts, DestinationSubnets: subnets})
			}
			if len(matches) == 0 {
				continue
			}
			dests, total, ok := c.l4RuleDestinations(v, fmt.Sprintf("spec.tls[%d]", i), rule.Route, l)
			if !ok {
				continue
			}
			out = append(out, &routing.TLSRoute{
				VirtualService: v.name(), RuleIndex: i, Matches: matches, Destinations: dests, TotalWeight: total,
			})
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	dflt := c.defaultTCPRoute(s, l.port, scope)
	if len(scope) == 0 || hasCIDR(scope) {
		// Without an address of its own the service's connections can only
		// be told apart by SNI: Istio matches its host name.
		out = append(out, &routing.TLSRoute{
			RuleIndex: -1, Matches: []routing.L4Match{{SNIHosts: []string{s.Hostname}, DestinationSubnets: scope}},
			Destinations: dflt.Destinations, TotalWeight: dflt.TotalWeight,
		})
		return out, nil
	}
	return nil, dflt
}

// serviceAddresses are the addresses that identify a service's
// connections: its ServiceEntry addresses (IPs or CIDRs).
func serviceAddresses(s *registry.Service) []string {
	var out []string
	for _, a := range s.Addresses {
		if a != "" && a != "0.0.0.0" {
			out = append(out, a)
		}
	}
	return out
}

func hasCIDR(addrs []string) bool {
	for _, a := range addrs {
		if strings.Contains(a, "/") {
			return true
		}
	}
	return false
}

func subnetMatch(subnets []string) []routing.L4Match {
	if len(subnets) == 0 {
		return nil
	}
	return []routing.L4Match{{DestinationSubnets: subnets}}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// defaultTCPRoute forwards every connection for s on port to its cluster,
// within scope (the service's addresses) when it has any.
func (c *compiler) defaultTCPRoute(s *registry.Service, port uint32, scope []string) *routing.TCPRoute {
	return &routing.TCPRoute{
		RuleIndex: -1,
		Hosts:     []string{s.Hostname},
		Matches:   subnetMatch(scope),
		Destinations: []*routing.Destination{{
			Cluster: routing.ClusterName(port, "", s.Hostname),
			Host:    s.Hostname,
			Port:    port,
			Weight:  100,
		}},
		TotalWeight: 100,
	}
}

// gatewayTCP adds the route of a TCP server: the first tcp rule, among the
// VirtualServices bound to its Gateway whose hosts meet the server's
// (oldest first), without match or with a match for this port and
// Gateway (istio buildGatewayNetworkFiltersFromTCPRoutes). Istio checks no
// other condition of a gateway match, and neither does michi.
func (c *compiler) gatewayTCP(t *routing.Table, gs *gatewayServer, vss []*virtualService) {
	port := gs.s.Port.Number
	l := listener{port: port, gateway: gs.name}
	for _, v := range vss {
		if !v.boundTo(gs.name) || len(intersectHosts(gs.serverHostsFor(v.res.Namespace), v.hosts)) == 0 {
			continue
		}
		for i, rule := range v.spec.Tcp {
			if rule == nil {
				continue
			}
			applies := len(rule.Match) == 0
			for j, m := range rule.Match {
				if m == nil {
					continue
				}
				c.reportIgnoredSourceSubnet(v, fmt.Sprintf("spec.tcp[%d].match[%d]", i, j), m)
				applies = applies || gatewayL4Applies(m.Port, m.Gateways, v.res.Namespace, l)
			}
			if !applies {
				continue
			}
			dests, total, ok := c.l4RuleDestinations(v, fmt.Sprintf("spec.tcp[%d]", i), rule.Route, l)
			if !ok {
				continue
			}
			if t.TCP == nil {
				t.TCP = map[uint32][]*routing.TCPRoute{}
			}
			t.TCP[port] = append(t.TCP[port], &routing.TCPRoute{
				VirtualService: v.name(), RuleIndex: i, Hosts: v.hosts, Destinations: dests, TotalWeight: total,
			})
			return
		}
	}
}

// gatewayTLS adds the SNI routes of a passthrough server: every tls match,
// among the VirtualServices bound to its Gateway whose hosts meet the
// server's, for this port and Gateway (istio
// buildGatewayNetworkFiltersFromTLSRoutes). A match naming an SNI host an
// earlier match on the port already routes is skipped, as Istio does to
// keep Envoy's filter chains unique. AUTO_PASSTHROUGH servers route by
// the cluster name in the SNI and take no VirtualService.
func (c *compiler) gatewayTLS(t *routing.Table, gs *gatewayServer, vss []*virtualService, sniTaken map[string]bool) {
	if gs.s.Tls != nil && gs.s.Tls.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
		return
	}
	port := gs.s.Port.Number
	l := listener{port: port, gateway: gs.name, tls: true}
	for _, v := range vss {
		if !v.boundTo(gs.name) || len(intersectHosts(gs.serverHostsFor(v.res.Namespace), v.hosts)) == 0 {
			continue
		}
		for i, rule := range v.spec.Tls {
			if rule == nil {
				continue
			}
			var matches []routing.L4Match
			for j, m := range rule.Match {
				if m == nil || !gatewayL4Applies(m.Port, m.Gateways, v.res.Namespace, l) {
					continue
				}
				if dup := takenSNI(m.SniHosts, sniTaken); dup != "" {
					c.diags.warnf(v.res, fmt.Sprintf("spec.tls[%d].match[%d].sniHosts", i, j),
						"SNI host %s on port %d is already routed by an earlier rule; Istio skips this match", dup, port)
					continue
				}
				for _, h := range m.SniHosts {
					sniTaken[strings.ToLower(h)] = true
				}
				matches = append(matches, routing.L4Match{SNIHosts: m.SniHosts})
			}
			if len(matches) == 0 {
				continue
			}
			dests, total, ok := c.l4RuleDestinations(v, fmt.Sprintf("spec.tls[%d]", i), rule.Route, l)
			if !ok {
				continue
			}
			if t.TLS == nil {
				t.TLS = map[uint32][]*routing.TLSRoute{}
			}
			t.TLS[port] = append(t.TLS[port], &routing.TLSRoute{
				VirtualService: v.name(), RuleIndex: i, Matches: matches, Destinations: dests, TotalWeight: total,
			})
		}
	}
}

func takenSNI(hosts []string, taken map[string]bool) string {
	for _, h := range hosts {
		if taken[strings.ToLower(h)] {
			return h
		}
	}
	return ""
}
