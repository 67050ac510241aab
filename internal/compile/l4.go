package compile

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// l4Applies applies the config-time conditions of a TCP or TLS match for
// the proxy on listener l (istio tcp/tls matchTCP, matchTLS): all of port,
// gateways, sourceLabels and sourceNamespace must hold.
func (c *compiler) l4Applies(port uint32, gateways []string, labels map[string]string, sourceNS, ns string, l listener) bool {
	if port != 0 && port != l.port {
		return false
	}
	if len(gateways) > 0 {
		found := false
		for _, g := range gateways {
			if resolveGatewayName(g, ns) == l.gateway {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if !registry.LabelsMatch(labels, c.opts.Proxy.Labels) {
		return false
	}
	return sourceNS == "" || sourceNS == c.opts.Proxy.Namespace
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

// tcpRoutes compiles v's tcp rules for listener l (istio
// buildSidecarOutboundTCPTLSFilterChainOpts, gateway
// buildGatewayNetworkFiltersFromTCPRoutes). On a sidecar the rules are
// compiled for one service, and a match without destinationSubnets is
// scoped to the service's addresses (vips), as Istio's filter chain for the
// service is. A rule without match, or an applicable match that leaves
// the destination open, is terminal: nothing after it can be reached, and
// terminal reports it so that no default route is added. With vips every
// applicable match is terminal, as in Istio: the service's own filter
// chain already receives only its traffic.
func (c *compiler) tcpRoutes(v *virtualService, l listener, vips []string) (routes []*routing.TCPRoute, terminal bool) {
	for i, rule := range v.spec.Tcp {
		if rule == nil {
			continue
		}
		var matches []routing.L4Match
		term := len(rule.Match) == 0
		if term && len(vips) > 0 {
			matches = []routing.L4Match{{DestinationSubnets: vips}}
		}
		for _, m := range rule.Match {
			if m == nil || !c.l4Applies(m.Port, m.Gateways, m.SourceLabels, m.SourceNamespace, v.res.Namespace, l) {
				continue
			}
			lm := routing.L4Match{DestinationSubnets: m.DestinationSubnets, SourceSubnet: m.SourceSubnet}
			if len(lm.DestinationSubnets) == 0 {
				lm.DestinationSubnets = vips
			}
			if len(lm.DestinationSubnets) == 0 && lm.SourceSubnet == "" {
				// Every connection matches: listing the match narrows nothing.
				matches, term = nil, true
				break
			}
			matches = append(matches, lm)
			if len(vips) > 0 {
				term = true
				break
			}
		}
		if len(rule.Match) > 0 && len(matches) == 0 && !term {
			continue
		}
		dests, total := c.l4Destinations(v, rule.Route, l)
		if len(dests) == 0 {
			c.diags.errorf(v.res, fmt.Sprintf("spec.tcp[%d].route", i), "no destination with a non-zero weight; the rule is dropped")
			continue
		}
		routes = append(routes, &routing.TCPRoute{
			VirtualService: v.name(), RuleIndex: i, Hosts: v.hosts, Matches: matches,
			Destinations: dests, TotalWeight: total,
		})
		if term {
			return routes, true
		}
	}
	return routes, false
}

// tlsRoutes compiles v's tls rules for listener l: each rule keeps the
// matches that apply to this proxy, with their SNI names and subnets (on a
// sidecar the service's addresses, vips, when the match names none). With
// serverHosts set (a gateway server), SNI names outside them are left out.
func (c *compiler) tlsRoutes(v *virtualService, l listener, serverHosts, vips []string) []*routing.TLSRoute {
	var routes []*routing.TLSRoute
	for i, rule := range v.spec.Tls {
		if rule == nil {
			continue
		}
		var matches []routing.L4Match
		for _, m := range rule.Match {
			if m == nil || !c.l4Applies(m.Port, m.Gateways, m.SourceLabels, m.SourceNamespace, v.res.Namespace, l) {
				continue
			}
			sni := m.SniHosts
			if serverHosts != nil {
				sni = intersectHosts(serverHosts, m.SniHosts)
				if len(sni) == 0 {
					continue
				}
			}
			subnets := m.DestinationSubnets
			if len(subnets) == 0 {
				subnets = vips
			}
			matches = append(matches, routing.L4Match{SNIHosts: sni, DestinationSubnets: subnets})
		}
		if len(matches) == 0 {
			continue
		}
		dests, total := c.l4Destinations(v, rule.Route, l)
		if len(dests) == 0 {
			c.diags.errorf(v.res, fmt.Sprintf("spec.tls[%d].route", i), "no destination with a non-zero weight; the rule is dropped")
			continue
		}
		routes = append(routes, &routing.TLSRoute{
			VirtualService: v.name(), RuleIndex: i, Matches: matches, Destinations: dests, TotalWeight: total,
		})
	}
	return routes
}

// buildMeshL4 compiles the TCP and TLS routes of a sidecar. For every
// service port that is not HTTP, the oldest VirtualService with tcp or tls
// rules for the service's host contributes its rules, scoped to the
// service's addresses, and unless one of them is terminal the service keeps
// a default route to its own cluster: the plain TCP proxying Istio does
// without a VirtualService. TLS ports get the tls rules, routed by SNI,
// and the tcp rules and default route for connections no SNI rule takes.
// Within a port, routes follow the services' host order.
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
		// A VirtualService owning several services without addresses would
		// emit the same unscoped rules once per service.
		type emitted struct {
			vs   *virtualService
			vips string
		}
		done := map[emitted]bool{}
		for _, ps := range byPort[port] {
			vips := serviceVIPs(ps.s)
			terminal := false
			if v := l4Owner(mv.vss, ps.s.Hostname, ps.tls); v != nil {
				key := emitted{v, strings.Join(vips, ",")}
				if ps.tls && !done[key] {
					tls = append(tls, c.tlsRoutes(v, l, nil, vips)...)
				}
				var routes []*routing.TCPRoute
				routes, terminal = c.tcpRoutes(v, l, vips)
				if !done[key] {
					tcp = append(tcp, routes...)
				}
				done[key] = true
			}
			if !terminal {
				tcp = append(tcp, c.defaultTCPRoute(ps.s, port, vips))
			}
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

// serviceVIPs are the addresses that identify a service's connections:
// its ServiceEntry addresses (IPs or CIDRs).
func serviceVIPs(s *registry.Service) []string {
	var out []string
	for _, a := range s.Addresses {
		if a != "" && a != "0.0.0.0" {
			out = append(out, a)
		}
	}
	return out
}

// l4Owner is the oldest mesh VirtualService with layer-4 rules for host:
// tcp rules, or tls rules on a TLS port.
func l4Owner(vss []*virtualService, host string, tls bool) *virtualService {
	for _, v := range vss {
		if len(v.spec.Tcp) == 0 && (!tls || len(v.spec.Tls) == 0) {
			continue
		}
		for _, h := range v.hosts {
			if config.HostsOverlap(h, host) {
				return v
			}
		}
	}
	return nil
}

// defaultTCPRoute forwards every connection for s on port to its cluster.
// Like Istio's per-service filter chain it is keyed by the service's
// addresses (vips) when it has any; without, the port alone identifies it.
func (c *compiler) defaultTCPRoute(s *registry.Service, port uint32, vips []string) *routing.TCPRoute {
	var matches []routing.L4Match
	if len(vips) > 0 {
		matches = []routing.L4Match{{DestinationSubnets: vips}}
	}
	return &routing.TCPRoute{
		RuleIndex: -1,
		Hosts:     []string{s.Hostname},
		Matches:   matches,
		Destinations: []*routing.Destination{{
			Cluster: routing.ClusterName(port, "", s.Hostname),
			Host:    s.Hostname,
			Port:    port,
			Weight:  100,
		}},
		TotalWeight: 100,
	}
}
