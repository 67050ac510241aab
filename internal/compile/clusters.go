package compile

import (
	"net"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// tlsModeLabel marks a workload whose proxy accepts Istio mutual TLS; its
// value "istio" turns on auto mTLS towards it.
const tlsModeLabel = "security.istio.io/tlsMode"

// buildClusters returns every cluster of every service visible to the
// proxy: outbound|port||host for each service port and
// outbound|port|subset|host for each subset, with endpoints selected by
// subset labels and the merged traffic policy with defaults filled in.
func buildClusters(reg *registry.Registry, drs *destinationRules, opts Options) (map[string]*routing.Cluster, config.Diagnostics) {
	b := clusterBuilder{sidecar: opts.Proxy.Role != routing.RoleGateway, reported: map[string]bool{}}
	out := map[string]*routing.Cluster{}
	for _, svc := range reg.Services() {
		// Of several services claiming one host the proxy sees one.
		if reg.Lookup(svc.Hostname, opts.Proxy.Namespace) != svc {
			continue
		}
		rule := drs.lookup(svc.Hostname, svc.Namespace)
		for _, port := range svc.Ports {
			protocol := portProtocol(port)
			// Envoy cannot proxy UDP; Istio builds no cluster for it.
			if protocol == "UDP" {
				continue
			}
			add := func(c *routing.Cluster) {
				// The first of clusters sharing a name is kept, as Istio's
				// normalizeClusters does.
				if c != nil && out[c.Name] == nil {
					out[c.Name] = c
				}
			}
			add(b.build(svc, port, protocol, rule, nil))
			if rule == nil {
				continue
			}
			for _, ss := range rule.subsets {
				add(b.build(svc, port, protocol, rule, ss))
			}
		}
	}
	return out, b.diags
}

// clusterBuilder builds the clusters of one proxy and collects what it
// has to report about them, once per cause.
type clusterBuilder struct {
	sidecar  bool
	diags    config.Diagnostics
	reported map[string]bool
}

// build builds the cluster for one service port, narrowed to subset when
// it is not nil. It returns nil when Istio would build no cluster: a DNS
// cluster with no endpoint to resolve.
func (b *clusterBuilder) build(svc *registry.Service, port registry.Port, protocol string, rule *mergedRule, subset *networking.Subset) *routing.Cluster {
	var rulePolicy, subsetPolicy *networking.TrafficPolicy
	if rule != nil {
		rulePolicy = rule.policy
	}
	if subset != nil {
		subsetPolicy = subset.GetTrafficPolicy()
	}
	tp := clusterTrafficPolicy(rulePolicy, subsetPolicy, port.Number)

	discovery := discoveryFor(svc.Resolution)
	// PASSTHROUGH load balancing turns any cluster into an
	// original-destination one (Istio applyLoadBalancer).
	if tp.GetLoadBalancer().GetSimple() == networking.LoadBalancerSettings_PASSTHROUGH {
		discovery = routing.DiscoveryOriginalDst
	}
	endpoints := []routing.Endpoint{}
	if discovery != routing.DiscoveryOriginalDst {
		endpoints = clusterEndpoints(svc, port, subset.GetLabels())
	}
	if len(endpoints) == 0 && (discovery == routing.DiscoveryDNS || discovery == routing.DiscoveryLogicalDNS) {
		return nil
	}

	c := &routing.Cluster{
		Name:            routing.ClusterName(port.Number, subset.GetName(), svc.Hostname),
		Host:            svc.Hostname,
		Port:            port.Number,
		Subset:          subset.GetName(),
		Namespace:       svc.Namespace,
		Protocol:        protocol,
		Discovery:       discovery,
		MeshExternal:    svc.MeshExternal,
		SubjectAltNames: append([]string(nil), svc.SubjectAltNames...),
		Endpoints:       endpoints,
		Policy:          compilePolicy(tp, discovery),
	}
	if rule != nil {
		c.DestinationRule = rule.source()
		// Tunneling is read straight from the rule, never from port-level
		// settings, and a subset cluster tunnels only if the subset says
		// so (Istio tunnelingconfig.Apply).
		if subset != nil {
			c.Policy.Tunnel = compileTunnel(subsetPolicy.GetTunnel())
		} else {
			c.Policy.Tunnel = compileTunnel(rulePolicy.GetTunnel())
		}
		if b.sidecar && sidecarDropsTLS(tp.GetTls(), rule) {
			c.Policy.TLS = &routing.ClientTLS{Mode: routing.TLSDisable}
			b.reportDroppedTLS(rule, tp.GetTls())
		}
	}
	if c.Policy.TLS == nil && autoMTLS(svc, endpoints) {
		c.Policy.TLS = &routing.ClientTLS{Mode: routing.TLSIstioMutual, Auto: true}
	}
	return c
}

// configMapCredential prefixes a credentialName that names a ConfigMap,
// which any proxy may read.
const configMapCredential = "configmap://"

// sidecarDropsTLS reports whether a sidecar gets no TLS at all for t:
// Istio will not hand a secret named by credentialName to every sidecar a
// rule without a workload selector reaches, so it builds no TLS context
// for SIMPLE or MUTUAL and the sidecar sends plaintext
// (cluster_tls.go buildUpstreamClusterTLSContext).
func sidecarDropsTLS(t *networking.ClientTLSSettings, rule *mergedRule) bool {
	if t.GetCredentialName() == "" || strings.HasPrefix(t.GetCredentialName(), configMapCredential) || rule.hasSelector {
		return false
	}
	return t.GetMode() == networking.ClientTLSSettings_SIMPLE || t.GetMode() == networking.ClientTLSSettings_MUTUAL
}

// reportDroppedTLS warns, once, at the tls block a sidecar cannot use.
func (b *clusterBuilder) reportDroppedTLS(rule *mergedRule, t *networking.ClientTLSSettings) {
	for _, res := range rule.from {
		forEachTrafficPolicy(res.DestinationRule(), func(path string, _ *networking.LoadBalancerSettings, tls *networking.ClientTLSSettings, _ *networking.TrafficPolicy_RetryBudget) {
			key := res.NamespacedName() + "\x00" + path
			if tls != t || b.reported[key] {
				return
			}
			b.reported[key] = true
			b.diags = append(b.diags, res.Diagnostic(config.Warning, path+".tls.credentialName",
				"a sidecar gets no TLS from a rule without workloadSelector whose tls names a credentialName: Istio sends this traffic in plaintext; add a workloadSelector or use certificate files"))
		})
	}
}

// autoMTLS reports whether auto mTLS (Istio's default enableAutoMtls)
// applies when no TLS policy is set: the service is in the mesh and every
// endpoint is a workload whose proxy accepts Istio mutual TLS. Istio
// decides per endpoint; a cluster with a mix stays plaintext here, which a
// mesh workload in Istio's default PERMISSIVE mode accepts.
func autoMTLS(svc *registry.Service, endpoints []routing.Endpoint) bool {
	if svc.MeshExternal || len(endpoints) == 0 {
		return false
	}
	for _, ep := range endpoints {
		if ep.TLSMode != "istio" {
			return false
		}
	}
	return true
}

// discoveryFor maps ServiceEntry resolution to the cluster discovery type
// Istio uses (cluster.go convertResolution).
func discoveryFor(resolution string) routing.Discovery {
	switch resolution {
	case networking.ServiceEntry_STATIC.String():
		return routing.DiscoveryStatic
	case networking.ServiceEntry_DNS.String():
		return routing.DiscoveryDNS
	case networking.ServiceEntry_DNS_ROUND_ROBIN.String():
		return routing.DiscoveryLogicalDNS
	default:
		// NONE forwards to the address the client dialled; DYNAMIC_DNS
		// resolves the request's own host (Envoy's dynamic forward proxy),
		// which for michi is the same: the destination comes from the
		// request, not from the registry.
		return routing.DiscoveryOriginalDst
	}
}

// clusterEndpoints returns the service's endpoints whose labels carry
// every subset label, addressed at their port for p.
func clusterEndpoints(svc *registry.Service, p registry.Port, subsetLabels map[string]string) []routing.Endpoint {
	out := []routing.Endpoint{}
	for _, ep := range svc.Endpoints {
		if !registry.LabelsMatch(subsetLabels, ep.Labels) {
			continue
		}
		weight := ep.Weight
		if weight == 0 {
			weight = 1
		}
		out = append(out, routing.Endpoint{
			Address:        endpointAddress(ep, p),
			Labels:         ep.Labels,
			Locality:       ep.Locality,
			Weight:         weight,
			Network:        ep.Network,
			ServiceAccount: ep.ServiceAccount,
			TLSMode:        ep.Labels[tlsModeLabel],
		})
	}
	return out
}

// endpointAddress is "ip:port" or "host:port"; a Unix socket address
// (unix:///path, unix://@abstract) has no port.
func endpointAddress(ep *registry.Endpoint, p registry.Port) string {
	if strings.HasPrefix(ep.Address, "unix://") {
		return ep.Address
	}
	return net.JoinHostPort(ep.Address, strconv.FormatUint(uint64(ep.TargetPort(p)), 10))
}
