package lb

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/routing"
)

func TestRoundRobinEqualWeightsVisitsHostsInTurn(t *testing.T) {
	for _, n := range []int{2, 3, 7} {
		hosts := newHosts(n)
		p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBRoundRobin}, Hosts: hosts, Seed: 1})
		first := p.Pick(nil)
		start := -1
		for i, h := range hosts {
			if h == first {
				start = i
			}
		}
		// Envoy's unweighted round robin: hosts in order from a random
		// start.
		for k := 1; k < 10*n; k++ {
			if got, want := p.Pick(nil), hosts[(start+k)%n]; got != want {
				t.Fatalf("n=%d: pick %d = %s, want %s", n, k, got.Address, want.Address)
			}
		}
	}
}

func TestRoundRobinWeightedIsExactPerCycle(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
	}{
		{"small", []uint32{1, 2, 3, 4}},
		{"one heavy", []uint32{1, 1, 1, 10}},
		{"large weights", []uint32{100, 250, 650}},
		{"coprime total", []uint32{3, 5, 7, 11}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hosts := weighted(tc.weights...)
			p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBRoundRobin}, Hosts: hosts, Seed: 7})
			var cycle uint32
			for _, w := range tc.weights {
				cycle += w
			}
			picks := make([]*Host, 5*cycle)
			for i := range picks {
				picks[i] = p.Pick(nil)
			}
			// Every window of one cycle, wherever it starts, holds each
			// host exactly its weight's number of times.
			want := map[string]int{}
			for i, h := range hosts {
				want[h.Address] = int(tc.weights[i])
			}
			for start := 0; start+int(cycle) <= len(picks); start += int(cycle) / 3 {
				got := map[string]int{}
				for _, h := range picks[start : start+int(cycle)] {
					got[h.Address]++
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("picks [%d, %d) counts differ from weights (-want +got):\n%s", start, start+int(cycle), diff)
				}
			}
		})
	}
}

func TestRoundRobinWeightedInterleaves(t *testing.T) {
	// EDF spreads a heavy host's picks through the cycle rather than
	// sending them in a burst; the golden stride must too. With weights
	// 1,1,1,1,4 the heavy host should never be picked more than twice in
	// a row.
	hosts := weighted(1, 1, 1, 1, 4)
	p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBRoundRobin}, Hosts: hosts, Seed: 3})
	run, longest := 0, 0
	for range 800 {
		if p.Pick(nil) == hosts[4] {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	if longest > 2 {
		t.Errorf("heavy host picked %d times in a row, want at most 2", longest)
	}
}

func TestGoldenStrideIsCoprime(t *testing.T) {
	for total := uint64(1); total < 2000; total++ {
		s := goldenStride(total)
		if gcd(s, total) != 1 {
			t.Fatalf("goldenStride(%d) = %d, shares a factor with the total", total, s)
		}
	}
}
