package lb

import "github.com/cespare/xxhash/v2"

// defaultMaglevTableSize is Envoy's and Istio's default Maglev table size.
const defaultMaglevTableSize = 65537

// maglev is Envoy's MAGLEV (Eisenbud et al., NSDI 2016): a lookup table
// of prime size in which each host claims slots along its own permutation,
// in proportion to its weight. A request goes to table[hash % size].
type maglev struct {
	table []uint32 // indexes hosts
	hosts []*Host
}

// newMaglev fills the table as Envoy's MaglevTable does. Host i's
// permutation starts at xxHash64(address) % size and steps by
// xxHash64(address, seed 1) % (size-1) + 1; hosts take turns claiming the
// next free slot of their permutation, a host of weight w taking a turn in
// w/maxWeight of the rounds. size must be prime for every step to reach
// every slot; a size that is not is raised to the next prime (Envoy
// rejects it, and Istio's validation does too).
func newMaglev(entries []weightedHost, size uint64) *maglev {
	m := &maglev{hosts: make([]*Host, len(entries))}
	if len(entries) == 0 {
		return m
	}
	if size == 0 {
		size = defaultMaglevTableSize
	}
	size = nextPrime(size)

	builders := make([]maglevBuilder, len(entries))
	var maxWeight float64
	seeded := xxhash.NewWithSeed(1)
	for i, e := range entries {
		m.hosts[i] = e.host
		seeded.ResetWithSeed(1)
		seeded.WriteString(e.host.Address)
		builders[i] = maglevBuilder{
			slot:   xxhash.Sum64String(e.host.Address) % size,
			skip:   seeded.Sum64()%(size-1) + 1,
			weight: e.weight,
		}
		maxWeight = max(maxWeight, e.weight)
	}

	const empty = ^uint32(0)
	m.table = make([]uint32, size)
	for i := range m.table {
		m.table[i] = empty
	}
	filled := uint64(0)
	for round := 1.0; filled < size; round++ {
		for i := range builders {
			if filled == size {
				break
			}
			b := &builders[i]
			// A host of the maximum weight takes a turn every round, one
			// of a third of it every third round.
			if round*b.weight < b.target {
				continue
			}
			b.target += maxWeight
			for m.table[b.slot] != empty {
				b.advance(size)
			}
			m.table[b.slot] = uint32(i)
			b.advance(size)
			filled++
		}
	}
	return m
}

// maglevBuilder walks one host's permutation, offset + k×skip (mod size),
// a step at a time; slot is the current position.
type maglevBuilder struct {
	slot, skip     uint64
	weight, target float64
}

// advance moves to the next slot of the permutation without dividing:
// slot and skip are both below size.
func (b *maglevBuilder) advance(size uint64) {
	b.slot += b.skip
	if b.slot >= size {
		b.slot -= size
	}
}

// lookup returns table[hash % size]. A retry attempt flips the hash's
// bits with -attempt first, as Envoy does, to land far from the original
// slot.
func (m *maglev) lookup(hash uint64, attempt int) *Host {
	if len(m.table) == 0 {
		return nil
	}
	if attempt > 0 {
		hash ^= -uint64(attempt)
	}
	return m.hosts[m.table[hash%uint64(len(m.table))]]
}

// nextPrime returns the smallest prime >= n (n >= 2).
func nextPrime(n uint64) uint64 {
	for n = max(n, 2); !isPrime(n); n++ {
	}
	return n
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
