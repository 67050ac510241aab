package lb

import (
	"testing"

	"github.com/michi-mesh/michi/internal/routing"
)

func TestRandomIsUniform(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
	}{
		{"equal weights", []uint32{1, 1, 1, 1}},
		// Envoy's RANDOM ignores endpoint weights (random_lb.cc).
		{"weights ignored", []uint32{1, 5, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hosts := weighted(tc.weights...)
			p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBRandom}, Hosts: hosts})
			const n = 50_000
			checkShares(t, tally(p, nil, n), n, hosts, []float64{0.25, 0.25, 0.25, 0.25}, 0.02)
		})
	}
}

func TestSeedMakesPicksReproducible(t *testing.T) {
	hosts := newHosts(50)
	cfg := Config{LB: routing.LoadBalancer{Policy: routing.LBRandom}, Hosts: hosts, Seed: 42}
	a, b := Build(cfg), Build(cfg)
	for i := range 1000 {
		if ha, hb := a.Pick(nil), b.Pick(nil); ha != hb {
			t.Fatalf("pick %d: %s and %s from pickers with the same seed", i, ha.Address, hb.Address)
		}
	}
}
