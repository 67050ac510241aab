package lb

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/michi-mesh/michi/internal/routing"
)

// benchPolicies are the algorithms benchmarked, with the weighted variants
// that take other paths.
var benchPolicies = []struct {
	name     string
	policy   routing.LBPolicy
	weighted bool
}{
	{"LEAST_REQUEST", routing.LBLeastRequest, false},
	{"LEAST_REQUEST_weighted", routing.LBLeastRequest, true},
	{"ROUND_ROBIN", routing.LBRoundRobin, false},
	{"ROUND_ROBIN_weighted", routing.LBRoundRobin, true},
	{"RANDOM", routing.LBRandom, false},
	{"RING_HASH", routing.LBRingHash, false},
	{"MAGLEV", routing.LBMaglev, false},
}

func benchHosts(n int, weighted bool) []*Host {
	hosts := newHosts(n)
	for i, h := range hosts {
		h.Active.Store(int64(i % 4))
		if weighted {
			h.Weight = uint32(1 + i%5)
		}
	}
	return hosts
}

func BenchmarkPick(b *testing.B) {
	for _, bp := range benchPolicies {
		for _, n := range []int{3, 100, 1000} {
			b.Run(bp.name+"/"+strconv.Itoa(n), func(b *testing.B) {
				p := Build(Config{LB: routing.LoadBalancer{Policy: bp.policy}, Hosts: benchHosts(n, bp.weighted)})
				ctx := &PickContext{HasHash: true}
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					ctx.Hash = uint64(i) * 0x9e3779b97f4a7c15
					if p.Pick(ctx) == nil {
						b.Fatal("no host")
					}
				}
			})
		}
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, bp := range benchPolicies {
		b.Run(bp.name+"/100", func(b *testing.B) {
			p := Build(Config{LB: routing.LoadBalancer{Policy: bp.policy}, Hosts: benchHosts(100, bp.weighted)})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := &PickContext{HasHash: true}
				for i := 0; pb.Next(); i++ {
					ctx.Hash = uint64(i) * 0x9e3779b97f4a7c15
					p.Pick(ctx)
				}
			})
		})
	}
}

func BenchmarkBuild(b *testing.B) {
	tests := []struct {
		policy routing.LBPolicy
		size   uint64
	}{
		{routing.LBRingHash, 1024},
		{routing.LBRingHash, 65536},
		{routing.LBMaglev, 65537},
	}
	for _, tc := range tests {
		for _, n := range []int{10, 100} {
			b.Run(fmt.Sprintf("%s/%d/hosts=%d", tc.policy, tc.size, n), func(b *testing.B) {
				cfg := Config{LB: routing.LoadBalancer{Policy: tc.policy, MinRingSize: tc.size, MaglevTableSize: tc.size}, Hosts: newHosts(n)}
				b.ReportAllocs()
				for b.Loop() {
					Build(cfg)
				}
			})
		}
	}
}
