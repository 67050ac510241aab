package routing

import (
	"sort"
	"strings"
)

// Table is a compiled routing snapshot for one proxy. It is plain data and
// immutable once published: readers load it once per request and never
// lock. Nothing may modify a Table, or anything it points to, after it has
// been handed to the engine.
type Table struct {
	// Version identifies the configuration the table was compiled from.
	Version string `json:"version"`
	Proxy   Proxy  `json:"proxy"`
	// OutboundPolicy is what happens to requests for hosts no route
	// configuration knows.
	OutboundPolicy OutboundPolicy `json:"outboundPolicy"`
	// HTTP holds one route configuration per port, as Envoy's RDS keys
	// outbound routes by port ("9080") on a sidecar and by server port on a
	// gateway.
	HTTP map[uint32]*RouteConfig `json:"http"`
	// Default, when set, serves every port HTTP has no configuration for;
	// an inbound listener uses it to send everything to the local app.
	Default *RouteConfig `json:"default,omitempty"`
	// TCP and TLS hold the layer-4 routes per port.
	TCP map[uint32][]*TCPRoute `json:"tcp,omitempty"`
	TLS map[uint32][]*TLSRoute `json:"tls,omitempty"`
	// Clusters are keyed by name, outbound|port|subset|host.
	Clusters map[string]*Cluster `json:"clusters"`
	// Gateways lists the gateway servers this proxy serves (role gateway).
	Gateways []*GatewayServer `json:"gateways,omitempty"`
}

// Role is what kind of proxy a table is for.
type Role string

// Proxy roles.
const (
	RoleMesh    Role = "mesh"    // a sidecar's outbound side
	RoleGateway Role = "gateway" // an ingress or egress gateway
)

// Proxy is the identity a table was compiled for. Config-time match
// conditions (sourceLabels, sourceNamespace, gateways) were evaluated
// against it.
type Proxy struct {
	Role      Role              `json:"role"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Gateways are the Gateway resources ("ns/name") this proxy
	// implements, for role gateway.
	Gateways []string `json:"gateways,omitempty"`
	Locality string   `json:"locality,omitempty"`
}

// OutboundPolicy is Istio's outboundTrafficPolicy.mode.
type OutboundPolicy string

// Outbound policies. AllowAny passes unknown hosts through to their own
// address; RegistryOnly answers 502 (Istio's BlackHoleCluster).
const (
	AllowAny     OutboundPolicy = "ALLOW_ANY"
	RegistryOnly OutboundPolicy = "REGISTRY_ONLY"
)

// Passthrough and blackhole cluster names, as Istio names them.
const (
	PassthroughCluster = "PassthroughCluster"
	BlackHoleCluster   = "BlackHoleCluster"
)

// GatewayServer is one server of a Gateway bound to this proxy.
type GatewayServer struct {
	Gateway  string   `json:"gateway"` // ns/name
	Port     uint32   `json:"port"`
	Protocol string   `json:"protocol"`
	Name     string   `json:"name,omitempty"`
	Hosts    []string `json:"hosts"`
	Bind     string   `json:"bind,omitempty"`
	// TLS is the server's TLS settings, nil for plaintext.
	TLS *ServerTLS `json:"tls,omitempty"`
}

// ServerTLS is a gateway server's TLS settings.
type ServerTLS struct {
	Mode            string   `json:"mode"`
	HTTPSRedirect   bool     `json:"httpsRedirect,omitempty"`
	CertFile        string   `json:"certFile,omitempty"`
	KeyFile         string   `json:"keyFile,omitempty"`
	CAFile          string   `json:"caFile,omitempty"`
	CRLFile         string   `json:"crlFile,omitempty"`
	CredentialName  string   `json:"credentialName,omitempty"`
	SubjectAltNames []string `json:"subjectAltNames,omitempty"`
	MinVersion      string   `json:"minVersion,omitempty"`
	MaxVersion      string   `json:"maxVersion,omitempty"`
	CipherSuites    []string `json:"cipherSuites,omitempty"`
}

// RouteConfig is the set of virtual hosts reachable on one port.
type RouteConfig struct {
	Port         uint32         `json:"port"`
	VirtualHosts []*VirtualHost `json:"virtualHosts"`

	exact    map[string]*VirtualHost
	suffixes []suffixHost // longest suffix first
	any      *VirtualHost
}

type suffixHost struct {
	suffix string // ".example.com" for "*.example.com"
	vh     *VirtualHost
}

// NewRouteConfig indexes the virtual hosts' domains for Lookup. When two
// virtual hosts claim one domain the first keeps it, as Envoy rejects
// duplicates and Istio drops the later one.
func NewRouteConfig(port uint32, vhosts []*VirtualHost) *RouteConfig {
	rc := &RouteConfig{Port: port, VirtualHosts: vhosts, exact: map[string]*VirtualHost{}}
	seenSuffix := map[string]bool{}
	for _, vh := range vhosts {
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if rc.any == nil {
					rc.any = vh
				}
			case strings.HasPrefix(d, "*"):
				if !seenSuffix[d[1:]] {
					seenSuffix[d[1:]] = true
					rc.suffixes = append(rc.suffixes, suffixHost{suffix: d[1:], vh: vh})
				}
			default:
				if _, dup := rc.exact[d]; !dup {
					rc.exact[d] = vh
				}
			}
		}
	}
	sort.SliceStable(rc.suffixes, func(i, j int) bool { return len(rc.suffixes[i].suffix) > len(rc.suffixes[j].suffix) })
	return rc
}

// Lookup finds the virtual host for a Host or :authority value, ignoring
// any port (Istio sets IgnorePortInHostMatching). Envoy's order applies:
// exact domains, then the longest wildcard suffix, then "*".
func (rc *RouteConfig) Lookup(host string) *VirtualHost {
	host = StripPort(host)
	host = lowerASCII(host)
	if vh, ok := rc.exact[host]; ok {
		return vh
	}
	for i := range rc.suffixes {
		s := &rc.suffixes[i]
		if len(host) > len(s.suffix) && strings.HasSuffix(host, s.suffix) {
			return s.vh
		}
	}
	return rc.any
}

// StripPort removes a trailing :port from a host, leaving IPv6 literals
// intact.
func StripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if strings.IndexByte(host, ']') > i {
			return host // [::1] without port
		}
		if strings.HasPrefix(host, "[") {
			return host[1 : i-1]
		}
		if strings.IndexByte(host[:i], ':') >= 0 {
			return host // bare IPv6 literal
		}
		return host[:i]
	}
	return host
}

// lowerASCII lower-cases s, allocating only when s has upper-case letters.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// VirtualHost is the routes for a set of domains on one port.
type VirtualHost struct {
	// Name is "host:port", Istio's virtual host name.
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	// VirtualService is "namespace/name", or "" when the host has no
	// VirtualService and gets the service's default route.
	VirtualService string   `json:"virtualService,omitempty"`
	Routes         []*Route `json:"routes"`
	// RequireTLS is set for the hosts of a gateway server with
	// tls.httpsRedirect: a plain-HTTP request is answered with a 301 to
	// https before any route is consulted (Envoy VirtualHost.require_tls
	// ALL, istio gateway.go).
	RequireTLS bool `json:"requireTLS,omitempty"`

	index *routeIndex
}

// NewVirtualHost builds a virtual host and indexes its routes so that
// matching does not scan every route.
func NewVirtualHost(name string, domains []string, vs string, routes []*Route) *VirtualHost {
	vh := &VirtualHost{Name: name, Domains: domains, VirtualService: vs, Routes: routes}
	vh.index = newRouteIndex(routes)
	return vh
}

// Match returns the first route whose match accepts r, and its index, or
// (nil, -1) when none does: Envoy answers 404 NR.
func (vh *VirtualHost) Match(r *Request) (*Route, int) {
	if vh.index == nil {
		for i, rt := range vh.Routes {
			if rt.Match.Matches(r) {
				return rt, i
			}
		}
		return nil, -1
	}
	i := vh.index.first(vh.Routes, r)
	if i < 0 {
		return nil, -1
	}
	return vh.Routes[i], i
}
