package compile

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/michi-mesh/michi/internal/registry"
)

// vhostName is Istio's virtual host name, "host:port" (util.DomainName).
func vhostName(host string, port uint32) string {
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// serviceDomains lists the Host header values that reach svc from a
// sidecar in proxyNS, as Istio generates them (httproute.go
// generateVirtualHostDomains): the host name, the shorter forms a
// Kubernetes client may use, and the service addresses. Ports are not
// appended since host matching ignores the port. alt are the shorter forms,
// which must not shadow a service that really has that name.
func serviceDomains(svc *registry.Service, proxyNS, clusterDomain string) (domains, alt []string) {
	domains = append(domains, ipv6Compliant(svc.Hostname))
	alt = kubeAltHosts(svc.Hostname, proxyNS, clusterDomain)
	domains = append(domains, alt...)
	for _, a := range svc.Addresses {
		// A CIDR cannot appear in a Host header; 0.0.0.0 means "no VIP".
		if a == "" || a == "0.0.0.0" || strings.Contains(a, "/") {
			continue
		}
		domains = append(domains, ipv6Compliant(a))
	}
	return domains, alt
}

// kubeAltHosts returns the names a client in proxyNS may use for a
// Kubernetes-style host name.svc-namespace.svc.<domain>
// (httproute.go generateAltVirtualHostsForKubernetesService): in the same
// namespace "name", "name.ns.svc" and "name.ns"; elsewhere "name.ns" and
// "name.ns.svc". Other host names have no shorter forms, since expanding
// them could capture another service's name.
func kubeAltHosts(host, proxyNS, clusterDomain string) []string {
	if !strings.HasSuffix(host, ".svc."+clusterDomain) {
		return nil
	}
	ih := strings.Index(host, ".svc.")
	ns := strings.IndexByte(host, '.')
	if ih <= 0 || ns+1 >= len(host) || ns+1 > ih {
		return nil
	}
	if host[ns+1:ih] == proxyNS {
		return []string{host[:ns], host[:ih] + ".svc", host[:ih]}
	}
	return []string{host[:ih], host[:ih] + ".svc"}
}

// ipv6Compliant brackets IPv6 literals, as they appear in Host headers.
func ipv6Compliant(host string) string {
	if strings.Contains(host, ":") {
		if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
			return "[" + host + "]"
		}
	}
	return host
}
