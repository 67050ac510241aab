package compile

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
)

// mergeDelegate replaces root rule i, which delegates, with the delegate's
// rules merged into it, following Istio (pilot/pkg/model/virtualservice.go
// mergeHTTPRoutes): the delegate must exist, have no hosts and be exported
// to the root's namespace, or the root rule is dropped; each delegate rule
// whose matches do not fit within the root's is dropped; fields the
// delegate rule leaves unset are inherited from the root rule.
func (ix *vsIndex) mergeDelegate(root *config.Resource, i int, rule *networking.HTTPRoute) []*httpRule {
	ns := rule.Delegate.Namespace
	if ns == "" {
		ns = root.Namespace
	}
	key := ns + "/" + rule.Delegate.Name
	field := fmt.Sprintf("spec.http[%d].delegate", i)
	d := ix.delegates[key]
	if d == nil {
		if ix.set.Find(config.KindVirtualService, ns, rule.Delegate.Name) != nil {
			ix.finding(root, config.Error, field, "VirtualService %s has hosts, so it cannot be a delegate; Istio ignores this rule", key)
		} else {
			ix.finding(root, config.Error, field, "delegate VirtualService %s not found; Istio ignores this rule", key)
		}
		return nil
	}
	dspec := d.VirtualService()
	if !config.ExportedTo(dspec.ExportTo, d.Namespace, root.Namespace) {
		ix.finding(root, config.Error, field, "delegate VirtualService %s is not exported to namespace %s (exportTo %s); Istio ignores this rule",
			key, root.Namespace, formatList(dspec.ExportTo))
		return nil
	}
	var out []*httpRule
	for j, leaf := range dspec.Http {
		if leaf == nil {
			continue
		}
		leafField := fmt.Sprintf("spec.http[%d]", j)
		if leaf.Delegate != nil {
			ix.finding(d, config.Error, leafField+".delegate", "a delegate VirtualService cannot delegate again (Istio supports one level); the rule is ignored")
			continue
		}
		matches, matchIndex, matchNS, ok := mergeMatches(rule.Match, leaf.Match, root.Namespace, d.Namespace)
		if !ok {
			ix.finding(d, config.Warning, leafField+".match", "conflicts with every match of root VirtualService %s spec.http[%d]: a delegate match must be narrower than a root match; Istio drops this rule",
				root.NamespacedName(), i)
			continue
		}
		out = append(out, &httpRule{
			rule:          mergeRule(rule, leaf, matches),
			index:         i,
			res:           d,
			field:         leafField,
			delegate:      key,
			delegateIndex: j,
			hostNS:        d.Namespace,
			mirrorNS:      inheritedNS(leaf.Mirror == nil, root.Namespace, d.Namespace),
			matchNS:       matchNS,
			matchIndex:    matchIndex,
		})
	}
	return out
}

func (ix *vsIndex) finding(r *config.Resource, sev config.Severity, field, format string, args ...any) {
	ix.delegateFindings = append(ix.delegateFindings, r.Diagnostic(sev, field, fmt.Sprintf(format, args...)))
}

func inheritedNS(inherited bool, rootNS, leafNS string) string {
	if inherited {
		return rootNS
	}
	return leafNS
}

func formatList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	return "[" + strings.Join(l, ", ") + "]"
}

// mergeRule builds the merged rule: the delegate rule with the root rule's
// name prefixed and the root's values for what the delegate leaves unset.
// It never modifies root or leaf, which belong to the configuration set.
func mergeRule(root, leaf *networking.HTTPRoute, matches []*networking.HTTPMatchRequest) *networking.HTTPRoute {
	out := &networking.HTTPRoute{
		Name:             joinNames(root.Name, leaf.Name),
		Match:            matches,
		Route:            leaf.Route,
		Redirect:         leaf.Redirect,
		DirectResponse:   leaf.DirectResponse,
		Rewrite:          leaf.Rewrite,
		Timeout:          leaf.Timeout,
		Retries:          leaf.Retries,
		Fault:            leaf.Fault,
		Mirror:           leaf.Mirror,
		Mirrors:          leaf.Mirrors,
		MirrorPercent:    leaf.MirrorPercent, // deprecated, still honoured by Istio
		MirrorPercentage: leaf.MirrorPercentage,
		CorsPolicy:       leaf.CorsPolicy,
		Headers:          leaf.Headers,
	}
	if out.Rewrite == nil {
		out.Rewrite = root.Rewrite
	}
	if out.Timeout == nil {
		out.Timeout = root.Timeout
	}
	if out.Retries == nil {
		out.Retries = root.Retries
	}
	if out.Fault == nil {
		out.Fault = root.Fault
	}
	if out.Mirror == nil {
		out.Mirror = root.Mirror
	}
	if out.MirrorPercent == nil {
		out.MirrorPercent = root.MirrorPercent
	}
	if out.MirrorPercentage == nil {
		out.MirrorPercentage = root.MirrorPercentage
	}
	if out.CorsPolicy == nil {
		out.CorsPolicy = root.CorsPolicy
	}
	if out.Headers == nil {
		out.Headers = root.Headers
	}
	return out
}

// joinNames joins a root and a delegate name with "-", Istio's convention
// for merged rule and match names.
func joinNames(root, leaf string) string {
	switch {
	case leaf == "":
		return root
	case root == "":
		return leaf
	}
	return root + "-" + leaf
}

// mergeMatches merges the delegate rule's matches into the root rule's
// (istio mergeHTTPMatchRequests): every delegate match is combined with
// every root match it does not conflict with, and a delegate match that
// fits no root match makes the whole delegate rule conflict (ok false).
// It returns the merged matches, the MatchIndex of each, and the namespace
// in which their short gateway names resolve.
func mergeMatches(root, leaf []*networking.HTTPMatchRequest, rootNS, leafNS string) ([]*networking.HTTPMatchRequest, []int, string, bool) {
	if len(root) == 0 {
		return leaf, identityIndex(len(leaf)), leafNS, true
	}
	if len(leaf) == 0 {
		return root, identityIndex(len(root)), rootNS, true
	}
	var out []*networking.HTTPMatchRequest
	var index []int
	for li, l := range leaf {
		found := false
		for _, r := range root {
			if r == nil || l == nil || matchConflict(r, l, rootNS, leafNS) {
				continue
			}
			out = append(out, mergeMatch(r, l, rootNS, leafNS))
			index = append(index, li)
			found = true
		}
		if !found {
			return nil, nil, "", false
		}
	}
	return out, index, leafNS, len(out) > 0
}

// mergeMatch combines a root and a delegate match: the delegate's
// conditions win, the root's fill in what the delegate leaves unset, and
// the name is joined "root-leaf". Gateway names come out resolved.
func mergeMatch(root, leaf *networking.HTTPMatchRequest, rootNS, leafNS string) *networking.HTTPMatchRequest {
	out := &networking.HTTPMatchRequest{
		Name:            joinNames(root.Name, leaf.Name),
		Uri:             firstMatch(leaf.Uri, root.Uri),
		Scheme:          firstMatch(leaf.Scheme, root.Scheme),
		Method:          firstMatch(leaf.Method, root.Method),
		Authority:       firstMatch(leaf.Authority, root.Authority),
		Headers:         mergeStringMatches(root.Headers, leaf.Headers),
		WithoutHeaders:  mergeStringMatches(root.WithoutHeaders, leaf.WithoutHeaders),
		QueryParams:     mergeStringMatches(root.QueryParams, leaf.QueryParams),
		Port:            leaf.Port,
		SourceNamespace: leaf.SourceNamespace,
		IgnoreUriCase:   leaf.IgnoreUriCase,
		StatPrefix:      leaf.StatPrefix,
		SourceLabels:    mergeLabels(root.SourceLabels, leaf.SourceLabels),
	}
	if out.Port == 0 {
		out.Port = root.Port
	}
	if out.SourceNamespace == "" {
		out.SourceNamespace = root.SourceNamespace
	}
	if out.StatPrefix == "" {
		out.StatPrefix = root.StatPrefix
	}
	if len(leaf.Gateways) > 0 {
		out.Gateways = resolveGatewayNames(leaf.Gateways, leafNS)
	} else {
		out.Gateways = resolveGatewayNames(root.Gateways, rootNS)
	}
	return out
}

func firstMatch(a, b *networking.StringMatch) *networking.StringMatch {
	if a != nil {
		return a
	}
	return b
}

func mergeStringMatches(root, leaf map[string]*networking.StringMatch) map[string]*networking.StringMatch {
	if len(root) == 0 && len(leaf) == 0 {
		return nil
	}
	out := make(map[string]*networking.StringMatch, len(root)+len(leaf))
	for k, v := range root {
		out[k] = v
	}
	for k, v := range leaf {
		out[k] = v
	}
	return out
}

func mergeLabels(root, leaf map[string]string) map[string]string {
	if len(root) == 0 && len(leaf) == 0 {
		return nil
	}
	out := make(map[string]string, len(root)+len(leaf))
	for k, v := range root {
		out[k] = v
	}
	for k, v := range leaf {
		out[k] = v
	}
	return out
}

func resolveGatewayNames(gws []string, ns string) []string {
	if len(gws) == 0 {
		return nil
	}
	out := make([]string, len(gws))
	for i, g := range gws {
		out[i] = resolveGatewayName(g, ns)
	}
	return out
}

// matchConflict reports whether delegate match leaf cannot be narrowed
// into root match root (istio model.hasConflict): the string conditions
// must nest, ignoreUriCase must agree, ports must agree, the delegate's
// sourceNamespace must equal the root's (when the root sets one), its
// sourceLabels must agree with the root's and its gateways must be a
// subset of the root's.
func matchConflict(root, leaf *networking.HTTPMatchRequest, rootNS, leafNS string) bool {
	pairs := [][2]*networking.StringMatch{
		{root.Uri, leaf.Uri}, {root.Scheme, leaf.Scheme}, {root.Method, leaf.Method}, {root.Authority, leaf.Authority},
	}
	for _, p := range pairs {
		if stringMatchConflict(p[0], p[1]) {
			return true
		}
	}
	for _, k := range sortedKeys(leaf.Headers) {
		if stringMatchConflict(root.Headers[k], leaf.Headers[k]) {
			return true
		}
	}
	for _, k := range sortedKeys(leaf.WithoutHeaders) {
		if stringMatchConflict(root.WithoutHeaders[k], leaf.WithoutHeaders[k]) {
			return true
		}
	}
	for _, k := range sortedKeys(leaf.QueryParams) {
		if stringMatchConflict(root.QueryParams[k], leaf.QueryParams[k]) {
			return true
		}
	}
	if root.IgnoreUriCase != leaf.IgnoreUriCase {
		return true
	}
	if root.Port > 0 && leaf.Port > 0 && root.Port != leaf.Port {
		return true
	}
	if root.SourceNamespace != "" && leaf.SourceNamespace != root.SourceNamespace {
		return true
	}
	for k, v := range leaf.SourceLabels {
		if rv, ok := root.SourceLabels[k]; ok && rv != v {
			return true
		}
	}
	if len(root.Gateways) > 0 && len(leaf.Gateways) > 0 {
		rootGWs := map[string]bool{}
		for _, g := range root.Gateways {
			rootGWs[resolveGatewayName(g, rootNS)] = true
		}
		for _, g := range leaf.Gateways {
			if !rootGWs[resolveGatewayName(g, leafNS)] {
				return true
			}
		}
	}
	return false
}

// stringMatchConflict reports whether leaf does not narrow root (istio
// model.stringMatchConflict): either side unset never conflicts; a regex
// on either side conflicts with any condition on the other; an exact root
// needs the same exact leaf; a prefix root needs a leaf prefix or exact
// value that starts with it. A root that is only a presence match ({})
// conflicts with any leaf condition.
func stringMatchConflict(root, leaf *networking.StringMatch) bool {
	if root == nil || leaf == nil {
		return false
	}
	if root.GetRegex() != "" && (leaf.GetRegex() != "" || leaf.GetPrefix() != "" || leaf.GetExact() != "") {
		return true
	}
	if leaf.GetRegex() != "" && (root.GetRegex() != "" || root.GetPrefix() != "" || root.GetExact() != "") {
		return true
	}
	if exact := root.GetExact(); exact != "" {
		return leaf.GetPrefix() != "" || leaf.GetExact() != exact
	}
	if prefix := root.GetPrefix(); prefix != "" {
		if p := leaf.GetPrefix(); p != "" {
			return !strings.HasPrefix(p, prefix)
		}
		if e := leaf.GetExact(); e != "" {
			return !strings.HasPrefix(e, prefix)
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
