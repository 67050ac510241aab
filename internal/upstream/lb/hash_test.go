package lb

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/michi-mesh/michi/internal/routing"
)

var hashPolicies = []routing.LBPolicy{routing.LBRingHash, routing.LBMaglev}

// requestKeys returns n fixed request hashes.
func requestKeys(n int) []uint64 {
	r := rand.New(rand.NewPCG(1, 2))
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64()
	}
	return keys
}

func pickHash(p Picker, key uint64) *Host {
	return p.Pick(&PickContext{Hash: key, HasHash: true})
}

func TestHashIsSticky(t *testing.T) {
	for _, policy := range hashPolicies {
		t.Run(string(policy), func(t *testing.T) {
			hosts := newHosts(20)
			p := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: hosts})
			// Another proxy that lists the same hosts in another order
			// must agree: tables are built in address order.
			reversed := slices.Clone(hosts)
			slices.Reverse(reversed)
			other := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: reversed, Seed: 9})
			seen := map[*Host]bool{}
			for _, key := range requestKeys(2000) {
				h := pickHash(p, key)
				seen[h] = true
				if again := pickHash(p, key); again != h {
					t.Fatalf("key %x: picked %s then %s", key, h.Address, again.Address)
				}
				if o := pickHash(other, key); o != h {
					t.Fatalf("key %x: %s here, %s with hosts reordered", key, h.Address, o.Address)
				}
			}
			if len(seen) != len(hosts) {
				t.Errorf("2000 keys reached %d hosts, want all %d", len(seen), len(hosts))
			}
		})
	}
}

// movedFraction is the fraction of keys that map to a different host
// after hosts change from before to after.
func movedFraction(policy routing.LBPolicy, before, after []*Host, keys []uint64) float64 {
	a := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: before})
	b := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: after})
	moved := 0
	for _, key := range keys {
		if pickHash(a, key) != pickHash(b, key) {
			moved++
		}
	}
	return float64(moved) / float64(len(keys))
}

func TestRingHashMovesAboutOneNthOfKeys(t *testing.T) {
	// Removing one of N hosts moves its 1/N of keys, and more: Envoy
	// scales every host's point count so the ring keeps its minimum size
	// (ceil(1024/N) points per host becomes ceil(1024/(N-1))), and the
	// survivors' new points take keys from each other too. The total
	// stays within [0.5/N, 2/N].
	keys := requestKeys(100_000)
	for _, n := range []int{3, 5, 10, 20, 50} {
		hosts := newHosts(n)
		for name, change := range map[string][2][]*Host{
			"remove": {hosts, hosts[:n-1]},
			"add":    {hosts[:n-1], hosts},
		} {
			got := movedFraction(routing.LBRingHash, change[0], change[1], keys)
			if lo, hi := 0.5/float64(n), 2/float64(n); got < lo || got > hi {
				t.Errorf("N=%d %s one host: moved %.4f of keys, want within [%.4f, %.4f]", n, name, got, lo, hi)
			}
		}
	}
}

func TestMaglevMovesAboutOneNthOfKeys(t *testing.T) {
	// Maglev's filling keeps most slots when a host leaves; Envoy's docs
	// allow about twice ring hash's disruption, and here it is close to
	// the ideal 1/N.
	keys := requestKeys(50_000)
	for _, n := range []int{3, 5, 10, 20, 50} {
		hosts := newHosts(n)
		got := movedFraction(routing.LBMaglev, hosts, hosts[:n-1], keys)
		if lo, hi := 0.5/float64(n), 2/float64(n); got < lo || got > hi {
			t.Errorf("N=%d remove one host: moved %.4f of keys, want within [%.4f, %.4f]", n, got, lo, hi)
		}
	}
}

func TestHashHonoursWeights(t *testing.T) {
	tests := []struct {
		policy    routing.LBPolicy
		tolerance float64
	}{
		// 1024 points split 171/342/513: arcs vary around their mean.
		{routing.LBRingHash, 0.02},
		// Slots are exactly proportional; only key sampling varies.
		{routing.LBMaglev, 0.01},
	}
	for _, tc := range tests {
		t.Run(string(tc.policy), func(t *testing.T) {
			hosts := weighted(1, 2, 3)
			p := Build(Config{LB: routing.LoadBalancer{Policy: tc.policy}, Hosts: hosts})
			counts := map[*Host]int{}
			keys := requestKeys(100_000)
			for _, key := range keys {
				counts[pickHash(p, key)]++
			}
			checkShares(t, counts, len(keys), hosts, []float64{1.0 / 6, 2.0 / 6, 3.0 / 6}, tc.tolerance)
		})
	}
}

func TestRingSizeFollowsEnvoy(t *testing.T) {
	tests := []struct {
		name     string
		weights  []uint32
		minSize  uint64
		maxSize  uint64
		wantSize int
		wantPer  []int
	}{
		// ceil(1024/3) = 342 points each.
		{"equal weights default minimum", []uint32{1, 1, 1}, 0, maxRingSize, 1026, []int{342, 342, 342}},
		// Lightest host gets ceil(1024/6) = 171; scale 1026.
		{"weighted", []uint32{1, 2, 3}, 0, maxRingSize, 1026, []int{171, 342, 513}},
		{"configured minimum", []uint32{1, 1}, 4096, maxRingSize, 4096, []int{2048, 2048}},
		{"minimum above maximum", []uint32{1, 1}, 1 << 30, 64, 64, []int{32, 32}},
		// A light host would need 1000 points to get 1; the cap scales
		// everyone down, fractions carried over.
		{"capped weighted", []uint32{1, 999}, 1024, 100, 100, []int{1, 99}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hosts := weighted(tc.weights...)
			plan := levelPlan{hosts: hosts, healthy: hosts}
			r := newRing(hashEntries(&plan), tc.minSize, tc.maxSize)
			if len(r.hashes) != tc.wantSize {
				t.Errorf("ring size = %d, want %d", len(r.hashes), tc.wantSize)
			}
			per := make([]int, len(hosts))
			for _, o := range r.owners {
				per[o]++
			}
			if !slices.Equal(per, tc.wantPer) {
				t.Errorf("points per host = %v, want %v", per, tc.wantPer)
			}
			if !slices.IsSorted(r.hashes) {
				t.Error("ring points are not sorted")
			}
		})
	}
}

func TestRingPointsAreXXHashOfAddressAndIndex(t *testing.T) {
	// Envoy hashes "<address>_<n>" with xxHash64, seed 0; a proxy built
	// the same way places every host at the same points.
	hosts := newHosts(1)
	plan := levelPlan{hosts: hosts, healthy: hosts}
	r := newRing(hashEntries(&plan), 4, maxRingSize)
	want := make([]uint64, 4)
	for n := range want {
		want[n] = xxhash.Sum64String(fmt.Sprintf("%s_%d", hosts[0].Address, n))
	}
	slices.Sort(want)
	if !slices.Equal(r.hashes, want) {
		t.Errorf("ring points = %x, want %x", r.hashes, want)
	}
}

func TestRingLookupFindsFirstPointAtOrAfterHash(t *testing.T) {
	a, b := &Host{Address: "a"}, &Host{Address: "b"}
	// Points spread over several buckets, two sharing one.
	const top = 1 << 60
	r := &ring{
		hashes: []uint64{100, 200, 5*top + 1, 5*top + 50, 15*top + 7},
		owners: []uint32{0, 1, 0, 1, 0},
		hosts:  []*Host{a, b},
	}
	r.index()
	tests := []struct {
		hash    uint64
		attempt int
		want    *Host
	}{
		{0, 0, a},
		{100, 0, a},
		{101, 0, b},
		{200, 0, b},
		{250, 0, a}, // the next point is in a later bucket
		{5 * top, 0, a},
		{5*top + 2, 0, b},
		{5*top + 51, 0, a},
		{15*top + 7, 0, a},
		{15*top + 8, 0, a}, // past the last point: wraps to the first
		{^uint64(0), 0, a}, // the last bucket
		{101, 1, a},        // a retry moves one point along
		{15*top + 7, 1, a}, // and wraps
		{15*top + 7, 2, b},
	}
	for _, tc := range tests {
		if got := r.lookup(tc.hash, tc.attempt); got != tc.want {
			t.Errorf("lookup(%d, %d) = %s, want %s", tc.hash, tc.attempt, got.Address, tc.want.Address)
		}
	}
}

func TestMaglevTableIsFilledInProportionToWeight(t *testing.T) {
	hosts := weighted(1, 2, 3, 4)
	plan := levelPlan{hosts: hosts, healthy: hosts}
	m := newMaglev(hashEntries(&plan), 0)
	if len(m.table) != defaultMaglevTableSize {
		t.Fatalf("table size = %d, want %d", len(m.table), defaultMaglevTableSize)
	}
	per := make([]int, len(hosts))
	for _, i := range m.table {
		per[i]++
	}
	for i, h := range hosts {
		want := float64(defaultMaglevTableSize) * float64(h.Weight) / 10
		if d := float64(per[i]) - want; d > 4 || d < -4 {
			t.Errorf("host %d (weight %d) has %d slots, want %.0f ± 4", i, h.Weight, per[i], want)
		}
	}
}

func TestMaglevTableSizeIsPrime(t *testing.T) {
	hosts := newHosts(3)
	plan := levelPlan{hosts: hosts, healthy: hosts}
	for _, tc := range []struct{ size, want uint64 }{{0, 65537}, {251, 251}, {1000, 1009}} {
		if got := len(newMaglev(hashEntries(&plan), tc.size).table); uint64(got) != tc.want {
			t.Errorf("table size for %d = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestHashWithoutKeyPicksAtRandom(t *testing.T) {
	for _, policy := range hashPolicies {
		t.Run(string(policy), func(t *testing.T) {
			hosts := newHosts(4)
			p := Build(Config{LB: routing.LoadBalancer{Policy: policy}, Hosts: hosts, Seed: 3})
			const n = 50_000
			// Ring arcs are uneven with 256 points per host, so allow
			// for them.
			checkShares(t, tally(p, nil, n), n, hosts, []float64{0.25, 0.25, 0.25, 0.25}, 0.05)
		})
	}
}

func TestRingBucketsAgreeWithFullSearch(t *testing.T) {
	for _, n := range []int{1, 3, 100} {
		hosts := newHosts(n)
		plan := levelPlan{hosts: hosts, healthy: hosts}
		r := newRing(hashEntries(&plan), 0, maxRingSize)
		keys := append(requestKeys(20_000), 0, ^uint64(0), r.hashes[0], r.hashes[len(r.hashes)-1], r.hashes[len(r.hashes)-1]+1)
		for _, key := range keys {
			i, _ := slices.BinarySearch(r.hashes, key)
			want := r.hosts[r.owners[i%len(r.hashes)]]
			if got := r.lookup(key, 0); got != want {
				t.Fatalf("%d hosts, hash %x: lookup = %s, want %s", n, key, got.Address, want.Address)
			}
		}
	}
}

func TestMaglevTableMatchesEnvoysPermutation(t *testing.T) {
	// The table written plainly as Envoy's MaglevTable fills it: host i's
	// permutation is (offset + skip×next) mod size, hosts in address order
	// taking turns by weight.
	reference := func(entries []weightedHost, size uint64) []uint32 {
		offset, skip, next := make([]uint64, len(entries)), make([]uint64, len(entries)), make([]uint64, len(entries))
		target := make([]float64, len(entries))
		var maxWeight float64
		for i, e := range entries {
			d := xxhash.NewWithSeed(1)
			d.WriteString(e.host.Address)
			offset[i] = xxhash.Sum64String(e.host.Address) % size
			skip[i] = d.Sum64()%(size-1) + 1
			maxWeight = max(maxWeight, e.weight)
		}
		table := make([]uint32, size)
		taken := make([]bool, size)
		for filled, round := uint64(0), 1; filled < size; round++ {
			for i := 0; i < len(entries) && filled < size; i++ {
				if float64(round)*entries[i].weight < target[i] {
					continue
				}
				target[i] += maxWeight
				c := (offset[i] + skip[i]*next[i]) % size
				for taken[c] {
					next[i]++
					c = (offset[i] + skip[i]*next[i]) % size
				}
				table[c], taken[c] = uint32(i), true
				next[i]++
				filled++
			}
		}
		return table
	}
	for _, tc := range []struct {
		weights []uint32
		size    uint64
	}{
		{[]uint32{1, 1, 1}, 251},
		{[]uint32{1, 2, 3, 4, 5}, 1009},
		{[]uint32{7, 1, 1, 3}, 65537},
	} {
		hosts := weighted(tc.weights...)
		plan := levelPlan{hosts: hosts, healthy: hosts}
		entries := hashEntries(&plan)
		if got, want := newMaglev(entries, tc.size).table, reference(entries, tc.size); !slices.Equal(got, want) {
			t.Errorf("weights %v size %d: table differs from the reference fill", tc.weights, tc.size)
		}
	}
}
