package config

import (
	"math"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// ValidateOptions tunes per-resource validation.
type ValidateOptions struct {
	// ClusterDomain is used when resolving short host names.
	ClusterDomain string
}

// Validate checks every resource on its own, as Istio's admission webhook
// does (istio pkg/config/validation), plus what Istio accepts but silently
// drops or ignores, which it reports as warnings that say what happens.
// Findings carry the file, line, resource and field path. Validate never
// stops at the first problem: every finding is returned, in no particular
// order (callers sort with Diagnostics.Sort).
//
// Checks that need more than one resource (a subset missing from a
// DestinationRule, an unknown gateway, a delegate that does not exist) are
// compile.Analyze's job, not Validate's.
func Validate(set *Set, opts ValidateOptions) Diagnostics {
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = DefaultClusterDomain
	}
	var diags Diagnostics
	for _, r := range set.Resources {
		v := &validator{res: r, rep: NewReporter(r, &diags), opts: opts}
		v.metadata()
		switch spec := r.Spec.(type) {
		case *networking.VirtualService:
			v.virtualService(spec)
		case *networking.DestinationRule:
			v.destinationRule(spec)
		case *networking.ServiceEntry:
			v.serviceEntry(spec)
		case *networking.WorkloadEntry:
			v.workloadEntry(spec)
		case *networking.Gateway:
			v.gateway(spec)
		}
	}
	return diags
}

// validator checks one resource. Each method takes the field path of the
// value it checks, so that every finding names the exact field.
type validator struct {
	res  *Resource
	rep  *Reporter
	opts ValidateOptions
}

func (v *validator) errorf(path, format string, args ...any) { v.rep.Errorf(path, format, args...) }
func (v *validator) warnf(path, format string, args ...any)  { v.rep.Warnf(path, format, args...) }

// metadata checks the Kubernetes object metadata. Names are DNS-1123
// subdomains as the API server requires; a Gateway name must be a DNS-1123
// label because VirtualServices refer to it as "namespace/name" (Istio
// ValidateGateway "invalid gateway name").
func (v *validator) metadata() {
	r := v.res
	if r.Name != "" {
		if r.Kind == KindGateway {
			if !isDNS1123Label(r.Name) {
				v.errorf("metadata.name", "invalid Gateway name %q: %s", r.Name, dns1123LabelRule)
			}
		} else if !isDNS1123Subdomain(r.Name) {
			v.errorf("metadata.name", "invalid name %q: %s", r.Name, dns1123SubdomainRule)
		}
	}
	if !isDNS1123Label(r.Namespace) {
		v.errorf("metadata.namespace", "invalid namespace %q: %s", r.Namespace, dns1123LabelRule)
	}
	v.labels("metadata.labels", r.Labels)
}

// Field path builders. Map keys use the same form the decoder records
// lines under, so that Resource.Line finds them.

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func mapKey(path, key string) string {
	if isSimpleKey(key) {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

// sortedKeys returns the keys of m in order, so that findings about maps
// come out the same way every time.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// duration checks a duration the way Istio's ValidateDuration does: at
// least 1ms and a whole number of milliseconds, because Envoy durations in
// Istio's translation have millisecond precision.
func (v *validator) duration(path string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	got := d.AsDuration()
	switch {
	case got < time.Millisecond:
		v.errorf(path, "must be at least 1ms, found %s", got)
	case got%time.Millisecond != 0:
		v.errorf(path, "must be a whole number of milliseconds, found %s", got)
	}
}

// nonNegativeDuration checks a duration where 0 has a meaning (a session
// cookie, "disabled").
func (v *validator) nonNegativeDuration(path string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	got := d.AsDuration()
	switch {
	case got < 0:
		v.errorf(path, "must not be negative, found %s", got)
	case got%time.Millisecond != 0:
		v.errorf(path, "must be a whole number of milliseconds, found %s", got)
	}
}

// percent checks a Percent (0–100).
func (v *validator) percent(path string, p *networking.Percent) {
	if p == nil {
		return
	}
	v.percentValue(path+".value", p.GetValue())
}

func (v *validator) percentValue(path string, f float64) {
	if f < 0 || f > 100 || math.IsNaN(f) {
		v.errorf(path, "must be between 0 and 100, found %s", formatFloat(f))
	}
}

// faultPercent checks a fault-injection percentage. Istio sends it to
// Envoy in millionths, so a value below 0.0001 would silently become 0;
// Istio rejects it (validatePercentage), and so do we.
func (v *validator) faultPercent(path string, p *networking.Percent) {
	if p == nil {
		return
	}
	f := p.GetValue()
	if f > 0 && f < 0.0001 {
		v.errorf(path+".value", "must be 0 or between 0.0001 and 100, found %s: Envoy counts faults in millionths", formatFloat(f))
		return
	}
	v.percentValue(path+".value", f)
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// port checks a port number in 1..65535.
func (v *validator) port(path string, n uint32) {
	if n < 1 || n > 65535 {
		v.errorf(path, "port %d is out of range: must be between 1 and 65535", n)
	}
}

// optionalPort checks a port number where 0 means "unset".
func (v *validator) optionalPort(path string, n uint32) {
	if n != 0 {
		v.port(path, n)
	}
}

// labels checks a map of Kubernetes labels (a selector or a workload's
// labels): keys are qualified names, values are at most 63 characters of
// [A-Za-z0-9-_.] beginning and ending alphanumeric (Istio labels.Instance
// Validate, which follows Kubernetes).
func (v *validator) labels(path string, m map[string]string) {
	for _, k := range sortedKeys(m) {
		kp := mapKey(path, k)
		if err := checkLabelKey(k); err != nil {
			v.errorf(kp, "invalid label key %q: %v", k, err)
		}
		if err := checkLabelValue(m[k]); err != nil {
			v.errorf(kp, "invalid value %q for label %q: %v", m[k], k, err)
		}
	}
}

// selector checks a workload selector: valid labels, no wildcards (Istio
// matches labels literally, so "*" selects nothing), and warns when it is
// empty, because an empty selector selects every workload in the
// namespace.
func (v *validator) selector(path string, m map[string]string, set bool) {
	if !set {
		return
	}
	if len(m) == 0 {
		v.warnf(path, "workload selector has no labels, so it selects every workload in namespace %s", v.res.Namespace)
		return
	}
	for _, k := range sortedKeys(m) {
		if containsStar(k) || containsStar(m[k]) {
			v.errorf(mapKey(path, k), "wildcards are not supported in selectors: %s=%s is matched literally", k, m[k])
			continue
		}
		v.labels(path, map[string]string{k: m[k]})
	}
}

func containsStar(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '*' {
			return true
		}
	}
	return false
}

// exportTo checks an exportTo list (Istio validateExportTo): ".", "*" or
// namespace names, each once; "*" alone; "~" (visible to no one) only on a
// ServiceEntry and alone.
func (v *validator) exportTo(path string, list []string, allowNone bool) {
	seen := map[string]int{}
	for i, e := range list {
		p := index(path, i)
		key := e
		if e == "." {
			key = v.res.Namespace // "." and the own namespace are the same entry
		}
		if j, dup := seen[key]; dup {
			if key != e || list[j] != e {
				v.errorf(p, "duplicate entry: %q and %q both mean namespace %s", list[j], e, v.res.Namespace)
			} else {
				v.errorf(p, "duplicate entry %q", e)
			}
			continue
		}
		seen[key] = i
		switch {
		case e == "." || e == "*":
		case e == "~":
			if !allowNone {
				v.errorf(p, `"~" (exported to no one) is only allowed on a ServiceEntry`)
			}
		case !isDNS1123Label(e):
			v.errorf(p, `invalid entry %q: must be ".", "*" or a namespace name (%s)`, e, dns1123LabelRule)
		}
	}
	if len(list) > 1 {
		for i, e := range list {
			switch e {
			case "*":
				v.errorf(index(path, i), `"*" exports to every namespace and cannot be combined with other entries`)
			case "~":
				if allowNone {
					v.errorf(index(path, i), `"~" exports to no one and cannot be combined with other entries`)
				}
			}
		}
	}
}
