package config

import (
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// Kind is one of the Istio networking kinds michi understands.
type Kind string

// The kinds michi decodes. Everything else found in a manifest is skipped.
const (
	KindVirtualService  Kind = "VirtualService"
	KindDestinationRule Kind = "DestinationRule"
	KindServiceEntry    Kind = "ServiceEntry"
	KindWorkloadEntry   Kind = "WorkloadEntry"
	KindGateway         Kind = "Gateway"
)

// Group is the API group of every kind michi decodes.
const Group = "networking.istio.io"

// Versions are the API versions of Group that michi accepts. v1 and v1beta1
// alias the v1alpha3 messages, so all three decode into the same types.
var Versions = []string{"v1", "v1beta1", "v1alpha3"}

// Position is a place in a source file.
type Position struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

// Resource is one decoded Istio object. It is immutable once Load returns.
type Resource struct {
	Kind              Kind
	APIVersion        string
	Name              string
	Namespace         string
	Labels            map[string]string
	Annotations       map[string]string
	CreationTimestamp time.Time // zero when the manifest does not set it
	Pos               Position  // where the object starts
	Order             int       // position in load order, for stable tie-breaks

	// Spec is *networking.VirtualService, *networking.DestinationRule,
	// *networking.ServiceEntry, *networking.WorkloadEntry or *networking.Gateway.
	Spec proto.Message

	// lines maps field paths to lines counted from the start of the
	// YAML document the resource was decoded from; lineBase is that
	// document's offset in its file. Decoded documents are cached and
	// reused at other offsets (see DocCache), so lines are relative.
	lines    map[string]int
	lineBase int
	// lazy finds lines again when lines was dropped to save memory.
	lazy *lazyLines
}

// Key is "Kind namespace/name", the way resources are named in messages.
func (r *Resource) Key() string {
	return string(r.Kind) + " " + r.Namespace + "/" + r.Name
}

// NamespacedName is "namespace/name".
func (r *Resource) NamespacedName() string { return r.Namespace + "/" + r.Name }

// Line returns the source line of the field at path (such as
// "spec.http[1].route[0].weight"), or of its closest ancestor that has one.
func (r *Resource) Line(path string) int {
	lines := r.lines
	if lines == nil && r.lazy != nil {
		lines = r.lazy.get()
	}
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := lines[p]; ok {
			return r.lineBase + l
		}
	}
	return r.Pos.Line
}

// parentPath drops the last element of a field path: "a.b[1]" -> "a.b",
// "a.b" -> "a", "a" -> "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return ""
}

// Diagnostic builds a finding about this resource at field.
func (r *Resource) Diagnostic(sev Severity, field, msg string) Diagnostic {
	return Diagnostic{
		File:      r.Pos.File,
		Line:      r.Line(field),
		Kind:      string(r.Kind),
		Namespace: r.Namespace,
		Name:      r.Name,
		Field:     field,
		Severity:  sev,
		Message:   msg,
	}
}

// VirtualService returns the spec, or nil when r is another kind.
func (r *Resource) VirtualService() *networking.VirtualService {
	v, _ := r.Spec.(*networking.VirtualService)
	return v
}

// DestinationRule returns the spec, or nil when r is another kind.
func (r *Resource) DestinationRule() *networking.DestinationRule {
	v, _ := r.Spec.(*networking.DestinationRule)
	return v
}

// ServiceEntry returns the spec, or nil when r is another kind.
func (r *Resource) ServiceEntry() *networking.ServiceEntry {
	v, _ := r.Spec.(*networking.ServiceEntry)
	return v
}

// WorkloadEntry returns the spec, or nil when r is another kind.
func (r *Resource) WorkloadEntry() *networking.WorkloadEntry {
	v, _ := r.Spec.(*networking.WorkloadEntry)
	return v
}

// Gateway returns the spec, or nil when r is another kind.
func (r *Resource) Gateway() *networking.Gateway {
	v, _ := r.Spec.(*networking.Gateway)
	return v
}

// OlderThan orders resources the way Istio does where it orders by age:
// creation timestamp first, then name and namespace as Istio's tie-break
// (pilot/pkg/model/config.go sortConfigByCreationTime), and finally load
// order when nothing else distinguishes them.
func (r *Resource) OlderThan(o *Resource) bool {
	if !r.CreationTimestamp.Equal(o.CreationTimestamp) {
		return r.CreationTimestamp.Before(o.CreationTimestamp)
	}
	if r.CreationTimestamp.IsZero() {
		// No timestamps: the file order is the only order the user gave.
		return r.Order < o.Order
	}
	if r.Name != o.Name {
		return r.Name < o.Name
	}
	if r.Namespace != o.Namespace {
		return r.Namespace < o.Namespace
	}
	return r.Order < o.Order
}

// Set is a full configuration: every resource from every source. Sources
// always emit whole sets, never deltas.
type Set struct {
	Resources []*Resource // load order
}

// OfKind returns the resources of one kind, oldest first.
func (s *Set) OfKind(k Kind) []*Resource {
	var out []*Resource
	for _, r := range s.Resources {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].OlderThan(out[j]) })
	return out
}

// Find returns the resource of kind k named namespace/name, or nil.
func (s *Set) Find(k Kind, namespace, name string) *Resource {
	for _, r := range s.Resources {
		if r.Kind == k && r.Namespace == namespace && r.Name == name {
			return r
		}
	}
	return nil
}
