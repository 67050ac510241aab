package lb

import (
	"math"
	"math/bits"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Envoy's ring_hash_lb_config bounds; Istio sets only the minimum.
const (
	defaultMinRingSize = 1024
	maxRingSize        = 8 << 20
)

// ring is Envoy's RING_HASH (Ketama): each host is hashed onto a ring of
// 64-bit points in proportion to its weight, and a request goes to the
// first point at or after its hash, wrapping around.
type ring struct {
	// hashes are the points in increasing order; owners[i] indexes hosts
	// for hashes[i].
	hashes []uint64
	owners []uint32
	hosts  []*Host
	// buckets[b] is the index of the first point whose top bits are >= b,
	// with buckets[len-1] = len(hashes): a lookup searches only its own
	// bucket, about one point, instead of the whole ring.
	buckets []uint32
	shift   uint
}

// newRing builds the ring as Envoy's RingHashLoadBalancer::Ring does. The
// scale is chosen so that the lightest host gets a whole number of points
// and the ring has at least minSize points (0 means the default) and at
// most maxSize; heavier hosts get proportionally more, with running sums
// carrying fractions over. Host h's points are xxHash64("<address>_<n>")
// for n = 0, 1, ...
func newRing(entries []weightedHost, minSize, maxSize uint64) *ring {
	r := &ring{hosts: make([]*Host, len(entries))}
	if len(entries) == 0 {
		return r
	}
	if minSize == 0 {
		minSize = defaultMinRingSize
	}
	minSize = min(minSize, maxSize)
	minWeight := 1.0
	for _, e := range entries {
		minWeight = min(minWeight, e.weight)
	}
	scale := min(math.Ceil(minWeight*float64(minSize))/minWeight, float64(maxSize))

	type point struct {
		hash  uint64
		owner uint32
	}
	points := make([]point, 0, uint64(math.Ceil(scale)))
	var current, target float64
	var key []byte
	for i, e := range entries {
		r.hosts[i] = e.host
		key = append(append(key[:0], e.host.Address...), '_')
		prefix := len(key)
		target += scale * e.weight
		for n := uint64(0); current < target; n++ {
			key = strconv.AppendUint(key[:prefix], n, 10)
			points = append(points, point{hash: xxhash.Sum64(key), owner: uint32(i)})
			current++
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		default:
			return int(a.owner) - int(b.owner)
		}
	})
	r.hashes = make([]uint64, len(points))
	r.owners = make([]uint32, len(points))
	for i, p := range points {
		r.hashes[i] = p.hash
		r.owners[i] = p.owner
	}
	r.index()
	return r
}

// index builds the buckets: as many as points, rounded to a power of two
// between 2^4 and 2^16, keyed by the points' top bits.
func (r *ring) index() {
	width := min(max(bits.Len(uint(len(r.hashes))), 4), 16)
	r.shift = uint(64 - width)
	r.buckets = make([]uint32, 1<<width+1)
	i := 0
	for b := range r.buckets {
		for i < len(r.hashes) && r.hashes[i]>>r.shift < uint64(b) {
			i++
		}
		r.buckets[b] = uint32(i)
	}
}

// lookup returns the owner of the first point at or after hash. A retry
// attempt moves that many points along the ring, as Envoy does; it may
// land on the same host again.
func (r *ring) lookup(hash uint64, attempt int) *Host {
	n := len(r.hashes)
	if n == 0 {
		return nil
	}
	// The first point at or after hash is in hash's bucket, or else it is
	// the first point of a later bucket, buckets[b+1].
	b := hash >> r.shift
	lo, hi := int(r.buckets[b]), int(r.buckets[b+1])
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.hashes[mid] < hash {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == n || attempt > 0 {
		lo = (lo + attempt) % n
	}
	return r.hosts[r.owners[lo]]
}
