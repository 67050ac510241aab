package compile

import (
	"fmt"
	"net/textproto"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// meshRootNamespace is Istio's default meshConfig.rootNamespace, used when
// Options leaves RootNamespace empty.
const meshRootNamespace = "istio-system"

// destinationRules indexes the DestinationRules visible to the proxy and
// answers which (merged) rule applies to a host, following Istio's lookup
// order: the client's namespace, then the service's namespace, then the
// root namespace; the most specific host wins.
//
// The index mirrors istiod's (pilot/pkg/model/push_context.go
// setDestinationRules): every namespace has a "local" index, the rules its
// own proxies see, and an "exported" index, the rules other namespaces may
// see; the root namespace has a third for rules private to it. Rules for
// one host in one index are merged as Istio merges them.
//
// It is immutable once built and safe for concurrent use.
type destinationRules struct {
	reg         *registry.Registry
	proxyNS     string
	proxyLabels map[string]string
	rootNS      string

	local     map[string]*ruleIndex // namespace -> rules visible inside it
	exported  map[string]*ruleIndex // namespace -> rules visible outside it
	rootLocal *ruleIndex            // root-namespace rules private to it
}

// mergedRule is one DestinationRule, or several for the same host merged
// into one (Istio's ConsolidatedDestRule).
type mergedRule struct {
	host      string
	namespace string          // of the first (oldest) rule
	exportTo  map[string]bool // as written; {"."} for a rule with a selector
	selector  map[string]string
	// hasSelector tells a selector with no labels (which selects every
	// workload of the namespace) from no selector at all.
	hasSelector bool
	policy      *networking.TrafficPolicy
	subsets     []*networking.Subset
	from        []*config.Resource
}

// ruleIndex holds merged rules by host. Several entries for one host
// remain when rules could not be merged (different exportTo or selector).
type ruleIndex struct {
	specific map[string][]*mergedRule
	wildcard map[string][]*mergedRule
}

// newDestinationRules indexes set's DestinationRules for the proxy in opts.
func newDestinationRules(set *config.Set, reg *registry.Registry, opts Options) (*destinationRules, config.Diagnostics) {
	d := &destinationRules{
		reg:         reg,
		proxyNS:     opts.Proxy.Namespace,
		proxyLabels: opts.Proxy.Labels,
		rootNS:      opts.RootNamespace,
		local:       map[string]*ruleIndex{},
		exported:    map[string]*ruleIndex{},
		rootLocal:   newRuleIndex(),
	}
	if d.rootNS == "" {
		d.rootNS = meshRootNamespace
	}
	ix := indexer{diags: &config.Diagnostics{}, seen: map[string]bool{}, services: reg.Services()}
	ix.serviceHosts = make(map[string]bool, len(ix.services))
	for _, s := range ix.services {
		ix.serviceHosts[s.Hostname] = true
	}

	rules := set.OfKind(config.KindDestinationRule) // oldest first
	// Rules with a workload selector go first, so that a rule without one
	// folds its subsets into them rather than the other way round (Istio
	// sortConfigBySelectorAndCreationTime).
	sort.SliceStable(rules, func(i, j int) bool {
		return rules[i].DestinationRule().GetWorkloadSelector() != nil &&
			rules[j].DestinationRule().GetWorkloadSelector() == nil
	})
	for _, res := range rules {
		dr := res.DestinationRule()
		if dr == nil {
			continue
		}
		in := incomingRule(res, dr, opts.ClusterDomain)
		ix.reportIgnored(res, dr, in.host)
		ns := res.Namespace

		// A proxy in the rule's namespace sees it unless exportTo hides it
		// from that very namespace.
		if len(in.exportTo) == 0 || in.exportTo["*"] || in.exportTo["."] || in.exportTo[ns] {
			if d.local[ns] == nil {
				d.local[ns] = newRuleIndex()
			}
			ix.add(d.local[ns], in)
		}
		// A rule exported only to its own namespace stays out of the
		// exported index; in the root namespace it goes to rootLocal,
		// which proxies of the root namespace search first.
		privateOnly := len(in.exportTo) == 1 && (in.exportTo["."] || in.exportTo[ns])
		switch {
		case !privateOnly:
			if d.exported[ns] == nil {
				d.exported[ns] = newRuleIndex()
			}
			ix.add(d.exported[ns], in)
		case ns == d.rootNS:
			ix.add(d.rootLocal, in)
		}
	}
	return d, *ix.diags
}

// incomingRule wraps one DestinationRule as a merge candidate.
func incomingRule(res *config.Resource, dr *networking.DestinationRule, domain string) *mergedRule {
	r := &mergedRule{
		host:      config.ResolveHost(dr.Host, res.Namespace, domain),
		namespace: res.Namespace,
		exportTo:  map[string]bool{},
		policy:    dr.TrafficPolicy,
		subsets:   dr.Subsets,
		from:      []*config.Resource{res},
	}
	if ws := dr.GetWorkloadSelector(); ws != nil {
		// A rule for some workloads must not leak into other namespaces:
		// Istio exports it to its own namespace only, whatever it says.
		r.hasSelector = true
		r.selector = ws.GetMatchLabels()
		r.exportTo["."] = true
	} else {
		for _, e := range dr.ExportTo {
			r.exportTo[e] = true
		}
	}
	return r
}

func newRuleIndex() *ruleIndex {
	return &ruleIndex{specific: map[string][]*mergedRule{}, wildcard: map[string][]*mergedRule{}}
}

// indexer adds rules to indexes and collects what merging drops. A rule is
// added to up to two indexes, so findings are de-duplicated.
type indexer struct {
	diags *config.Diagnostics
	seen  map[string]bool

	services     []*registry.Service
	serviceHosts map[string]bool
}

func (ix *indexer) report(d config.Diagnostic) {
	key := d.Namespace + "/" + d.Name + "\x00" + d.Field + "\x00" + d.Message
	if ix.seen[key] {
		return
	}
	ix.seen[key] = true
	*ix.diags = append(*ix.diags, d)
}

// add merges the incoming rule into the index the way Istio's
// mergeDestinationRule does (with ENABLE_ENHANCED_DESTINATIONRULE_MERGE, the
// default):
//
//   - it is folded into every entry for the same host that has the same
//     exportTo (or whose non-empty exportTo it widens) unless both have
//     workload selectors that differ; folding appends the subsets whose
//     names are new and adopts the top-level traffic policy only when the
//     entry has none;
//   - it also becomes an entry of its own unless it was folded into an entry
//     with the same selector (or both none). Istio takes that verdict from
//     the comparison with the last entry of the list only, and so do we.
func (ix *indexer) add(idx *ruleIndex, in *mergedRule) {
	byHost := idx.specific
	if config.IsWildcard(in.host) {
		byHost = idx.wildcard
	}
	entries, ok := byHost[in.host]
	if !ok {
		byHost[in.host] = []*mergedRule{in.clone()}
		return
	}
	standalone := true
	var dropped []config.Diagnostic
	for _, e := range entries {
		fold, alone := foldVerdict(e, in)
		standalone = alone
		if fold {
			dropped = append(dropped, e.absorb(in)...)
		}
	}
	if standalone {
		byHost[in.host] = append(entries, in.clone())
		// The rule still applies on its own where this entry is chosen, so
		// nothing it says was lost.
		return
	}
	for _, d := range dropped {
		ix.report(d)
	}
}

// foldVerdict says whether in is folded into e and whether, judged against
// e, it must also stand alone.
func foldVerdict(e, in *mergedRule) (fold, alone bool) {
	sameExport := setsEqual(e.exportTo, in.exportTo)
	widens := len(e.exportTo) > 0 && isSuperset(in.exportTo, e.exportTo)
	if !sameExport && !widens {
		return false, true
	}
	bothSelect := e.hasSelector && in.hasSelector
	sameSelector := labelsEqual(e.selector, in.selector)
	if bothSelect && !sameSelector {
		return false, true
	}
	neither := !e.hasSelector && !in.hasSelector
	return true, !(neither || bothSelect && sameSelector)
}

// absorb folds in's subsets and, when e has none, its traffic policy into
// e. It returns findings for what in loses: subsets whose names e already
// has, and a traffic policy shadowed by e's.
func (e *mergedRule) absorb(in *mergedRule) []config.Diagnostic {
	res := in.from[0]
	first := e.from[0]
	e.from = append(e.from, res)
	var lost []config.Diagnostic
	have := make(map[string]bool, len(e.subsets))
	for _, s := range e.subsets {
		have[s.GetName()] = true
	}
	own := make(map[string]bool, len(in.subsets))
	for i, s := range in.subsets {
		if own[s.GetName()] {
			continue // repeated within the rule itself: validation reports it
		}
		own[s.GetName()] = true
		if have[s.GetName()] {
			lost = append(lost, res.Diagnostic(config.Warning, fmt.Sprintf("spec.subsets[%d].name", i),
				fmt.Sprintf("subset %q is already defined by DestinationRule %s for host %s; this definition is ignored (Istio keeps the first when merging rules)",
					s.GetName(), first.NamespacedName(), e.host)))
			continue
		}
		have[s.GetName()] = true
		e.subsets = append(e.subsets, s)
	}
	switch {
	case e.policy == nil:
		e.policy = in.policy
	case in.policy != nil:
		lost = append(lost, res.Diagnostic(config.Warning, "spec.trafficPolicy",
			fmt.Sprintf("ignored: DestinationRule %s for host %s is older and already sets a top-level trafficPolicy (Istio keeps the first when merging rules)",
				first.NamespacedName(), e.host)))
	}
	return lost
}

// clone copies the rule so that folding others into it never writes to a
// slice shared with the resource or with another index.
func (r *mergedRule) clone() *mergedRule {
	c := *r
	c.subsets = uniqueSubsets(r.subsets)
	c.from = append([]*config.Resource(nil), r.from...)
	return &c
}

// uniqueSubsets copies subsets keeping the first of each name: Istio builds
// a cluster per subset and keeps the first of clusters sharing a name.
// (Validation rejects duplicates within one rule.)
func uniqueSubsets(subsets []*networking.Subset) []*networking.Subset {
	out := make([]*networking.Subset, 0, len(subsets))
	have := make(map[string]bool, len(subsets))
	for _, s := range subsets {
		if have[s.GetName()] {
			continue
		}
		have[s.GetName()] = true
		out = append(out, s)
	}
	return out
}

// reportIgnored notes what michi cannot honour in a rule: a host no
// service matches (Istio ignores such a rule), and the few fields michi
// has nowhere to put.
func (ix *indexer) reportIgnored(res *config.Resource, dr *networking.DestinationRule, host string) {
	if !ix.matchesService(host) {
		ix.report(res.Diagnostic(config.Info, "spec.host",
			fmt.Sprintf("no service in the registry matches host %q; the rule has no effect", host)))
	}
	forEachTrafficPolicy(dr, func(path string, lb *networking.LoadBalancerSettings, _ *networking.ClientTLSSettings, rb *networking.TrafficPolicy_RetryBudget) {
		if lb.GetZoneAwareLbSetting() != nil {
			ix.report(res.Diagnostic(config.Warning, path+".loadBalancer.zoneAwareLbSetting",
				"zoneAwareLbSetting is not supported by michi and is ignored"))
		}
		if rb.GetBudgetInterval() != nil {
			ix.report(res.Diagnostic(config.Warning, path+".retryBudget.budgetInterval",
				"budgetInterval is not supported by michi and is ignored"))
		}
	})
}

// matchesService reports whether host, or the wildcard host, names a
// service of the registry.
func (ix *indexer) matchesService(host string) bool {
	if !config.IsWildcard(host) {
		return ix.serviceHosts[host]
	}
	for _, s := range ix.services {
		if config.HostMatches(host, s.Hostname) {
			return true
		}
	}
	return false
}

// forEachTrafficPolicy calls fn for every traffic policy of a rule, with
// its field path: the top level, the subsets' and their port-level
// settings (which have no retry budget).
func forEachTrafficPolicy(dr *networking.DestinationRule, fn func(path string, lb *networking.LoadBalancerSettings, tls *networking.ClientTLSSettings, rb *networking.TrafficPolicy_RetryBudget)) {
	visit := func(path string, tp *networking.TrafficPolicy) {
		if tp == nil {
			return
		}
		fn(path, tp.LoadBalancer, tp.Tls, tp.RetryBudget)
		for i, pls := range tp.PortLevelSettings {
			fn(fmt.Sprintf("%s.portLevelSettings[%d]", path, i), pls.LoadBalancer, pls.Tls, nil)
		}
	}
	visit("spec.trafficPolicy", dr.TrafficPolicy)
	for i, s := range dr.Subsets {
		visit(fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), s.GetTrafficPolicy())
	}
}

// lookup returns the rule that applies to traffic from the proxy to host,
// a service in svcNS ("" when unknown: the service visible to the proxy is
// looked up), or nil.
func (d *destinationRules) lookup(host, svcNS string) *mergedRule {
	if d == nil {
		return nil
	}
	return d.choose(d.candidates(host, svcNS))
}

// candidates returns the merged rules for host from the first place that
// has any, in Istio's order (push_context.go destinationRule): the proxy's
// own namespace (for a proxy in the root namespace, the rules private to
// it), then rules exported to the proxy from the service's namespace, then
// from the root namespace. Within a place the most specific host wins, and
// a more specific host that is not exported to the proxy still hides a
// less specific one that is.
func (d *destinationRules) candidates(host, svcNS string) []*mergedRule {
	if d.proxyNS != d.rootNS {
		if rules := d.local[d.proxyNS].match(host); rules != nil {
			return rules
		}
	} else if rules := d.rootLocal.match(host); rules != nil {
		return rules
	}
	if svcNS == "" && d.reg != nil {
		if s := d.reg.Lookup(host, d.proxyNS); s != nil {
			svcNS = s.Namespace
		}
	}
	if svcNS != "" {
		if rules := d.exportedFrom(svcNS, host); len(rules) > 0 {
			return rules
		}
	}
	return d.exportedFrom(d.rootNS, host)
}

// exportedFrom returns the rules for host that namespace ns exports to the
// proxy's namespace.
func (d *destinationRules) exportedFrom(ns, host string) []*mergedRule {
	rules := d.exported[ns].match(host)
	visible := func(r *mergedRule) bool {
		return len(r.exportTo) == 0 || r.exportTo["*"] || r.exportTo[d.proxyNS]
	}
	for i, r := range rules {
		if visible(r) {
			continue
		}
		// Copy only when something must go; usually every entry is visible.
		out := append([]*mergedRule(nil), rules[:i]...)
		for _, r := range rules[i+1:] {
			if visible(r) {
				out = append(out, r)
			}
		}
		return out
	}
	return rules
}

// choose picks the rule for this proxy among entries for one host, as
// Istio's SidecarScope.DestinationRule does: the first rule of the proxy's
// namespace whose workload selector matches the proxy's labels, otherwise
// the last rule without a selector.
func (d *destinationRules) choose(rules []*mergedRule) *mergedRule {
	var catchAll *mergedRule
	for _, r := range rules {
		if !r.hasSelector {
			catchAll = r
			continue
		}
		if r.namespace == d.proxyNS && registry.LabelsMatch(r.selector, d.proxyLabels) {
			return r
		}
	}
	return catchAll
}

// match returns the entries for the most specific host of the index that
// matches host: the host itself, else the longest wildcard covering it
// (Istio MostSpecificHostMatch). host may itself be a wildcard.
func (ix *ruleIndex) match(host string) []*mergedRule {
	if ix == nil {
		return nil
	}
	if config.IsWildcard(host) {
		if rules, ok := ix.wildcard[host]; ok {
			return rules
		}
	} else if rules, ok := ix.specific[host]; ok {
		return rules
	}
	best := ""
	for pattern := range ix.wildcard {
		if !config.HostMatches(pattern, host) {
			continue
		}
		if best == "" || len(pattern) > len(best) || len(pattern) == len(best) && pattern < best {
			best = pattern
		}
	}
	if best == "" {
		return nil
	}
	return ix.wildcard[best]
}

// subset returns the rule's subset called name, or nil.
func (r *mergedRule) subset(name string) *networking.Subset {
	if r == nil {
		return nil
	}
	for _, s := range r.subsets {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// source is "namespace/name" of every rule merged into r, oldest first.
func (r *mergedRule) source() string {
	names := make([]string, len(r.from))
	for i, res := range r.from {
		names[i] = res.NamespacedName()
	}
	return strings.Join(names, ",")
}

// hashPolicy returns the consistent-hash policy for traffic to host (a
// service in svcNamespace) on port, to subset ("" for none), with Istio's
// precedence: subset port-level > subset > rule port-level > rule. It
// returns nil when the load balancer is not consistent-hash.
//
// port is the port the route's destination names, 0 when it names none:
// Istio (route.go HashForHTTPDestination) consults port-level settings only
// for an explicit destination port. Like Istio, a level that sets a
// load balancer without consistentHash does not stop the search, so a
// subset with simple: ROUND_ROBIN under a rule with consistentHash still
// gets the rule's hash key on its routes.
func (d *destinationRules) hashPolicy(host, svcNamespace, subset string, port uint32) *routing.HashPolicy {
	r := d.lookup(host, svcNamespace)
	if r == nil {
		return nil
	}
	var subsetPolicy *networking.TrafficPolicy
	if subset != "" {
		subsetPolicy = r.subset(subset).GetTrafficPolicy()
	}
	for _, ch := range []*networking.LoadBalancerSettings_ConsistentHashLB{
		portLevelHash(subsetPolicy, port),
		subsetPolicy.GetLoadBalancer().GetConsistentHash(),
		portLevelHash(r.policy, port),
		r.policy.GetLoadBalancer().GetConsistentHash(),
	} {
		if ch != nil {
			return hashKey(ch)
		}
	}
	return nil
}

// portLevelHash is the consistent hash of the first port-level setting
// for port, if any.
func portLevelHash(tp *networking.TrafficPolicy, port uint32) *networking.LoadBalancerSettings_ConsistentHashLB {
	if port == 0 {
		return nil
	}
	for _, pls := range tp.GetPortLevelSettings() {
		if pls.GetPort().GetNumber() == port {
			return pls.GetLoadBalancer().GetConsistentHash()
		}
	}
	return nil
}

// hashKey converts Istio's hash key to the route hash policy Envoy gets
// (route.go consistentHashToHashPolicy). It returns nil when no key is
// set, or useSourceIp is false, since nothing would be hashed.
func hashKey(ch *networking.LoadBalancerSettings_ConsistentHashLB) *routing.HashPolicy {
	switch k := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		return &routing.HashPolicy{Header: textproto.CanonicalMIMEHeaderKey(k.HttpHeaderName)}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		c := k.HttpCookie
		cookie := &routing.CookieHash{Name: c.GetName(), Path: c.GetPath()}
		// A TTL, even 0s, makes Envoy generate the cookie when the request
		// lacks it; 0s gives a session cookie.
		if ttl := c.GetTtl(); ttl != nil {
			cookie.TTL = ttl.AsDuration()
			cookie.HasTTL = true
		}
		for _, a := range c.GetAttributes() {
			cookie.Attributes = append(cookie.Attributes, routing.CookieAttr{Name: a.GetName(), Value: a.GetValue()})
		}
		return &routing.HashPolicy{Cookie: cookie}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		if !k.UseSourceIp {
			return nil
		}
		return &routing.HashPolicy{SourceIP: true}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		return &routing.HashPolicy{QueryParam: k.HttpQueryParameterName}
	}
	return nil
}

// hasSubset reports whether a DestinationRule visible to the proxy
// defines subset for host.
func (d *destinationRules) hasSubset(host, svcNamespace, subset string) bool {
	return d.lookup(host, svcNamespace).subset(subset) != nil
}

func setsEqual(a, b map[string]bool) bool {
	return len(a) == len(b) && isSuperset(a, b)
}

// isSuperset reports whether a holds every member of b.
func isSuperset(a, b map[string]bool) bool {
	for k := range b {
		if !a[k] {
			return false
		}
	}
	return true
}

func labelsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
