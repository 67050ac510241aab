package lb

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// source is a picker's random numbers: math/rand/v2's global generator,
// which is lock-free and per-CPU, or, when seeded, a SplitMix64 sequence
// over an atomic counter, deterministic for a single goroutine.
type source struct {
	seeded bool
	state  atomic.Uint64
}

func newSource(seed uint64) *source {
	s := &source{seeded: seed != 0}
	s.state.Store(seed)
	return s
}

// uint64 returns a uniformly distributed 64-bit number.
func (s *source) uint64() uint64 {
	if !s.seeded {
		return rand.Uint64()
	}
	// SplitMix64 (Steele, Lea, Flood 2014): a Weyl sequence through a
	// bijective mixer.
	z := s.state.Add(0x9e3779b97f4a7c15)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// below returns a uniform number in [0, n), n > 0, by multiplying rather
// than dividing (Lemire 2019; the bias is below 2^-32 for any n a cluster
// has).
func (s *source) below(n int) int {
	hi, _ := bits.Mul64(s.uint64(), uint64(n))
	return int(hi)
}

// float64 returns a uniform number in [0, 1).
func (s *source) float64() float64 {
	return float64(s.uint64()>>11) * 0x1p-53
}

// aliasTable samples indices in proportion to fixed weights in O(1)
// (Walker's alias method, Vose's construction): a column is drawn
// uniformly, then either kept or swapped for its alias.
type aliasTable struct {
	// keep[i] is the probability of keeping column i, scaled to 2^64.
	keep  []uint64
	alias []uint32
}

// newAliasTable builds a table over weights, which must not all be 0.
func newAliasTable(weights []float64) aliasTable {
	n := len(weights)
	var sum float64
	for _, w := range weights {
		sum += w
	}
	scaled := make([]float64, n)
	var small, large []int
	for i, w := range weights {
		scaled[i] = w * float64(n) / sum
		if scaled[i] < 1 {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	t := aliasTable{keep: make([]uint64, n), alias: make([]uint32, n)}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		t.keep[s] = probability(scaled[s])
		t.alias[s] = uint32(l)
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What remains is 1 up to rounding: always keep.
	for _, i := range append(small, large...) {
		t.keep[i] = ^uint64(0)
		t.alias[i] = uint32(i)
	}
	return t
}

// probability scales p in [0, 1] to a threshold over 2^64.
func probability(p float64) uint64 {
	switch v := p * 0x1p64; {
	case v >= 0x1p64:
		return ^uint64(0)
	case v <= 0:
		return 0
	default:
		return uint64(v)
	}
}

// pick maps one random number to an index: its high part (times n)
// chooses the column, the low part decides between column and alias.
func (t *aliasTable) pick(r uint64) int {
	col, frac := bits.Mul64(r, uint64(len(t.keep)))
	if frac < t.keep[col] {
		return int(col)
	}
	return int(t.alias[col])
}
