package lb

import (
	"fmt"
	"math"
	"testing"
)

// newHosts returns n hosts of weight 1 with distinct addresses.
func newHosts(n int) []*Host {
	hosts := make([]*Host, n)
	for i := range hosts {
		hosts[i] = &Host{Address: fmt.Sprintf("10.%d.%d.%d:8080", i/65536, i/256%256, i%256), Weight: 1}
	}
	return hosts
}

// weighted returns hosts with the given weights.
func weighted(weights ...uint32) []*Host {
	hosts := newHosts(len(weights))
	for i, w := range weights {
		hosts[i].Weight = w
	}
	return hosts
}

// tally picks n times and counts the hosts picked (nil included).
func tally(p Picker, ctx *PickContext, n int) map[*Host]int {
	counts := map[*Host]int{}
	for range n {
		counts[p.Pick(ctx)]++
	}
	return counts
}

// checkShares checks that each host got its wanted share of n picks
// within tolerance (an absolute fraction).
func checkShares(t *testing.T, counts map[*Host]int, n int, hosts []*Host, want []float64, tolerance float64) {
	t.Helper()
	for i, h := range hosts {
		got := float64(counts[h]) / float64(n)
		if math.Abs(got-want[i]) > tolerance {
			t.Errorf("host %d (%s) share = %.4f, want %.4f ± %.3f", i, h.Address, got, want[i], tolerance)
		}
	}
}

// healthySet returns a Healthy func true for exactly the given hosts.
func healthySet(hosts ...*Host) func(*Host) bool {
	set := map[*Host]bool{}
	for _, h := range hosts {
		set[h] = true
	}
	return func(h *Host) bool { return set[h] }
}
