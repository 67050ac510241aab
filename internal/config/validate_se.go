package config

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// Protocols Istio understands in a port's protocol field, upper case
// (istio pkg/config/protocol Parse, which ignores case).
var knownProtocols = []string{
	"HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY",
	"TCP", "TLS", "UDP", "MONGO", "MYSQL", "REDIS",
}

func isKnownProtocol(p string) bool {
	for _, k := range knownProtocols {
		if strings.EqualFold(p, k) {
			return true
		}
	}
	return false
}

func isHTTPProtocol(p string) bool {
	switch strings.ToUpper(p) {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY":
		return true
	}
	return false
}

func isTLSProtocol(p string) bool {
	switch strings.ToUpper(p) {
	case "HTTPS", "TLS":
		return true
	}
	return false
}

// API limits on ServiceEntry lists (service_entry.proto).
const (
	maxServiceEntryHosts     = 256
	maxServiceEntryEndpoints = 4096
)

// serviceEntry checks a ServiceEntry (Istio ValidateServiceEntry).
func (v *validator) serviceEntry(se *networking.ServiceEntry) {
	switch n := len(se.Hosts); {
	case n == 0:
		v.errorf("spec.hosts", "required: at least one host name")
	case n > maxServiceEntryHosts:
		v.errorf("spec.hosts", "%d hosts is too many: at most %d", n, maxServiceEntryHosts)
	}
	for i, h := range se.Hosts {
		p := index("spec.hosts", i)
		if h == "*" {
			v.errorf(p, `"*" is not a valid ServiceEntry host: name the hosts, or use a wildcard such as "*.example.com"`)
			continue
		}
		if err := checkWildcardHost(h); err != nil {
			v.errorf(p, "invalid host %q: %v", h, err)
			continue
		}
		if isPartialWildcard(h) {
			v.warnf(p, "partial wildcard %q: only a whole first label (\"*.\") is a wildcard that Istio supports", h)
		}
	}
	hasCIDR := false
	for i, a := range se.Addresses {
		if err := checkIPOrCIDR(a); err != nil {
			v.errorf(index("spec.addresses", i), "%v", err)
		}
		hasCIDR = hasCIDR || strings.Contains(a, "/")
	}
	if hasCIDR && se.Resolution != networking.ServiceEntry_NONE && se.Resolution != networking.ServiceEntry_STATIC {
		v.errorf("spec.addresses", "CIDR blocks are only allowed with resolution NONE or STATIC, not %s", se.Resolution)
	}

	portNames := v.servicePorts(se.Ports)

	if se.WorkloadSelector != nil {
		if len(se.Endpoints) > 0 {
			v.errorf("spec.workloadSelector", "cannot be combined with endpoints: list endpoints, or select WorkloadEntries, not both")
		}
		if se.Location != networking.ServiceEntry_MESH_INTERNAL {
			v.warnf("spec.workloadSelector", "selects mesh workloads, so it is meant for location MESH_INTERNAL (location is %s)", se.Location)
		}
		v.selector("spec.workloadSelector.labels", se.WorkloadSelector.GetLabels(), true)
	}
	if n := len(se.Endpoints); n > maxServiceEntryEndpoints {
		v.errorf("spec.endpoints", "%d endpoints is too many: at most %d", n, maxServiceEntryEndpoints)
	}
	v.resolution(se, portNames)

	// With plain TCP there is nothing (no Host header, no SNI) to tell
	// several hosts apart, unless the traffic goes to its original
	// destination anyway.
	if se.Resolution != networking.ServiceEntry_NONE && len(se.Hosts) > 1 {
		for i, p := range se.Ports {
			known := p.Protocol == "" || isKnownProtocol(p.Protocol)
			if known && !isHTTPProtocol(p.Protocol) && !isTLSProtocol(p.Protocol) {
				v.errorf(index("spec.ports", i), "a %s port cannot serve several hosts with resolution %s: connections carry no host name; use one ServiceEntry per host", protocolName(p.Protocol), se.Resolution)
				break
			}
		}
	}
	for i, s := range se.SubjectAltNames {
		if s == "" {
			v.errorf(index("spec.subjectAltNames", i), "must not be empty")
		}
	}
	v.exportTo("spec.exportTo", se.ExportTo, true)
}

func protocolName(p string) string {
	if p == "" {
		return "TCP (protocol unset)"
	}
	return strings.ToUpper(p)
}

// servicePorts checks the ports of a ServiceEntry and returns their names.
func (v *validator) servicePorts(ports []*networking.ServicePort) map[string]bool {
	names := map[string]bool{}
	numbers := map[uint32]int{}
	for i, sp := range ports {
		p := index("spec.ports", i)
		v.port(p+".number", sp.Number)
		if j, dup := numbers[sp.Number]; dup {
			v.errorf(p+".number", "duplicate port %d (first at spec.ports[%d])", sp.Number, j)
		} else {
			numbers[sp.Number] = i
		}
		switch {
		case sp.Name == "":
			v.errorf(p+".name", "required: endpoints refer to ports by name")
		case !isDNS1123Label(sp.Name):
			v.errorf(p+".name", "invalid port name %q: %s", sp.Name, dns1123LabelRule)
		case names[sp.Name]:
			v.errorf(p+".name", "duplicate port name %q", sp.Name)
		}
		names[sp.Name] = true
		if sp.Protocol != "" && !isKnownProtocol(sp.Protocol) {
			v.errorf(p+".protocol", "unknown protocol %q: use one of %s%s", sp.Protocol, strings.Join(knownProtocols, ", "), suggest(strings.ToUpper(sp.Protocol), knownProtocols))
		}
		v.optionalPort(p+".targetPort", sp.TargetPort)
	}
	return names
}

// resolution checks what each resolution mode needs from hosts and
// endpoints.
func (v *validator) resolution(se *networking.ServiceEntry, portNames map[string]bool) {
	switch se.Resolution {
	case networking.ServiceEntry_NONE:
		if len(se.Endpoints) > 0 {
			v.errorf("spec.endpoints", "endpoints are not used with resolution NONE, which forwards to the original destination; use resolution STATIC or DNS")
		}
		if se.WorkloadSelector != nil {
			v.warnf("spec.workloadSelector", "has no effect with resolution NONE, which forwards to the original destination")
		}
	case networking.ServiceEntry_STATIC:
		if len(se.Endpoints) == 0 && se.WorkloadSelector == nil {
			v.warnf("spec.resolution", "STATIC with no endpoints and no workloadSelector: the service has no endpoints, so requests to it fail with 503")
		}
		for i, ep := range se.Endpoints {
			v.endpoint(index("spec.endpoints", i), ep, portNames, false)
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.Endpoints) == 0 {
			for i, h := range se.Hosts {
				if h != "*" && strings.Contains(h, "*") { // "*" alone is already an error
					v.errorf(index("spec.hosts", i), "resolution %s without endpoints resolves the hosts themselves, so %q cannot be a wildcard; add endpoints or use DYNAMIC_DNS", se.Resolution, h)
				}
			}
		}
		if se.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.Endpoints) > 1 {
			v.errorf("spec.endpoints", "DNS_ROUND_ROBIN allows at most one endpoint, found %d; use DNS for several", len(se.Endpoints))
		}
		for i, ep := range se.Endpoints {
			v.endpoint(index("spec.endpoints", i), ep, portNames, true)
		}
	case networking.ServiceEntry_DYNAMIC_DNS:
		// Resolved per request from the Host header or SNI.
		if len(se.Endpoints) > 0 {
			v.errorf("spec.endpoints", "DYNAMIC_DNS resolves each request's host name, so endpoints cannot be set")
		}
		for i, h := range se.Hosts {
			if !strings.HasPrefix(h, "*") {
				v.errorf(index("spec.hosts", i), "DYNAMIC_DNS needs wildcard hosts such as \"*.example.com\", found %q", h)
			}
		}
	}
}

// endpoint checks one ServiceEntry endpoint. portNames are the service's
// port names, which the endpoint's ports map refers to.
func (v *validator) endpoint(p string, we *networking.WorkloadEntry, portNames map[string]bool, allowFQDN bool) {
	v.workloadAddress(p, we, allowFQDN)
	for _, name := range sortedKeys(we.Ports) {
		if !portNames[name] {
			v.errorf(mapKey(p+".ports", name), "no service port is named %q; the keys of ports are spec.ports names", name)
		}
	}
	if strings.HasPrefix(we.Address, unixPrefix) && len(portNames) != 1 {
		v.errorf(p+".address", "a unix socket endpoint needs a ServiceEntry with exactly one port, found %d", len(portNames))
	}
}

const unixPrefix = "unix://"

// workloadEntry checks a WorkloadEntry (Istio ValidateWorkloadEntry).
func (v *validator) workloadEntry(we *networking.WorkloadEntry) {
	v.workloadAddress("spec", we, true)
}

// workloadAddress checks the fields a WorkloadEntry and a ServiceEntry
// endpoint share (Istio validateWorkloadEntry). allowFQDN says whether the
// address may be a host name: yes for DNS resolution and standalone
// WorkloadEntries, no for STATIC.
func (v *validator) workloadAddress(p string, we *networking.WorkloadEntry, allowFQDN bool) {
	addr := we.Address
	switch {
	case addr == "":
		if we.Network == "" {
			v.errorf(p+".address", "required: an IP address, a host name, or unix:///path (or set network for an endpoint reached through a gateway)")
		}
	case strings.HasPrefix(addr, unixPrefix):
		if err := checkUnixPath(strings.TrimPrefix(addr, unixPrefix)); err != nil {
			v.errorf(p+".address", "%v", err)
		}
		if len(we.Ports) > 0 {
			v.errorf(p+".ports", "a unix socket endpoint has no ports")
		}
	case isIP(addr):
	case !allowFQDN:
		v.errorf(p+".address", "%q is not an IP address: resolution STATIC needs IP addresses; use resolution DNS for host names", addr)
	default:
		if err := checkFQDN(addr); err != nil {
			v.errorf(p+".address", "%q is neither an IP address nor a valid host name: %v", addr, err)
		}
	}
	for _, name := range sortedKeys(we.Ports) {
		kp := mapKey(p+".ports", name)
		if !isDNS1123Label(name) {
			v.errorf(kp, "invalid port name %q: %s", name, dns1123LabelRule)
		}
		v.port(kp, we.Ports[name])
	}
	v.labels(p+".labels", we.Labels)
	if we.Locality != "" {
		for _, part := range strings.Split(we.Locality, "/") {
			if part == "" {
				v.warnf(p+".locality", "locality %q has an empty part; write region/zone/subzone", we.Locality)
				break
			}
		}
	}
	if we.ServiceAccount != "" && !isDNS1123Subdomain(we.ServiceAccount) {
		v.errorf(p+".serviceAccount", "invalid service account name %q: %s", we.ServiceAccount, dns1123SubdomainRule)
	}
}
