package compile

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// serverKind is how a gateway server's traffic is handled.
type serverKind int

const (
	// serverHTTP serves HTTP routes in plaintext.
	serverHTTP serverKind = iota
	// serverHTTPS terminates TLS and serves HTTP routes.
	serverHTTPS
	// serverTLS passes TLS through, routed by SNI.
	serverTLS
	// serverTCP proxies TCP, after terminating TLS for a TLS server that
	// is not in passthrough mode.
	serverTCP
)

// gatewayServer is one server of a Gateway this proxy implements.
type gatewayServer struct {
	gw    *config.Resource
	name  string // "ns/name" of the Gateway
	index int    // in spec.servers
	s     *networking.Server
	kind  serverKind
	hosts []string // lower-cased, namespace prefix kept
}

func (gs *gatewayServer) field() string { return fmt.Sprintf("spec.servers[%d]", gs.index) }

// buildGateway compiles the table of a gateway proxy: its servers, one
// HTTP route configuration per port for HTTP and terminated HTTPS servers
// (servers sharing a port are merged, istio gateway.go
// buildGatewayHTTPRouteConfig), TLS routes for passthrough servers and TCP
// routes for TCP servers.
func (c *compiler) buildGateway(t *routing.Table) {
	servers := c.gatewayServers(t)
	vss := c.gatewayVirtualServices()

	byPort := map[uint32][]*gatewayServer{}
	for _, gs := range servers {
		byPort[gs.s.Port.Number] = append(byPort[gs.s.Port.Number], gs)
	}
	ports := map[uint32]bool{}
	for p := range byPort {
		ports[p] = true
	}
	for _, port := range sortedPorts(ports) {
		var httpServers []*gatewayServer
		sniTaken := map[string]bool{}
		for _, gs := range byPort[port] {
			switch gs.kind {
			case serverHTTP, serverHTTPS:
				httpServers = append(httpServers, gs)
			case serverTLS:
				c.gatewayTLS(t, gs, vss, sniTaken)
			case serverTCP:
				c.gatewayTCP(t, gs, vss)
			}
		}
		if len(httpServers) > 0 {
			t.HTTP[port] = c.gatewayRouteConfig(port, httpServers, vss)
		}
	}
}

// gatewayServers lists the servers of the Gateways the proxy implements:
// those named in Proxy.Gateways and those whose selector matches the
// proxy's labels (an empty selector selects every gateway workload). A
// server whose port is taken by an incompatible server of an older Gateway
// is left out, as Istio does when merging gateways.
func (c *compiler) gatewayServers(t *routing.Table) []*gatewayServer {
	named := map[string]bool{}
	for _, g := range c.opts.Proxy.Gateways {
		named[resolveGatewayName(g, c.opts.Proxy.Namespace)] = true
	}
	var out []*gatewayServer
	portKind := map[uint32]serverKind{}
	for _, r := range c.set.OfKind(config.KindGateway) {
		spec := r.Gateway()
		if spec == nil {
			continue
		}
		if !named[r.NamespacedName()] && !registry.LabelsMatch(spec.Selector, c.opts.Proxy.Labels) {
			continue
		}
		if len(spec.Selector) == 0 && !named[r.NamespacedName()] && len(c.opts.Proxy.Labels) == 0 {
			// A proxy without labels only implements the Gateways it names.
			continue
		}
		for i, s := range spec.Servers {
			if s == nil || s.Port == nil {
				continue
			}
			gs := &gatewayServer{gw: r, name: r.NamespacedName(), index: i, s: s, kind: classifyServer(s)}
			for _, h := range s.Hosts {
				gs.hosts = append(gs.hosts, strings.ToLower(h))
			}
			if k, ok := portKind[s.Port.Number]; ok && !compatibleServers(k, gs.kind) {
				c.diags.warnf(r, gs.field()+".port", "port %d is already used by a %s server; this %s server is ignored, as Istio does when merging gateways",
					s.Port.Number, k, gs.kind)
				continue
			} else if !ok {
				portKind[s.Port.Number] = gs.kind
			}
			out = append(out, gs)
			t.Gateways = append(t.Gateways, gatewayServerInfo(gs))
		}
	}
	return out
}

func (k serverKind) String() string {
	switch k {
	case serverHTTP:
		return "plaintext HTTP"
	case serverHTTPS:
		return "TLS-terminating HTTPS"
	case serverTLS:
		return "TLS passthrough"
	}
	return "TCP"
}

// compatibleServers reports whether servers of kinds a and b can share a
// port: the same kind always can, and terminated HTTPS and passthrough TLS
// servers are told apart by SNI.
func compatibleServers(a, b serverKind) bool {
	if a == b {
		return true
	}
	return (a == serverHTTPS || a == serverTLS) && (b == serverHTTPS || b == serverTLS)
}

// classifyServer decides how a server's traffic is handled from its
// protocol and TLS mode (istio gateway.go buildGatewayListeners).
func classifyServer(s *networking.Server) serverKind {
	proto := strings.ToUpper(s.Port.Protocol)
	passthrough := s.Tls != nil && (s.Tls.Mode == networking.ServerTLSSettings_PASSTHROUGH ||
		s.Tls.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH)
	switch proto {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
		return serverHTTP
	case "HTTPS":
		if s.Tls == nil || passthrough {
			return serverTLS
		}
		return serverHTTPS
	case "TLS":
		if s.Tls == nil || passthrough {
			return serverTLS
		}
		return serverTCP
	}
	return serverTCP
}

// gatewayServerInfo describes a server in the table.
func gatewayServerInfo(gs *gatewayServer) *routing.GatewayServer {
	s := gs.s
	out := &routing.GatewayServer{
		Gateway:  gs.name,
		Port:     s.Port.Number,
		Protocol: strings.ToUpper(s.Port.Protocol),
		Name:     s.Name,
		Hosts:    s.Hosts,
		Bind:     s.Bind,
	}
	if tls := s.Tls; tls != nil {
		out.TLS = &routing.ServerTLS{
			HTTPSRedirect:   tls.HttpsRedirect,
			CertFile:        tls.ServerCertificate,
			KeyFile:         tls.PrivateKey,
			CAFile:          tls.CaCertificates,
			CRLFile:         tls.CaCrl,
			CredentialName:  tls.CredentialName,
			SubjectAltNames: tls.SubjectAltNames,
			CipherSuites:    tls.CipherSuites,
		}
		// The mode only means something where TLS is spoken; a plaintext
		// server's tls block only carries httpsRedirect.
		if gs.kind != serverHTTP {
			out.TLS.Mode = tls.Mode.String()
		}
		if tls.MinProtocolVersion != networking.ServerTLSSettings_TLS_AUTO {
			out.TLS.MinVersion = tls.MinProtocolVersion.String()
		}
		if tls.MaxProtocolVersion != networking.ServerTLSSettings_TLS_AUTO {
			out.TLS.MaxVersion = tls.MaxProtocolVersion.String()
		}
	}
	return out
}

// gatewayVirtualServices are the VirtualServices exported to the proxy's
// namespace that bind to at least one gateway (istio
// PushContext.VirtualServicesForGateway), oldest first.
func (c *compiler) gatewayVirtualServices() []*virtualService {
	var out []*virtualService
	for _, v := range c.vs.roots {
		if config.ExportedTo(v.spec.ExportTo, v.res.Namespace, c.opts.Proxy.Namespace) {
			out = append(out, v)
		}
	}
	return out
}

// serverHostsFor returns the server's hosts a VirtualService in vsNS may
// bind to, without their namespace part (istio host.NamesForNamespace):
// "ns/host" binds VirtualServices in ns only, "./host" those in the
// Gateway's namespace, "*/host" and "host" all.
func (gs *gatewayServer) serverHostsFor(vsNS string) []string {
	var out []string
	for _, h := range gs.hosts {
		if ns, host, ok := strings.Cut(h, "/"); ok {
			if ns == "." {
				ns = gs.gw.Namespace
			}
			if ns != "*" && ns != vsNS {
				continue
			}
			h = host
		}
		out = append(out, h)
	}
	return out
}

// intersectHosts returns, for every pair of a server host and a
// VirtualService host that overlap, the narrower of the two (istio
// host.Names.Intersection), in server host order.
func intersectHosts(server, vs []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(h string) {
		h = strings.ToLower(h)
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, sh := range server {
		for _, vh := range vs {
			switch {
			case config.HostMatches(sh, vh):
				add(vh)
			case config.HostMatches(vh, sh):
				add(sh)
			}
		}
	}
	return out
}

// gatewayVhost accumulates the routes for one host on a gateway port.
type gatewayVhost struct {
	host       string
	routes     []*routing.Route
	vss        []string
	requireTLS bool
}

// gatewayRouteConfig builds the route configuration of an HTTP port of a
// gateway: for every server and every VirtualService bound to its Gateway,
// the hosts both name get the VirtualService's routes. Routes for one host
// from several VirtualServices are concatenated oldest first, then the
// catch-all routes are moved to the end (istio route.SortVHostRoutes).
// httpsRedirect servers mark their hosts RequireTLS. A port without any
// host gets Istio's blackhole virtual host, which answers 404.
func (c *compiler) gatewayRouteConfig(port uint32, servers []*gatewayServer, vss []*virtualService) *routing.RouteConfig {
	vhosts := map[string]*gatewayVhost{}
	var order []string
	get := func(host string) *gatewayVhost {
		vh := vhosts[host]
		if vh == nil {
			vh = &gatewayVhost{host: host}
			vhosts[host] = vh
			order = append(order, host)
		}
		return vh
	}
	type routesKey struct {
		gateway string
		vs      *virtualService
	}
	cache := map[routesKey][]*routing.Route{}
	for _, gs := range servers {
		redirect := gs.s.Tls != nil && gs.s.Tls.HttpsRedirect
		l := listener{port: port, gateway: gs.name, tls: gs.s.Tls != nil}
		for _, v := range vss {
			if !v.boundTo(gs.name) {
				continue
			}
			hosts := intersectHosts(gs.serverHostsFor(v.res.Namespace), v.hosts)
			if len(hosts) == 0 {
				continue
			}
			key := routesKey{gs.name, v}
			routes, ok := cache[key]
			if !ok {
				routes = c.httpRoutes(v, l)
				cache[key] = routes
			}
			if len(routes) == 0 {
				continue
			}
			for _, h := range hosts {
				vh := get(h)
				vh.routes = append(vh.routes, routes...)
				if !slices.Contains(vh.vss, v.name()) {
					vh.vss = append(vh.vss, v.name())
				}
				vh.requireTLS = vh.requireTLS || redirect
			}
		}
		if redirect {
			for _, h := range gs.hosts {
				if _, host, ok := strings.Cut(h, "/"); ok {
					h = host
				}
				get(h).requireTLS = true
			}
		}
	}

	var out []*routing.VirtualHost
	for _, h := range order {
		vh := vhosts[h]
		v := routing.NewVirtualHost(vhostName(h, port), []string{h}, strings.Join(vh.vss, ","), sortCatchAllLast(vh.routes))
		v.RequireTLS = vh.requireTLS
		out = append(out, v)
	}
	if len(out) == 0 {
		out = append(out, routing.NewVirtualHost(vhostName("blackhole", port), []string{"*"}, "", nil))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return routing.NewRouteConfig(port, out)
}

// sortCatchAllLast moves catch-all routes behind the others, keeping the
// relative order within each group (istio route.SortVHostRoutes).
func sortCatchAllLast(routes []*routing.Route) []*routing.Route {
	out := make([]*routing.Route, 0, len(routes))
	var catchAll []*routing.Route
	for _, r := range routes {
		if r.Match.IsCatchAll() {
			catchAll = append(catchAll, r)
		} else {
			out = append(out, r)
		}
	}
	return append(out, catchAll...)
}
