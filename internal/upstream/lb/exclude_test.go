package lb

import (
	"math"
	"testing"

	"github.com/michi-mesh/michi/internal/routing"
)

func TestExcludeRepicksUpToAttempts(t *testing.T) {
	// With one of four hosts excluded, a random pick misses it on the
	// first try 3/4 of the time, and each re-pick gets another chance:
	// the excluded host comes back only if all 1+Attempts picks land on
	// it, (1/4)^(1+Attempts).
	for _, policy := range []routing.LBPolicy{routing.LBRandom, routing.LBLeastRequest} {
		for _, attempts := range []int{0, 1, 3} {
			hosts := newHosts(4)
			p := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: hosts, Seed: 21})
			ctx := &PickContext{Exclude: func(h *Host) bool { return h == hosts[0] }, Attempts: attempts}
			const n = 100_000
			got := float64(tally(p, ctx, n)[hosts[0]]) / n
			want := math.Pow(0.25, float64(1+attempts))
			if math.Abs(got-want) > 0.1*want+0.001 {
				t.Errorf("%s attempts=%d: excluded host share = %.5f, want %.5f", policy, attempts, got, want)
			}
		}
	}
}

func TestExcludeRoundRobinMovesOn(t *testing.T) {
	hosts := newHosts(3)
	p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBRoundRobin}, Hosts: hosts})
	ctx := &PickContext{Exclude: func(h *Host) bool { return h == hosts[1] }, Attempts: 1}
	counts := tally(p, ctx, 3000)
	if counts[hosts[1]] != 0 {
		t.Errorf("excluded host picked %d times, want 0: round robin's next host is another one", counts[hosts[1]])
	}
	if counts[hosts[0]] == 0 || counts[hosts[2]] == 0 {
		t.Errorf("counts %d, %d for the other hosts, want both picked", counts[hosts[0]], counts[hosts[2]])
	}
}

func TestExcludeEverythingReturnsLastPick(t *testing.T) {
	for _, policy := range []routing.LBPolicy{routing.LBRoundRobin, routing.LBLeastRequest, routing.LBRandom, routing.LBRingHash, routing.LBMaglev} {
		calls := 0
		ctx := &PickContext{Exclude: func(*Host) bool { calls++; return true }, Attempts: 4, Hash: 99, HasHash: true}
		p := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: newHosts(3)})
		if h := p.Pick(ctx); h == nil {
			t.Errorf("%s: Pick = nil, want the last host tried", policy)
		}
		if calls != 5 {
			t.Errorf("%s: Exclude called %d times, want 1 + Attempts = 5", policy, calls)
		}
	}
}

func TestExcludeHashFindsAnotherHost(t *testing.T) {
	// Envoy's thread-aware balancers keep the hash and vary the attempt:
	// ring hash steps along the ring, Maglev rehashes. Each re-pick then
	// lands on another host unless it hits the same one again, so with
	// ten hosts and three re-picks nearly every key escapes.
	for _, policy := range hashPolicies {
		t.Run(string(policy), func(t *testing.T) {
			hosts := newHosts(10)
			p := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: hosts})
			keys := requestKeys(5000)
			stuck := 0
			for _, key := range keys {
				first := pickHash(p, key)
				ctx := &PickContext{Hash: key, HasHash: true, Attempts: 3, Exclude: func(h *Host) bool { return h == first }}
				second := p.Pick(ctx)
				if second == first {
					stuck++
				}
				if again := p.Pick(ctx); again != second {
					t.Fatalf("key %x: retry picked %s then %s; a retry must be deterministic", key, second.Address, again.Address)
				}
			}
			if got := float64(stuck) / float64(len(keys)); got > 0.01 {
				t.Errorf("%.4f of keys stuck on the excluded host, want <= 0.01", got)
			}
		})
	}
}
