package lb

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/routing"
)

func TestPriorityLoads(t *testing.T) {
	tests := []struct {
		name      string
		levels    []levelCount
		threshold uint32
		wantLoad  []uint32
		wantPanic []bool
	}{
		// Envoy priority.rst: P0's share as its healthy percentage falls,
		// with the 1.4 overprovisioning factor.
		{"P0 healthy", []levelCount{{100, 100}, {100, 100}}, 0, []uint32{100, 0}, []bool{false, false}},
		{"P0 72% healthy", []levelCount{{100, 72}, {100, 100}}, 0, []uint32{100, 0}, []bool{false, false}},
		{"P0 71% healthy", []levelCount{{100, 71}, {100, 100}}, 0, []uint32{99, 1}, []bool{false, false}},
		{"P0 50% healthy", []levelCount{{100, 50}, {100, 100}}, 0, []uint32{70, 30}, []bool{false, false}},
		{"P0 25% healthy", []levelCount{{100, 25}, {100, 100}}, 0, []uint32{35, 65}, []bool{false, false}},
		{"P0 down", []levelCount{{100, 0}, {100, 100}}, 0, []uint32{0, 100}, []bool{false, false}},
		// Both degraded: normalized total 56% scales the loads up.
		{"both 20% healthy", []levelCount{{10, 2}, {10, 2}}, 0, []uint32{50, 50}, []bool{false, false}},
		{"three levels", []levelCount{{10, 3}, {10, 3}, {10, 10}}, 0, []uint32{42, 42, 16}, []bool{false, false, false}},
		// Panic needs a normalized total below 100%.
		{"low P0 but total fine", []levelCount{{10, 1}, {10, 10}}, 50, []uint32{14, 86}, []bool{false, false}},
		{"P0 in panic, P1 not", []levelCount{{10, 2}, {10, 5}}, 50, []uint32{29, 71}, []bool{true, false}},
		{"both in panic is total panic", []levelCount{{10, 2}, {10, 3}}, 50, []uint32{50, 50}, []bool{true, true}},
		{"single level in panic", []levelCount{{10, 4}}, 50, []uint32{100}, []bool{true}},
		{"single level above threshold", []levelCount{{10, 6}}, 50, []uint32{100}, []bool{false}},
		// 80% healthy is below 90%, but 80% × 1.4 makes the total health
		// 100%, and Envoy never panics then.
		{"full total health never panics", []levelCount{{10, 8}}, 90, []uint32{100}, []bool{false}},
		// Every level in panic: split by host count.
		{"total panic", []levelCount{{3, 0}, {1, 0}}, 50, []uint32{75, 25}, []bool{true, true}},
		{"total panic rounding", []levelCount{{1, 0}, {1, 0}, {1, 0}}, 50, []uint32{34, 33, 33}, []bool{true, true, true}},
		// Threshold 0: panic disabled; no healthy host leaves P0 with
		// all traffic and nothing to pick.
		{"panic disabled all down", []levelCount{{3, 0}, {1, 0}}, 0, []uint32{100, 0}, []bool{false, false}},
		{"panic disabled partly down", []levelCount{{10, 1}}, 0, []uint32{100}, []bool{false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			load, panic := priorityLoads(tc.levels, tc.threshold)
			if diff := cmp.Diff(tc.wantLoad, load); diff != "" {
				t.Errorf("load (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantPanic, panic); diff != "" {
				t.Errorf("panic (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPanicThreshold(t *testing.T) {
	hosts := newHosts(10)
	tests := []struct {
		name      string
		healthy   []*Host
		threshold float64
		// wantAll: picks spread over all hosts (panic); otherwise only
		// over healthy ones. wantNil: nothing to pick.
		wantAll, wantNil bool
	}{
		{"above threshold uses healthy hosts", hosts[:6], 50, false, false},
		{"below threshold ignores health", hosts[:4], 50, true, false},
		{"threshold rounds like Envoy", hosts[:4], 40.4, false, false},
		{"none healthy with threshold is total panic", nil, 50, true, false},
		{"threshold 0 keeps health", hosts[:1], 0, false, false},
		{"threshold 0 and none healthy picks nothing", nil, 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(Config{
				LB:             routing.LoadBalancer{Policy: routing.LBRoundRobin},
				Hosts:          hosts,
				Healthy:        healthySet(tc.healthy...),
				PanicThreshold: tc.threshold,
			})
			counts := tally(p, nil, 1000)
			switch {
			case tc.wantNil:
				if counts[nil] != 1000 {
					t.Fatalf("got %d nil picks of 1000, want all nil", counts[nil])
				}
			case tc.wantAll:
				for _, h := range hosts {
					if counts[h] != 100 {
						t.Errorf("host %s picked %d times, want 100 (round robin over all 10)", h.Address, counts[h])
					}
				}
			default:
				for _, h := range tc.healthy {
					if want := 1000 / len(tc.healthy); counts[h] < want-1 || counts[h] > want+1 {
						t.Errorf("healthy host %s picked %d times, want %d", h.Address, counts[h], want)
					}
				}
				picked := 0
				for _, h := range tc.healthy {
					picked += counts[h]
				}
				if picked != 1000 {
					t.Errorf("%d of 1000 picks went to unhealthy hosts", 1000-picked)
				}
			}
		})
	}
}

func TestNothingToPick(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"passthrough", Config{LB: routing.LoadBalancer{Policy: routing.LBPassthrough}, Hosts: newHosts(3)}},
		{"no hosts", Config{LB: routing.LoadBalancer{Policy: routing.LBRoundRobin}}},
		{"nil hosts", Config{LB: routing.LoadBalancer{Policy: routing.LBRingHash}, Hosts: []*Host{nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(tc.cfg)
			if p == nil {
				t.Fatal("Build returned nil, want a picker")
			}
			if h := p.Pick(&PickContext{}); h != nil {
				t.Errorf("Pick = %s, want nil", h.Address)
			}
		})
	}
}
