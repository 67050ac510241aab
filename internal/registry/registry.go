// Package registry holds the services and endpoints michi routes to. It is
// built from ServiceEntry and WorkloadEntry resources (later also from
// Kubernetes) and is immutable once built.
package registry

import (
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
)

// Port is a service port.
type Port struct {
	Name       string `json:"name"`
	Number     uint32 `json:"number"`
	Protocol   string `json:"protocol"` // upper case; "" when unset
	TargetPort uint32 `json:"targetPort,omitempty"`
}

// Service is one host of a ServiceEntry (a ServiceEntry with several hosts
// yields one Service per host, as in Istio).
type Service struct {
	Hostname     string   `json:"hostname"`
	Namespace    string   `json:"namespace"`
	Ports        []Port   `json:"ports"`
	Addresses    []string `json:"addresses,omitempty"`
	MeshExternal bool     `json:"meshExternal"`
	// Resolution is NONE, STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS.
	Resolution      string      `json:"resolution"`
	ExportTo        []string    `json:"exportTo,omitempty"`
	SubjectAltNames []string    `json:"subjectAltNames,omitempty"`
	Endpoints       []*Endpoint `json:"endpoints"`
	// Source is the ServiceEntry that defined the service.
	Source *config.Resource `json:"-"`
}

// PortByNumber returns the port with the given number.
func (s *Service) PortByNumber(n uint32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Number == n {
			return p, true
		}
	}
	return Port{}, false
}

// Endpoint is one workload instance of a service.
type Endpoint struct {
	// Address is an IP, or a host name for DNS resolution.
	Address string `json:"address"`
	// Ports maps service port names to the workload's port.
	Ports          map[string]uint32 `json:"ports,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Locality       string            `json:"locality,omitempty"`
	Weight         uint32            `json:"weight,omitempty"`
	Network        string            `json:"network,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	// WorkloadEntry is "namespace/name" when the endpoint came from a
	// WorkloadEntry selected by workloadSelector.
	WorkloadEntry string `json:"workloadEntry,omitempty"`
}

// TargetPort returns the port to connect to for service port p: the
// endpoint's per-port mapping first, then the service's targetPort, then
// the port number itself (Istio WorkloadEntry.ports semantics).
func (e *Endpoint) TargetPort(p Port) uint32 {
	if v, ok := e.Ports[p.Name]; ok && v != 0 {
		return v
	}
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Number
}

// Registry is an immutable index of services by host name.
type Registry struct {
	services []*Service
	byHost   map[string][]*Service // oldest first
}

// Build creates the registry from the ServiceEntries and WorkloadEntries
// of set. Short host names are resolved in the ServiceEntry's namespace.
func Build(set *config.Set, domain string) *Registry {
	r := &Registry{byHost: map[string][]*Service{}}
	workloads := set.OfKind(config.KindWorkloadEntry)
	for _, res := range set.OfKind(config.KindServiceEntry) {
		se := res.ServiceEntry()
		if se == nil {
			continue
		}
		ports := make([]Port, 0, len(se.Ports))
		for _, p := range se.Ports {
			ports = append(ports, Port{Name: p.Name, Number: p.Number, Protocol: strings.ToUpper(p.Protocol), TargetPort: p.TargetPort})
		}
		eps := endpointsFor(res, se, workloads)
		for _, h := range se.Hosts {
			svc := &Service{
				Hostname:        config.ResolveHost(h, res.Namespace, domain),
				Namespace:       res.Namespace,
				Ports:           ports,
				Addresses:       se.Addresses,
				MeshExternal:    se.Location != networking.ServiceEntry_MESH_INTERNAL,
				Resolution:      se.Resolution.String(),
				ExportTo:        se.ExportTo,
				SubjectAltNames: se.SubjectAltNames,
				Endpoints:       eps,
				Source:          res,
			}
			// DNS resolution without endpoints resolves the host itself
			// (Istio: "the host is resolved" when it is not a wildcard).
			if len(eps) == 0 && (se.Resolution == networking.ServiceEntry_DNS || se.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN) && !config.IsWildcard(svc.Hostname) {
				svc.Endpoints = []*Endpoint{{Address: svc.Hostname}}
			}
			r.services = append(r.services, svc)
			r.byHost[svc.Hostname] = append(r.byHost[svc.Hostname], svc)
		}
	}
	return r
}

func endpointsFor(res *config.Resource, se *networking.ServiceEntry, workloads []*config.Resource) []*Endpoint {
	var eps []*Endpoint
	for _, we := range se.Endpoints {
		eps = append(eps, fromWorkloadEntry(we, ""))
	}
	if sel := se.GetWorkloadSelector().GetLabels(); sel != nil {
		for _, w := range workloads {
			if w.Namespace != res.Namespace {
				continue
			}
			we := w.WorkloadEntry()
			if we == nil || !LabelsMatch(sel, we.Labels) {
				continue
			}
			eps = append(eps, fromWorkloadEntry(we, w.NamespacedName()))
		}
	}
	return eps
}

func fromWorkloadEntry(we *networking.WorkloadEntry, name string) *Endpoint {
	return &Endpoint{
		Address:        we.Address,
		Ports:          we.Ports,
		Labels:         we.Labels,
		Locality:       we.Locality,
		Weight:         we.Weight,
		Network:        we.Network,
		ServiceAccount: we.ServiceAccount,
		WorkloadEntry:  name,
	}
}

// LabelsMatch reports whether labels has every key=value of selector.
func LabelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Services returns every service, sorted by host name then namespace.
func (r *Registry) Services() []*Service {
	out := append([]*Service(nil), r.services...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Hostname != out[j].Hostname {
			return out[i].Hostname < out[j].Hostname
		}
		return out[i].Namespace < out[j].Namespace
	})
	return out
}

// Lookup returns the service for host as seen by a client in clientNS:
// only services exported to clientNS count; one in the client's own
// namespace wins, otherwise the oldest. It returns nil when none is
// visible.
func (r *Registry) Lookup(host, clientNS string) *Service {
	var first *Service
	for _, s := range r.byHost[host] {
		if !config.ExportedTo(s.ExportTo, s.Namespace, clientNS) {
			continue
		}
		if s.Namespace == clientNS {
			return s
		}
		if first == nil {
			first = s
		}
	}
	return first
}

// LookupAny returns the oldest service for host, ignoring visibility.
func (r *Registry) LookupAny(host string) *Service {
	if ss := r.byHost[host]; len(ss) > 0 {
		return ss[0]
	}
	return nil
}

// Match returns the services, visible from clientNS, whose host name is
// matched by the (possibly wildcard) host pattern: the services a
// VirtualService host or DestinationRule host applies to.
func (r *Registry) Match(pattern, clientNS string) []*Service {
	var out []*Service
	seen := map[string]bool{}
	for _, s := range r.Services() {
		if seen[s.Hostname] || !config.HostMatches(pattern, s.Hostname) {
			continue
		}
		if v := r.Lookup(s.Hostname, clientNS); v != nil {
			seen[s.Hostname] = true
			out = append(out, v)
		}
	}
	return out
}
