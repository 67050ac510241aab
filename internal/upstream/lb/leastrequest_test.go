package lb

import (
	"slices"
	"testing"

	"github.com/michi-mesh/michi/internal/routing"
)

func TestLeastRequestPowerOfTwoFavoursFewerActive(t *testing.T) {
	// Equal weights: two samples with replacement, the less busy wins. For
	// three hosts ranked by Active the least busy is picked unless both
	// samples miss it, 1-(2/3)² = 5/9; the middle one when neither sample
	// is the least busy and one is the middle, (2/3)²-(1/3)² = 3/9; the
	// busiest only when both samples are it, 1/9.
	hosts := newHosts(3)
	hosts[0].Active.Store(10)
	hosts[1].Active.Store(0)
	hosts[2].Active.Store(5)
	p := Build(Config{Hosts: hosts, Seed: 11}) // unset policy: LEAST_REQUEST
	const n = 100_000
	counts := tally(p, nil, n)
	checkShares(t, counts, n, hosts, []float64{1.0 / 9, 5.0 / 9, 3.0 / 9}, 0.015)
}

func TestLeastRequestPowerOfTwoTiesKeepDistributionUniform(t *testing.T) {
	hosts := newHosts(4)
	p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBLeastRequest}, Hosts: hosts, Seed: 5})
	const n = 50_000
	checkShares(t, tally(p, nil, n), n, hosts, []float64{0.25, 0.25, 0.25, 0.25}, 0.02)
}

func TestLeastRequestWeightedDividesByActivePlusOne(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
		active  []int64
		want    []float64
	}{
		// weight/(active+1) = 1, 2, 1.
		{"idle and busy", []uint32{1, 2, 3}, []int64{0, 0, 2}, []float64{0.25, 0.5, 0.25}},
		// All idle: shares follow the weights.
		{"idle", []uint32{1, 2, 3}, []int64{0, 0, 0}, []float64{1.0 / 6, 2.0 / 6, 3.0 / 6}},
		// All busy enough that rejection sampling often gives up and the
		// exact scan decides: weights/(31) keep the weight ratio.
		{"all busy", []uint32{1, 2, 3}, []int64{30, 30, 30}, []float64{1.0 / 6, 2.0 / 6, 3.0 / 6}},
		// 4/1, 1/1, 5/4 → 4 : 1 : 1.25.
		{"mixed", []uint32{4, 1, 5}, []int64{0, 0, 3}, []float64{4 / 6.25, 1 / 6.25, 1.25 / 6.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hosts := weighted(tc.weights...)
			for i, a := range tc.active {
				hosts[i].Active.Store(a)
			}
			p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBLeastRequest}, Hosts: hosts, Seed: 13})
			const n = 50_000
			checkShares(t, tally(p, nil, n), n, hosts, tc.want, 0.02)
		})
	}
}

func TestLeastRequestSteersLoadToTheIdleHost(t *testing.T) {
	// A closed loop: requests that land on the slow host stay in flight
	// ten times longer. Least request must send it far less than its
	// equal share, unlike round robin.
	hosts := newHosts(3)
	slow := hosts[0]
	p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBLeastRequest}, Hosts: hosts, Seed: 17})
	type inflight struct {
		h    *Host
		done int
	}
	var queue []inflight
	counts := map[*Host]int{}
	for tick := range 30_000 {
		for len(queue) > 0 && queue[0].done <= tick {
			queue[0].h.Active.Add(-1)
			queue = queue[1:]
		}
		h := p.Pick(nil)
		counts[h]++
		h.Active.Add(1)
		d := 3
		if h == slow {
			d = 30
		}
		// Keep the queue ordered by completion.
		i := len(queue)
		for i > 0 && queue[i-1].done > tick+d {
			i--
		}
		queue = slices.Insert(queue, i, inflight{h, tick + d})
	}
	if got := float64(counts[slow]) / 30_000; got > 0.2 {
		t.Errorf("slow host share = %.3f, want well under 1/3 (<= 0.2)", got)
	}
}
