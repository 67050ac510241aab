package lb

import (
	"slices"
	"sort"
	"strings"

	"github.com/michi-mesh/michi/internal/routing"
)

// This file turns a cluster's hosts into what Istio hands Envoy for them:
// priority levels of locality groups (Envoy's LocalityLbEndpoints), with
// locality weights. It follows istio pilot/pkg/networking/core/loadbalancer
// (ApplyLocalityLoadBalancer and the functions it calls); cluster_traffic_policy.go
// applyLocalityLoadBalancer decides when Envoy weights localities.

// Topology labels Istio adds to both endpoint and proxy labels from their
// localities (labelutil.AugmentLabels), so failoverPriority can name them.
const (
	labelRegion  = "topology.kubernetes.io/region"
	labelZone    = "topology.kubernetes.io/zone"
	labelSubzone = "topology.istio.io/subzone"
)

// locality is a parsed region/zone/subzone.
type locality struct{ region, zone, subzone string }

// parseLocality splits "region/zone/subzone" as Istio's
// SplitLocalityLabel does: missing parts are empty, extra parts ignored.
func parseLocality(s string) locality {
	parts := strings.SplitN(s, "/", 4)
	var l locality
	l.region = parts[0]
	if len(parts) > 1 {
		l.zone = parts[1]
	}
	if len(parts) > 2 {
		l.subzone = parts[2]
	}
	return l
}

// matches reports whether l is selected by rule, a locality where "*"
// matches anything and a rule that stops early matches any zone or
// subzone (Istio util.LocalityMatch).
func (l locality) matches(rule string) bool {
	r := parseLocality(rule)
	return (r.region == "*" || r.region == l.region) &&
		(r.zone == "*" || r.zone == "" || r.zone == l.zone) &&
		(r.subzone == "*" || r.subzone == "" || r.subzone == l.subzone)
}

// specificity orders distribute destinations: the more parts a rule names
// without a wildcard, the more specific it is.
func specificity(rule string) int {
	r := parseLocality(rule)
	n := 0
	for _, part := range []string{r.region, r.zone, r.subzone} {
		if part != "" && part != "*" {
			n++
		}
	}
	return n
}

// proximity is Istio's LbPriority of an endpoint locality seen from the
// proxy's: 0 same region, zone and subzone; 1 same region and zone; 2 same
// region; 3 another region.
func proximity(local, ep locality) int {
	switch {
	case local.region != ep.region:
		return 3
	case local.zone != ep.zone:
		return 2
	case local.subzone != ep.subzone:
		return 1
	default:
		return 0
	}
}

// group is the hosts of one locality in one priority level, Envoy's
// LocalityLbEndpoints.
type group struct {
	locality string
	// weight is the locality's load-balancing weight: the sum of its
	// endpoints' weights, as Istio's EDS sets it, unless `distribute`
	// replaced it.
	weight uint64
	hosts  []*Host
}

// arrangement is a cluster's hosts in priority levels.
type arrangement struct {
	levels [][]group
	// localityWeighted says Envoy picks a locality by weight before a host
	// (locality_weighted_lb_config), which Istio sets for `distribute`,
	// and for explicit `failover` or `failoverPriority` when failover
	// applies.
	localityWeighted bool
}

// arrange groups hosts into priority levels of localities according to
// Istio's locality load-balancing setting.
func arrange(cfg Config, hosts []*Host) arrangement {
	if !cfg.LocalityEnabled {
		return arrangement{levels: [][]group{{{weight: sumWeights(hosts), hosts: hosts}}}}
	}
	groups := groupByLocality(hosts)
	local := parseLocality(cfg.Local)
	setting := cfg.LB.Locality
	if setting == nil {
		setting = &routing.LocalityLB{}
	}
	if len(setting.Distribute) > 0 {
		return arrangement{levels: [][]group{distribute(local, groups, setting.Distribute)}, localityWeighted: true}
	}
	ranked := make([]rankedGroup, len(groups))
	for i, g := range groups {
		ranked[i] = rankedGroup{group: g}
	}
	if len(setting.FailoverPriority) > 0 {
		ranked = rankByLabels(ranked, cfg.LocalLabels, local, setting.FailoverPriority)
		// Istio combines label priorities with region failover only when
		// `failover` is given explicitly.
		if len(setting.Failover) > 0 {
			rankByProximity(ranked, local, setting.Failover)
		}
	} else {
		rankByProximity(ranked, local, setting.Failover)
	}
	return arrangement{
		levels:           compact(ranked),
		localityWeighted: len(setting.Failover) > 0 || len(setting.FailoverPriority) > 0,
	}
}

func sumWeights(hosts []*Host) uint64 {
	var sum uint64
	for _, h := range hosts {
		sum += weightOf(h)
	}
	return sum
}

// groupByLocality groups hosts by locality in order of first appearance.
func groupByLocality(hosts []*Host) []group {
	index := map[string]int{}
	var groups []group
	for _, h := range hosts {
		i, ok := index[h.Locality]
		if !ok {
			i = len(groups)
			index[h.Locality] = i
			groups = append(groups, group{locality: h.Locality})
		}
		groups[i].hosts = append(groups[i].hosts, h)
		groups[i].weight += weightOf(h)
	}
	return groups
}

// distribute applies the first rule whose `from` matches the proxy's
// locality (Istio applyLocalityWeights): each `to` destination's weight is
// split across the localities it matches in proportion to their weights,
// rounded up, and localities no destination matches get no traffic. A
// locality matched by several destinations belongs to the most specific
// one (Istio takes whichever its map iteration meets first). Without a
// matching rule the groups are unchanged.
func distribute(local locality, groups []group, rules []routing.LocalityDistribute) []group {
	for _, rule := range rules {
		if !local.matches(rule.From) {
			continue
		}
		dests := make([]string, 0, len(rule.To))
		for to := range rule.To {
			dests = append(dests, to)
		}
		sort.Slice(dests, func(i, j int) bool {
			si, sj := specificity(dests[i]), specificity(dests[j])
			if si != sj {
				return si > sj
			}
			return dests[i] < dests[j]
		})
		claimed := make([]bool, len(groups))
		weights := make([]uint64, len(groups))
		for _, to := range dests {
			var matched []int
			var total uint64
			for i, g := range groups {
				if !claimed[i] && parseLocality(g.locality).matches(to) {
					claimed[i] = true
					matched = append(matched, i)
					total += g.weight
				}
			}
			w := uint64(rule.To[to])
			for _, i := range matched {
				weights[i] = (groups[i].weight*w + total - 1) / total
				if weights[i] == 0 {
					// Istio keeps the original weight when the share
					// rounds to 0 (only a 0 destination weight, which
					// validation rejects).
					weights[i] = groups[i].weight
				}
			}
		}
		var out []group
		for i, g := range groups {
			if claimed[i] {
				g.weight = weights[i]
				out = append(out, g)
			}
		}
		return out
	}
	return groups
}

// rankedGroup is a group with the priority Istio computed for it before
// priorities are compacted.
type rankedGroup struct {
	group
	rank int
}

// rankByProximity sets each group's rank from its locality's proximity to
// the proxy (Istio applyLocalityFailover). An endpoint in another region
// ranks 3, unless a failover rule for the proxy's region names another
// region as the place to go, in which case it ranks 4. Ranks already set
// by failoverPriority are kept as the major order.
func rankByProximity(ranked []rankedGroup, local locality, failover []routing.LocalityFailover) {
	for i := range ranked {
		ep := parseLocality(ranked[i].locality)
		p := proximity(local, ep)
		if p == 3 {
			for _, f := range failover {
				if f.From == local.region {
					if ep.region != f.To {
						p = 4
					}
					break
				}
			}
		}
		// Proximity takes 5 values, so rank*5 keeps label priorities as
		// the major order, as Istio does.
		ranked[i].rank = ranked[i].rank*5 + p
	}
}

// rankByLabels splits each group by how many failoverPriority labels its
// endpoints share with the proxy (Istio applyFailoverPriorities): an
// endpoint matching all n labels ranks 0, one whose first mismatch is
// label j ranks n-j. A label "key=value" compares the endpoint's label
// with value instead of the proxy's. Both sides' labels include the
// topology labels derived from their localities. Without proxy labels
// Istio leaves the groups alone.
func rankByLabels(ranked []rankedGroup, localLabels map[string]string, local locality, priorities []string) []rankedGroup {
	if len(localLabels) == 0 && local == (locality{}) {
		return ranked
	}
	keys := make([]string, len(priorities))
	override := map[string]string{}
	for i, p := range priorities {
		parts := strings.Split(p, "=")
		keys[i] = parts[0]
		if len(parts) == 2 {
			override[parts[0]] = parts[1]
		}
	}
	proxy := labelSource{labels: localLabels, loc: local}
	var out []rankedGroup
	for _, rg := range ranked {
		loc := parseLocality(rg.locality)
		byRank := map[int]*rankedGroup{}
		var order []int
		for _, h := range rg.hosts {
			ep := labelSource{labels: h.Labels, loc: loc}
			rank := 0
			for j, key := range keys {
				want, ok := override[key]
				if !ok {
					want = proxy.get(key)
				}
				if want != ep.get(key) {
					rank = len(keys) - j
					break
				}
			}
			g, ok := byRank[rank]
			if !ok {
				g = &rankedGroup{group: group{locality: rg.locality}, rank: rank}
				byRank[rank] = g
				order = append(order, rank)
			}
			g.hosts = append(g.hosts, h)
			g.weight += weightOf(h)
		}
		slices.Sort(order)
		for _, rank := range order {
			out = append(out, *byRank[rank])
		}
	}
	return out
}

// labelSource reads labels the way Istio sees them after AugmentLabels:
// the locality's parts override the topology labels.
type labelSource struct {
	labels map[string]string
	loc    locality
}

func (s labelSource) get(key string) string {
	switch {
	case key == labelRegion && s.loc.region != "":
		return s.loc.region
	case key == labelZone && s.loc.zone != "":
		return s.loc.zone
	case key == labelSubzone && s.loc.subzone != "":
		return s.loc.subzone
	}
	return s.labels[key]
}

// compact turns ranks into consecutive priority levels 0..N, keeping the
// groups' order within each level.
func compact(ranked []rankedGroup) [][]group {
	var ranks []int
	for _, rg := range ranked {
		if !slices.Contains(ranks, rg.rank) {
			ranks = append(ranks, rg.rank)
		}
	}
	slices.Sort(ranks)
	levels := make([][]group, len(ranks))
	for _, rg := range ranked {
		i, _ := slices.BinarySearch(ranks, rg.rank)
		levels[i] = append(levels[i], rg.group)
	}
	return levels
}
