package compile

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// nonServiceHostPort is the port whose route configuration also carries
// the VirtualService hosts that name no service: Istio keeps them on the
// HTTP proxy port 80 (route.go buildSidecarVirtualHostsForVirtualService).
const nonServiceHostPort = 80

// meshView is what a sidecar sees: the services exported to its namespace
// (one per host name) and the VirtualServices that apply to sidecars and
// are exported to it, oldest first.
type meshView struct {
	services []*registry.Service // sorted by host name
	vss      []*virtualService
	// claims maps a service host to the VirtualService that owns it on
	// sidecars: the oldest with that exact host, else the one with the
	// most specific wildcard host covering it (istio sidecar.go
	// MostSpecificWildcardVirtualServiceIndex).
	claims map[string]*virtualService
}

func (c *compiler) meshView() *meshView {
	mv := &meshView{claims: map[string]*virtualService{}}
	ns := c.opts.Proxy.Namespace
	seen := map[string]bool{}
	for _, s := range c.reg.Services() {
		if seen[s.Hostname] {
			continue
		}
		seen[s.Hostname] = true
		if v := c.reg.Lookup(s.Hostname, ns); v != nil {
			mv.services = append(mv.services, v)
		}
	}
	for _, v := range c.vs.roots {
		if v.boundTo(meshGateway) && config.ExportedTo(v.spec.ExportTo, v.res.Namespace, ns) {
			mv.vss = append(mv.vss, v)
		}
	}

	exact := map[string]*virtualService{}
	type wildcardHost struct {
		host string
		vs   *virtualService
	}
	var wildcards []wildcardHost
	seenWildcard := map[string]bool{}
	for _, v := range mv.vss {
		for _, h := range v.hosts {
			switch {
			case !config.IsWildcard(h):
				if exact[h] == nil {
					exact[h] = v
				}
			case !seenWildcard[h]:
				seenWildcard[h] = true
				wildcards = append(wildcards, wildcardHost{h, v})
			}
		}
	}
	for _, s := range mv.services {
		if v := exact[s.Hostname]; v != nil {
			mv.claims[s.Hostname] = v
			continue
		}
		best := ""
		for _, w := range wildcards {
			if config.HostMatches(w.host, s.Hostname) && len(w.host) > len(best) {
				best = w.host
				mv.claims[s.Hostname] = w.vs
			}
		}
	}
	return mv
}

// buildMesh compiles the outbound side of a sidecar: one route
// configuration per HTTP port, and the TCP and TLS routes.
func (c *compiler) buildMesh(t *routing.Table) {
	mv := c.meshView()
	ports := map[uint32]bool{}
	for _, s := range mv.services {
		for _, p := range s.Ports {
			if isHTTPProtocol(portProtocol(p)) {
				ports[p.Number] = true
			}
		}
	}
	for _, v := range mv.vss {
		if len(v.http) > 0 {
			ports[nonServiceHostPort] = true
			break
		}
	}
	dups := duplicateHosts{}
	for _, port := range sortedPorts(ports) {
		if rc := c.meshRouteConfig(mv, port, dups); rc != nil {
			t.HTTP[port] = rc
		}
	}
	dups.report(&c.diags)
	c.buildMeshL4(t, mv)
}

func sortedPorts(m map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// vhostGroup is a set of virtual hosts sharing one route list: the hosts
// of a VirtualService on a port (istio route.VirtualHostWrapper).
type vhostGroup struct {
	vs       *virtualService
	routes   []*routing.Route
	vsHosts  []string            // VirtualService hosts that name no service here
	services []*registry.Service // services the VirtualService owns here
}

// meshRouteConfig builds the route configuration for port (istio
// httproute.go BuildSidecarOutboundVirtualHosts): the VirtualServices with
// a host among the port's services (every VirtualService on port 80), then
// Istio's default route for the services no VirtualService took. It
// returns nil when the port has no virtual host.
func (c *compiler) meshRouteConfig(mv *meshView, port uint32, dups duplicateHosts) *routing.RouteConfig {
	var services []*registry.Service
	byHost := make(map[string]*registry.Service, len(mv.services))
	for _, s := range mv.services {
		if hasHTTPPort(s, port) {
			services = append(services, s)
			byHost[s.Hostname] = s
		}
	}

	var groups []*vhostGroup
	claimed := map[string]bool{}
	for _, v := range mv.vss {
		if len(v.http) == 0 || port != nonServiceHostPort && !selectsAny(v, services, byHost) {
			continue
		}
		routes := c.httpRoutes(v, listener{port: port, gateway: meshGateway})
		if len(routes) == 0 {
			// No route applies to this proxy: the services keep their
			// default route, as in Istio.
			continue
		}
		g := &vhostGroup{vs: v, routes: routes}
		g.vsHosts, g.services = separateHosts(v, services, byHost, mv.claims)
		if len(g.services) == 0 && port != nonServiceHostPort {
			continue
		}
		for _, s := range g.services {
			claimed[s.Hostname] = true
		}
		groups = append(groups, g)
	}

	b := newVhostBuilder(port, len(services))
	for _, g := range groups {
		for _, s := range g.services {
			b.knownFQDN[s.Hostname] = true
		}
	}
	for _, g := range groups {
		for _, h := range g.vsHosts {
			if owner, ok := b.add(h, []string{ipv6Compliant(h)}, nil, g.vs.name(), g.routes); !ok {
				dups.add(g.vs, h, owner)
			}
		}
		for _, s := range g.services {
			domains, alt := serviceDomains(s, c.opts.Proxy.Namespace, c.opts.ClusterDomain)
			if owner, ok := b.add(s.Hostname, domains, alt, g.vs.name(), g.routes); !ok {
				dups.add(g.vs, s.Hostname, owner)
			}
		}
	}
	for _, s := range services {
		if claimed[s.Hostname] {
			continue
		}
		domains, alt := serviceDomains(s, c.opts.Proxy.Namespace, c.opts.ClusterDomain)
		b.add(s.Hostname, domains, alt, "", []*routing.Route{c.defaultRoute(s, port)})
	}
	if len(b.vhosts) == 0 {
		return nil
	}
	sort.Slice(b.vhosts, func(i, j int) bool { return b.vhosts[i].Name < b.vhosts[j].Name })
	return routing.NewRouteConfig(port, b.vhosts)
}

// selectsAny reports whether one of v's hosts names one of services, the
// test Istio applies before building a port's virtual hosts
// (httproute.go selectVirtualServices).
func selectsAny(v *virtualService, services []*registry.Service, byHost map[string]*registry.Service) bool {
	for _, h := range v.hosts {
		if byHost[h] != nil {
			return true
		}
	}
	for _, h := range v.hosts {
		wild := config.IsWildcard(h)
		for _, s := range services {
			if (wild || config.IsWildcard(s.Hostname)) && config.HostsOverlap(h, s.Hostname) {
				return true
			}
		}
	}
	return false
}

// separateHosts splits v's hosts into the services of this port it owns
// and the hosts that name no service here (istio route.go
// separateVSHostsAndServices). An exact host owns its service; a wildcard
// host owns the services it is the most specific VirtualService host for,
// and counts as a plain host only when it covers no service at all.
func separateHosts(v *virtualService, services []*registry.Service, byHost map[string]*registry.Service,
	claims map[string]*virtualService,
) (hosts []string, owned []*registry.Service) {
	seen := map[string]bool{}
	own := func(s *registry.Service) {
		if !seen[s.Hostname] {
			seen[s.Hostname] = true
			owned = append(owned, s)
		}
	}
	for _, h := range v.hosts {
		if config.IsWildcard(h) {
			continue
		}
		if s := byHost[h]; s != nil {
			own(s)
		} else {
			hosts = append(hosts, h)
		}
	}
	for _, h := range v.hosts {
		if !config.IsWildcard(h) {
			continue
		}
		found := false
		for _, s := range services {
			if !config.HostsOverlap(h, s.Hostname) {
				continue
			}
			found = true
			if claims[s.Hostname] == v {
				own(s)
			}
		}
		if !found {
			hosts = append(hosts, h)
		}
	}
	return hosts, owned
}

// defaultRoute is Istio's route for a service without a VirtualService
// (route.go BuildDefaultHTTPOutboundRoute): everything to the service's
// cluster for the port, Istio's default retries, no timeout. The default
// retry policy keeps the previous-hosts predicate even under consistent
// hashing, as Istio builds it without looking at the hash.
func (c *compiler) defaultRoute(s *registry.Service, port uint32) *routing.Route {
	match, _ := routing.NewPathMatch(routing.PathAny, "", false)
	retry, _ := retryPolicy(nil, false)
	return &routing.Route{
		Name:       defaultRouteName,
		RuleIndex:  -1,
		MatchIndex: -1,
		Match:      match,
		Forward: &routing.Forward{
			Destinations: []*routing.Destination{{
				Cluster: routing.ClusterName(port, "", s.Hostname),
				Host:    s.Hostname,
				Port:    port,
				Weight:  100,
				Hash:    c.drs.hashPolicy(s.Hostname, s.Namespace, "", port),
			}},
			TotalWeight: 100,
		},
		Retry: retry,
	}
}

// vhostBuilder collects the virtual hosts of one route configuration,
// keeping virtual host names and domains unique as Envoy requires: the
// first virtual host to claim a name or a domain keeps it (istio
// httproute.go buildVirtualHost, dedupeDomains).
type vhostBuilder struct {
	port      uint32
	vhosts    []*routing.VirtualHost
	owners    map[string]string // virtual host name -> VirtualService ("" for a default route)
	domains   map[string]string // lower-cased domain -> owner
	knownFQDN map[string]bool   // hosts of services owned by a VirtualService
}

// newVhostBuilder sizes its indexes for about n services.
func newVhostBuilder(port uint32, n int) *vhostBuilder {
	return &vhostBuilder{
		port:      port,
		vhosts:    make([]*routing.VirtualHost, 0, n),
		owners:    make(map[string]string, n),
		domains:   make(map[string]string, 4*n),
		knownFQDN: map[string]bool{},
	}
}

// add adds a virtual host for host with the given domains, unless its
// name or all its domains are taken; then it reports false and the owner
// that holds them. Shorter alternative names (alt) are also dropped when
// they are the real name of another service owned by a VirtualService.
func (b *vhostBuilder) add(host string, domains, alt []string, vs string, routes []*routing.Route) (string, bool) {
	name := vhostName(host, b.port)
	if owner, dup := b.owners[name]; dup {
		return owner, false
	}
	b.owners[name] = vs
	kept := make([]string, 0, len(domains))
	owner := ""
	for _, d := range domains {
		ld := strings.ToLower(d)
		if o, taken := b.domains[ld]; taken {
			owner = o
			continue
		}
		if b.knownFQDN[d] && slices.Contains(alt, d) {
			continue
		}
		b.domains[ld] = vs
		kept = append(kept, d)
	}
	if len(kept) == 0 {
		return owner, false
	}
	b.vhosts = append(b.vhosts, routing.NewVirtualHost(name, kept, vs, routes))
	return "", true
}

// duplicateHosts records VirtualServices whose virtual host lost to an
// older one, to report each (VirtualService, host) once across ports.
type duplicateHosts map[*virtualService]map[string]string

func (d duplicateHosts) add(v *virtualService, host, owner string) {
	if d[v] == nil {
		d[v] = map[string]string{}
	}
	if _, ok := d[v][host]; !ok {
		d[v][host] = owner
	}
}

func (d duplicateHosts) report(diags *diagSet) {
	for v, hosts := range d {
		for _, h := range sortedKeys(hosts) {
			owner := hosts[h]
			if owner == "" {
				owner = "the service's default route"
			} else {
				owner = "VirtualService " + owner
			}
			diags.warnf(v.res, hostField(v, h), "host %s is already routed by %s on sidecars; Istio keeps only the oldest VirtualService for a host (IST0109), so these routes are ignored for it", h, owner)
		}
	}
}

// hostField is the field path of the spec.hosts entry that resolves to h.
func hostField(v *virtualService, h string) string {
	for i, vh := range v.hosts {
		if vh == h {
			return "spec.hosts[" + strconv.Itoa(i) + "]"
		}
	}
	return "spec.hosts"
}
