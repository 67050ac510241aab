package config

import (
	"net/netip"
	"strings"
)

// DefaultClusterDomain is Kubernetes' default DNS domain.
const DefaultClusterDomain = "cluster.local"

// ResolveHost turns a host as written in a resource into the name Istio
// uses for it: a short name (no dots) is a Kubernetes service in the
// namespace of the resource that names it, so "reviews" written in
// namespace "foo" is "reviews.foo.svc.cluster.local"
// (istio pkg/config/host ResolveShortnameToFQDN). Names with dots, "*",
// wildcards and IPs are kept as written, lower-cased.
func ResolveHost(host, namespace, domain string) string {
	if host == "" || host == "*" {
		return host
	}
	host = strings.ToLower(host)
	if strings.Contains(host, ".") || strings.HasPrefix(host, "*") {
		return host
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	if domain == "" {
		domain = DefaultClusterDomain
	}
	return host + "." + namespace + ".svc." + domain
}

// IsWildcard reports whether host is "*" or "*.suffix".
func IsWildcard(host string) bool { return strings.HasPrefix(host, "*") }

// HostMatches reports whether the concrete or wildcard host a is matched by
// pattern p: equal names, or p = "*.example.com" and a ends in
// ".example.com" (a may itself be a narrower wildcard), or p = "*".
func HostMatches(p, a string) bool {
	if p == a || p == "*" {
		return true
	}
	if strings.HasPrefix(p, "*") {
		suffix := p[1:] // ".example.com"
		if strings.HasPrefix(a, "*") {
			return strings.HasSuffix(a[1:], suffix)
		}
		return strings.HasSuffix(a, suffix)
	}
	return false
}

// HostsOverlap reports whether two (possibly wildcard) hosts can name the
// same server.
func HostsOverlap(a, b string) bool { return HostMatches(a, b) || HostMatches(b, a) }

// ExportedTo reports whether a resource in namespace ns with the given
// exportTo list is visible to a client in clientNS. An empty list means
// the mesh default, "*" (istio pkg/config/mesh DefaultMeshConfig).
func ExportedTo(exportTo []string, ns, clientNS string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if ns == clientNS {
				return true
			}
		case "~":
			// Exported nowhere.
		default:
			if e == clientNS {
				return true
			}
		}
	}
	return false
}
