package config

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
)

// notInValidSet are the fields testdata/valid deliberately leaves out,
// because setting them always produces a finding. Each is exercised by a
// file in testdata/invalid instead.
var notInValidSet = map[protoreflect.FullName]string{
	"istio.networking.v1alpha3.HTTPRoute.mirror_percent":                                "deprecated (vs-mirror)",
	"istio.networking.v1alpha3.HTTPFaultInjection.Delay.percent":                        "deprecated (vs-fault)",
	"istio.networking.v1alpha3.HTTPFaultInjection.Delay.exponential_delay":              "not supported (vs-fault)",
	"istio.networking.v1alpha3.HTTPFaultInjection.Abort.http2_error":                    "not supported (vs-fault)",
	"istio.networking.v1alpha3.CorsPolicy.allow_origin":                                 "deprecated (vs-cors)",
	"istio.networking.v1alpha3.OutlierDetection.consecutive_errors":                     "deprecated (dr-outlier)",
	"istio.networking.v1alpha3.LoadBalancerSettings.ConsistentHashLB.minimum_ring_size": "deprecated (dr-lb)",
	"istio.networking.v1alpha3.LoadBalancerSettings.warmup_duration_secs":               "deprecated (dr-lb)",
	"istio.networking.v1alpha3.TrafficPolicy.tunnel":                                    "not supported by michi (dr-subsets)",
	"istio.networking.v1alpha3.TrafficPolicy.proxy_protocol":                            "not supported by michi (dr-subsets)",
	"istio.networking.v1alpha3.TrafficPolicy.TunnelSettings.protocol":                   "not supported by michi (dr-subsets)",
	"istio.networking.v1alpha3.TrafficPolicy.TunnelSettings.target_host":                "not supported by michi (dr-subsets)",
	"istio.networking.v1alpha3.TrafficPolicy.TunnelSettings.target_port":                "not supported by michi (dr-subsets)",
	"istio.networking.v1alpha3.TrafficPolicy.ProxyProtocol.version":                     "not supported by michi (dr-subsets)",
	"istio.networking.v1alpha3.Port.target_port":                                        "has no effect on a Gateway (gateway)",
	"istio.networking.v1alpha3.Server.default_endpoint":                                 "not implemented by Istio (gateway)",
}

// TestValidConfigsCoverEveryField checks that testdata/valid sets every
// field of every kind at least once (each member of a oneof counts
// separately), so that TestValidConfigs really shows that a correct use of
// each field passes.
func TestValidConfigsCoverEveryField(t *testing.T) {
	inputs, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, diags := Load(inputs, LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("Load(testdata/valid) errors:\n%s", render(diags.Errors()))
	}
	seen := map[protoreflect.FullName]bool{}
	for _, r := range set.Resources {
		markSet(r.Spec.ProtoReflect(), seen)
	}
	all := map[protoreflect.FullName]bool{}
	for _, m := range []protoreflect.ProtoMessage{
		&networking.VirtualService{}, &networking.DestinationRule{}, &networking.ServiceEntry{},
		&networking.WorkloadEntry{}, &networking.Gateway{},
	} {
		reachableFields(m.ProtoReflect().Descriptor(), all, map[protoreflect.FullName]bool{})
	}
	var missing []string
	for f := range all {
		if !seen[f] && notInValidSet[f] == "" {
			missing = append(missing, string(f))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("testdata/valid never sets %d fields:\n%s", len(missing), strings.Join(missing, "\n"))
	}
	for f := range notInValidSet {
		if !all[f] {
			t.Errorf("notInValidSet names %s, which is not a field of any kind", f)
		}
	}
}

func markSet(m protoreflect.Message, seen map[protoreflect.FullName]bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		seen[fd.FullName()] = true
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					markSet(mv.Message(), seen)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := 0; i < v.List().Len(); i++ {
					markSet(v.List().Get(i).Message(), seen)
				}
			}
		case fd.Message() != nil:
			markSet(v.Message(), seen)
		}
		return true
	})
}

// reachableFields collects the fields of md and of every message below it,
// treating the google.protobuf well-known types as scalars.
func reachableFields(md protoreflect.MessageDescriptor, out, visited map[protoreflect.FullName]bool) {
	if visited[md.FullName()] || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return
	}
	visited[md.FullName()] = true
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		fd := fs.Get(i)
		out[fd.FullName()] = true
		sub := fd.Message()
		if fd.IsMap() {
			sub = fd.MapValue().Message()
		}
		if sub != nil {
			reachableFields(sub, out, visited)
		}
	}
}
