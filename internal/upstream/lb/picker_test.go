package lb

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// scenario is a picker configuration and a pick context exercising one
// path through Pick.
type scenario struct {
	name string
	cfg  Config
	ctx  *PickContext
}

// scenarios covers every algorithm and the paths around them: weights,
// slow start, locality levels and weights, panic, exclusion, hashing.
func scenarios(n int) []scenario {
	equal := newHosts(n)
	uneven := newHosts(n)
	for i, h := range uneven {
		h.Weight = uint32(1 + i%5)
		h.Active.Store(int64(i % 3))
	}
	warming := newHosts(n)
	for i, h := range warming {
		if i%2 == 0 {
			h.AddedAt = epoch
		}
	}
	localities := newHosts(n)
	for i, h := range localities {
		h.Locality = fmt.Sprintf("r%d/z%d/s1", i%2, i%3)
	}
	everyOther := func(h *Host) bool { return h.Address[len(h.Address)-6]%2 == 0 }
	warm := &routing.Warmup{Duration: time.Minute, MinPercent: 10, Aggression: 1.5}
	now := &PickContext{Now: epoch.Add(20 * time.Second)}
	hashed := &PickContext{Hash: 0x9e3779b97f4a7c15, HasHash: true}
	excludeFirst := &PickContext{Exclude: func(h *Host) bool { return h == equal[0] }, Attempts: 2, Hash: 12345, HasHash: true}
	distribute := &routing.LocalityLB{Distribute: []routing.LocalityDistribute{{From: "*", To: map[string]uint32{"r0": 70, "r1": 30}}}}

	var out []scenario
	for _, policy := range []routing.LBPolicy{routing.LBLeastRequest, routing.LBRoundRobin, routing.LBRandom, routing.LBRingHash, routing.LBMaglev} {
		lb := routing.LoadBalancer{Policy: policy}
		out = append(out,
			scenario{string(policy) + "/equal", Config{LB: lb, Hosts: equal}, hashed},
			scenario{string(policy) + "/weighted", Config{LB: lb, Hosts: uneven}, hashed},
			scenario{string(policy) + "/no-hash", Config{LB: lb, Hosts: equal}, nil},
			scenario{string(policy) + "/exclude", Config{LB: lb, Hosts: equal}, excludeFirst},
			scenario{string(policy) + "/panic", Config{LB: lb, Hosts: equal, Healthy: everyOther, PanicThreshold: 80}, hashed},
			scenario{string(policy) + "/locality", Config{LB: lb, Hosts: localities, Healthy: everyOther, LocalityEnabled: true, Local: "r0/z0/s1"}, hashed},
		)
		lb.Locality = distribute
		out = append(out, scenario{string(policy) + "/distribute", Config{LB: lb, Hosts: localities, LocalityEnabled: true, Local: "r0/z0/s1"}, hashed})
		lb = routing.LoadBalancer{Policy: policy, Warmup: warm}
		out = append(out, scenario{string(policy) + "/warmup", Config{LB: lb, Hosts: warming}, now})
	}
	return out
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, sc := range scenarios(100) {
		p := Build(sc.cfg)
		if allocs := testing.AllocsPerRun(1000, func() { p.Pick(sc.ctx) }); allocs != 0 {
			t.Errorf("%s: Pick allocates %v times per call, want 0", sc.name, allocs)
		}
	}
}

func TestConcurrentPicks(t *testing.T) {
	// Pickers are shared by every request goroutine; run them in parallel
	// with Active moving under them (go test -race checks the rest).
	for _, sc := range scenarios(20) {
		t.Run(sc.name, func(t *testing.T) {
			p := Build(sc.cfg)
			const goroutines, picks = 8, 2000
			var wg sync.WaitGroup
			nils := make([]int, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					for range picks {
						h := p.Pick(sc.ctx)
						if h == nil {
							nils[g]++
							continue
						}
						h.Active.Add(1)
						h.Active.Add(-1)
					}
				})
			}
			wg.Wait()
			for g, n := range nils {
				if n > 0 {
					t.Errorf("goroutine %d got %d nil picks, want a host every time", g, n)
				}
			}
		})
	}
}
