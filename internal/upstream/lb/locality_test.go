package lb

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/routing"
)

// host returns a host at locality with labels given as key, value pairs.
func host(address, locality string, labels ...string) *Host {
	h := &Host{Address: address, Weight: 1, Locality: locality, Labels: map[string]string{}}
	for i := 0; i+1 < len(labels); i += 2 {
		h.Labels[labels[i]] = labels[i+1]
	}
	return h
}

// levelOf maps each host's address to its priority level.
func levelOf(a arrangement) map[string]int {
	out := map[string]int{}
	for level, groups := range a.levels {
		for _, g := range groups {
			for _, h := range g.hosts {
				out[h.Address] = level
			}
		}
	}
	return out
}

func TestArrangePriorities(t *testing.T) {
	spread := []*Host{
		host("same-subzone", "r1/z1/s1"),
		host("same-zone", "r1/z1/s2"),
		host("same-region", "r1/z2/s1"),
		host("region-2", "r2/z1/s1"),
		host("region-3", "r3/z1/s1"),
	}
	labelled := []*Host{
		host("net1-v1", "r1/z1/s1", "net", "n1", "version", "v1"),
		host("net1-v2", "r1/z1/s1", "net", "n1", "version", "v2"),
		host("net2-v1", "r1/z1/s1", "net", "n2", "version", "v1"),
		host("net2-v2", "r1/z1/s1", "net", "n2", "version", "v2"),
	}
	tests := []struct {
		name    string
		hosts   []*Host
		enabled bool
		local   string
		labels  map[string]string
		setting *routing.LocalityLB
		want    map[string]int
	}{
		{
			name: "disabled: one level", hosts: spread, enabled: false, local: "r1/z1/s1",
			want: map[string]int{"same-subzone": 0, "same-zone": 0, "same-region": 0, "region-2": 0, "region-3": 0},
		},
		{
			name: "mesh default: proximity", hosts: spread, enabled: true, local: "r1/z1/s1",
			want: map[string]int{"same-subzone": 0, "same-zone": 1, "same-region": 2, "region-2": 3, "region-3": 3},
		},
		{
			name: "missing levels are compacted", hosts: []*Host{spread[0], spread[3]}, enabled: true, local: "r1/z1/s1",
			want: map[string]int{"same-subzone": 0, "region-2": 1},
		},
		{
			name: "failover region comes before other regions", hosts: spread, enabled: true, local: "r1/z1/s1",
			setting: &routing.LocalityLB{Failover: []routing.LocalityFailover{{From: "r1", To: "r3"}}},
			want:    map[string]int{"same-subzone": 0, "same-zone": 1, "same-region": 2, "region-3": 3, "region-2": 4},
		},
		{
			name: "failover for another region changes nothing", hosts: spread, enabled: true, local: "r1/z1/s1",
			setting: &routing.LocalityLB{Failover: []routing.LocalityFailover{{From: "r9", To: "r3"}}},
			want:    map[string]int{"same-subzone": 0, "same-zone": 1, "same-region": 2, "region-2": 3, "region-3": 3},
		},
		{
			name: "proxy without locality", hosts: []*Host{host("nowhere", ""), spread[0]}, enabled: true, local: "",
			want: map[string]int{"nowhere": 0, "same-subzone": 1},
		},
		{
			name: "failoverPriority ranks by labels matched in order", hosts: labelled, enabled: true, local: "r1/z1/s1",
			labels:  map[string]string{"net": "n1", "version": "v1"},
			setting: &routing.LocalityLB{FailoverPriority: []string{"net", "version"}},
			want:    map[string]int{"net1-v1": 0, "net1-v2": 1, "net2-v1": 2, "net2-v2": 2},
		},
		{
			name: "failoverPriority key=value overrides the proxy's value", hosts: labelled, enabled: true, local: "r1/z1/s1",
			labels:  map[string]string{"net": "n1", "version": "v1"},
			setting: &routing.LocalityLB{FailoverPriority: []string{"net", "version=v2"}},
			want:    map[string]int{"net1-v2": 0, "net1-v1": 1, "net2-v1": 2, "net2-v2": 2},
		},
		{
			name: "failoverPriority reads topology labels from localities", hosts: spread, enabled: true, local: "r1/z1/s1",
			labels:  map[string]string{"app": "client"},
			setting: &routing.LocalityLB{FailoverPriority: []string{labelRegion, labelZone}},
			want:    map[string]int{"same-subzone": 0, "same-zone": 0, "same-region": 1, "region-2": 2, "region-3": 2},
		},
		{
			name: "failoverPriority without proxy labels does nothing", hosts: labelled, enabled: true, local: "",
			setting: &routing.LocalityLB{FailoverPriority: []string{"net", "version"}},
			want:    map[string]int{"net1-v1": 0, "net1-v2": 0, "net2-v1": 0, "net2-v2": 0},
		},
		{
			name: "failoverPriority with failover: labels first, then regions", enabled: true, local: "r1/z1/s1",
			hosts: []*Host{
				host("n1-home", "r1/z1/s1", "net", "n1"),
				host("n1-r2", "r2/z1/s1", "net", "n1"),
				host("n1-r3", "r3/z1/s1", "net", "n1"),
				host("n2-home", "r1/z1/s1", "net", "n2"),
			},
			labels:  map[string]string{"net": "n1"},
			setting: &routing.LocalityLB{FailoverPriority: []string{"net"}, Failover: []routing.LocalityFailover{{From: "r1", To: "r3"}}},
			want:    map[string]int{"n1-home": 0, "n1-r3": 1, "n1-r2": 2, "n2-home": 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{
				LB:              routing.LoadBalancer{Locality: tc.setting},
				LocalityEnabled: tc.enabled,
				Local:           tc.local,
				LocalLabels:     tc.labels,
			}
			if diff := cmp.Diff(tc.want, levelOf(arrange(cfg, tc.hosts))); diff != "" {
				t.Errorf("levels (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArrangeDistributeWeights(t *testing.T) {
	hosts := []*Host{
		host("a1", "r1/z1/s1"), host("a2", "r1/z1/s1"),
		host("b1", "r2/z1/s1"),
		host("c1", "r2/z2/s1"), host("c2", "r2/z2/s1"), host("c3", "r2/z2/s1"),
		host("d1", "r3/z1/s1"),
	}
	tests := []struct {
		name  string
		local string
		rules []routing.LocalityDistribute
		// want is each locality's weight; localities absent get no
		// traffic.
		want map[string]uint64
	}{
		{
			name: "exact destinations", local: "r1/z1/s1",
			rules: []routing.LocalityDistribute{{From: "r1/z1/*", To: map[string]uint32{"r1/z1/s1": 80, "r2/z1/s1": 20}}},
			want:  map[string]uint64{"r1/z1/s1": 80, "r2/z1/s1": 20},
		},
		{
			// r2/* matches r2/z1 (weight 1) and r2/z2 (weight 3): 20 is
			// split 1:3 and rounded up, ceil(5) and ceil(15).
			name: "wildcard destination splits by locality weight", local: "r1/z1/s1",
			rules: []routing.LocalityDistribute{{From: "r1", To: map[string]uint32{"r1/*": 80, "r2/*": 20}}},
			want:  map[string]uint64{"r1/z1/s1": 80, "r2/z1/s1": 5, "r2/z2/s1": 15},
		},
		{
			name: "the more specific destination claims a locality", local: "r1/z1/s1",
			rules: []routing.LocalityDistribute{{From: "*", To: map[string]uint32{"r2/*": 30, "r2/z2/s1": 70}}},
			want:  map[string]uint64{"r2/z2/s1": 70, "r2/z1/s1": 30},
		},
		{
			name: "first matching rule wins", local: "r1/z1/s1",
			rules: []routing.LocalityDistribute{
				{From: "r9/*", To: map[string]uint32{"r3": 100}},
				{From: "r1/z1/s1", To: map[string]uint32{"r1": 100}},
				{From: "r1/*", To: map[string]uint32{"r2": 100}},
			},
			want: map[string]uint64{"r1/z1/s1": 100},
		},
		{
			name: "no rule for this proxy leaves localities as they are", local: "r1/z1/s1",
			rules: []routing.LocalityDistribute{{From: "r2", To: map[string]uint32{"r3": 100}}},
			want:  map[string]uint64{"r1/z1/s1": 2, "r2/z1/s1": 1, "r2/z2/s1": 3, "r3/z1/s1": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{
				LB:              routing.LoadBalancer{Locality: &routing.LocalityLB{Distribute: tc.rules}},
				LocalityEnabled: true,
				Local:           tc.local,
			}
			a := arrange(cfg, hosts)
			if len(a.levels) != 1 || !a.localityWeighted {
				t.Fatalf("got %d levels, locality weighted %v; want 1 level, weighted", len(a.levels), a.localityWeighted)
			}
			got := map[string]uint64{}
			for _, g := range a.levels[0] {
				got[g.locality] = g.weight
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("locality weights (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLocalityMatches(t *testing.T) {
	tests := []struct {
		locality, rule string
		want           bool
	}{
		{"r1/z1/s1", "r1/z1/s1", true},
		{"r1/z1/s1", "r1", true},
		{"r1/z1/s1", "r1/z1", true},
		{"r1/z1/s1", "r1/*", true},
		{"r1/z1/s1", "*", true},
		{"r1/z1/s1", "r1/z2", false},
		{"r1/z1/s1", "r2/*", false},
		{"r1/z1/s1", "r1/z1/s2", false},
		{"r1", "r1/z1", false},
	}
	for _, tc := range tests {
		if got := parseLocality(tc.locality).matches(tc.rule); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.locality, tc.rule, got, tc.want)
		}
	}
}

// byLocality sums pick counts per locality.
func byLocality(counts map[*Host]int) map[string]int {
	out := map[string]int{}
	for h, n := range counts {
		if h == nil {
			out["<nil>"] += n
			continue
		}
		out[h.Locality] += n
	}
	return out
}

func checkLocalityShares(t *testing.T, counts map[*Host]int, n int, want map[string]float64, tolerance float64) {
	t.Helper()
	got := byLocality(counts)
	for loc, share := range want {
		if g := float64(got[loc]) / float64(n); g < share-tolerance || g > share+tolerance {
			t.Errorf("locality %q share = %.4f, want %.4f ± %.3f", loc, g, share, tolerance)
		}
	}
	for loc, c := range got {
		if _, ok := want[loc]; !ok && c > 0 {
			t.Errorf("locality %q got %d picks, want none", loc, c)
		}
	}
}

func TestLocalityPrefersTheProxysSubzone(t *testing.T) {
	hosts := []*Host{
		host("a", "r1/z1/s1"), host("b", "r1/z1/s1"),
		host("c", "r1/z1/s2"), host("d", "r1/z2/s1"), host("e", "r2/z1/s1"),
	}
	for _, policy := range []routing.LBPolicy{routing.LBLeastRequest, routing.LBRoundRobin, routing.LBRandom, routing.LBRingHash, routing.LBMaglev} {
		t.Run(string(policy), func(t *testing.T) {
			p := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: hosts, LocalityEnabled: true, Local: "r1/z1/s1"})
			const n = 20_000
			checkLocalityShares(t, tally(p, nil, n), n, map[string]float64{"r1/z1/s1": 1}, 0)
		})
	}
}

func TestLocalitySpillsOverAsP0Degrades(t *testing.T) {
	// P0 has 3 of 5 hosts healthy: health 140×3/5 = 84%, so P0 keeps 84%
	// of traffic and P1, fully healthy, takes the other 16% (Envoy
	// priority load). The hash balancers choose the level by hash % 100.
	p0 := []*Host{host("a", "r1/z1/s1"), host("b", "r1/z1/s1"), host("c", "r1/z1/s1"), host("d", "r1/z1/s1"), host("e", "r1/z1/s1")}
	p1 := []*Host{host("f", "r1/z1/s2"), host("g", "r1/z1/s2")}
	hosts := append(append([]*Host{}, p0...), p1...)
	healthy := healthySet(p0[0], p0[1], p0[2], p1[0], p1[1])
	for _, policy := range []routing.LBPolicy{routing.LBLeastRequest, routing.LBRoundRobin, routing.LBRandom, routing.LBRingHash, routing.LBMaglev} {
		t.Run(string(policy), func(t *testing.T) {
			p := Build(Config{
				LB:              routing.LoadBalancer{Policy: policy},
				Hosts:           hosts,
				Healthy:         healthy,
				LocalityEnabled: true,
				Local:           "r1/z1/s1",
			})
			const n = 100_000
			counts := tally(p, nil, n)
			checkLocalityShares(t, counts, n, map[string]float64{"r1/z1/s1": 0.84, "r1/z1/s2": 0.16}, 0.01)
			if c := counts[p0[3]] + counts[p0[4]]; c != 0 {
				t.Errorf("unhealthy hosts picked %d times, want 0", c)
			}
		})
	}
}

func TestLocalityFailsOverToTheConfiguredRegion(t *testing.T) {
	hosts := []*Host{host("home", "r1/z1/s1"), host("r2", "r2/z1/s1"), host("r3", "r3/z1/s1")}
	tests := []struct {
		name    string
		setting *routing.LocalityLB
		want    map[string]float64
	}{
		{
			name:    "failover names r3",
			setting: &routing.LocalityLB{Failover: []routing.LocalityFailover{{From: "r1", To: "r3"}}},
			want:    map[string]float64{"r3/z1/s1": 1},
		},
		{
			name: "without failover other regions share one level",
			want: map[string]float64{"r2/z1/s1": 0.5, "r3/z1/s1": 0.5},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(Config{
				LB:              routing.LoadBalancer{Policy: routing.LBRoundRobin, Locality: tc.setting},
				Hosts:           hosts,
				Healthy:         healthySet(hosts[1], hosts[2]),
				LocalityEnabled: true,
				Local:           "r1/z1/s1",
			})
			const n = 20_000
			checkLocalityShares(t, tally(p, nil, n), n, tc.want, 0.02)
		})
	}
}

func TestFailoverPriorityPrefersMatchingLabels(t *testing.T) {
	hosts := []*Host{
		host("match-both", "r1/z1/s1", "net", "n1", "version", "v1"),
		host("match-net", "r1/z1/s1", "net", "n1", "version", "v2"),
		host("match-none", "r1/z1/s1", "net", "n2", "version", "v1"),
	}
	setting := &routing.LocalityLB{FailoverPriority: []string{"net", "version"}}
	tests := []struct {
		name    string
		healthy []*Host
		want    *Host
	}{
		{"all healthy", hosts, hosts[0]},
		{"best down", hosts[1:], hosts[1]},
		{"only the last left", hosts[2:], hosts[2]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(Config{
				LB:              routing.LoadBalancer{Policy: routing.LBLeastRequest, Locality: setting},
				Hosts:           hosts,
				Healthy:         healthySet(tc.healthy...),
				LocalityEnabled: true,
				Local:           "r1/z1/s1",
				LocalLabels:     map[string]string{"net": "n1", "version": "v1"},
			})
			counts := tally(p, nil, 5000)
			if counts[tc.want] != 5000 {
				t.Errorf("%s picked %d of 5000 times, want all", tc.want.Address, counts[tc.want])
			}
		})
	}
}

func TestDistributeSplitsTrafficByWeight(t *testing.T) {
	hosts := []*Host{
		host("a1", "r1/z1/s1"), host("a2", "r1/z1/s1"),
		host("b1", "r2/z2/s1"),
		host("c1", "r3/z1/s1"),
	}
	setting := &routing.LocalityLB{Distribute: []routing.LocalityDistribute{
		{From: "r1/z1/*", To: map[string]uint32{"r1/z1/*": 80, "r2/z2/*": 20}},
	}}
	for _, policy := range []routing.LBPolicy{routing.LBLeastRequest, routing.LBRoundRobin, routing.LBRandom, routing.LBRingHash, routing.LBMaglev} {
		t.Run(string(policy), func(t *testing.T) {
			p := Build(Config{
				LB:              routing.LoadBalancer{Policy: policy, Locality: setting},
				Hosts:           hosts,
				LocalityEnabled: true,
				Local:           "r1/z1/s1",
			})
			const n = 50_000
			counts := tally(p, nil, n)
			checkLocalityShares(t, counts, n, map[string]float64{"r1/z1/s1": 0.8, "r2/z2/s1": 0.2}, 0.02)
		})
	}
}

func TestLocalityWeightFollowsAvailability(t *testing.T) {
	// Envoy locality_weight.rst: X has weight 1 and Y weight 2; with half
	// of X's endpoints healthy X's effective weight is 1 × min(1, 1.4 ×
	// 0.5) = 0.7, so X gets 0.7/2.7 ≈ 26% of traffic. Here the weights are
	// Istio's sums of endpoint weights, 2 and 4, with explicit failover
	// turning on locality-weighted balancing.
	x := []*Host{host("x1", "r1/zx/s1"), host("x2", "r1/zx/s1")}
	y := []*Host{host("y1", "r1/zy/s1"), host("y2", "r1/zy/s1"), host("y3", "r1/zy/s1"), host("y4", "r1/zy/s1")}
	hosts := append(append([]*Host{}, x...), y...)
	p := Build(Config{
		LB: routing.LoadBalancer{
			Policy:   routing.LBRoundRobin,
			Locality: &routing.LocalityLB{Failover: []routing.LocalityFailover{{From: "r0", To: "r1"}}},
		},
		Hosts:           hosts,
		Healthy:         healthySet(x[0], y[0], y[1], y[2], y[3]),
		LocalityEnabled: true,
		Local:           "r0/z0/s0",
	})
	const n = 100_000
	checkLocalityShares(t, tally(p, nil, n), n, map[string]float64{"r1/zx/s1": 1.4 / 5.4, "r1/zy/s1": 4 / 5.4}, 0.01)
}
