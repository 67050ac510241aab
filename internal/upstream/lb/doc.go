// Package lb implements Envoy's load-balancing algorithms as immutable
// pickers, with the locality, priority and health behaviour Istio
// configures around them:
//
//   - LEAST_REQUEST (Istio's default): power of two choices on active
//     requests; with unequal weights or during slow start, hosts in
//     proportion to weight/(active+1).
//   - ROUND_ROBIN: weighted, each host exactly its weight per cycle.
//   - RANDOM: uniform; Envoy ignores endpoint weights here.
//   - RING_HASH: Ketama ring of xxHash64 points, as Envoy builds it.
//   - MAGLEV: Envoy's weighted Maglev table.
//
// Around every algorithm: priority levels from Istio's locality failover,
// failoverPriority and distribute settings (istio loadbalancer.go), Envoy's
// priority loads with the 1.4 overprovisioning factor, per-level panic
// mode, locality-weighted selection, slow start (Istio warmup) and the
// retry host predicate (PickContext.Exclude).
//
// # Role and contract
//
// The upstream cluster runtime calls Build whenever a cluster's hosts,
// their health or its configuration change, and swaps the new Picker in
// atomically; the data path calls Pick. A Picker is a snapshot and never
// changes. Pick is safe for concurrent use, never blocks or locks, and
// does not allocate; the only state it touches is atomics: round-robin
// positions, the seeded random source, and Host.Active, which the caller
// maintains and which outlives pickers.
//
// The package is pure computation. It imports routing (the compiled
// load-balancer settings) and xxhash, and nothing from the data plane or
// the rest of upstream.
//
// # Where pickers differ from Envoy's
//
// Envoy's schedulers are per worker thread and mutable; pickers here are
// shared by every goroutine and immutable, so the deterministic EDF
// schedules become lock-free equivalents with the same proportions:
// weighted round robin walks the weight line with a golden-ratio stride
// (exact per cycle), weighted least request samples by static weight and
// keeps a host with probability 1/(active+1) (exact in expectation), and
// localities are chosen at random by effective weight rather than in EDF
// order.
package lb
