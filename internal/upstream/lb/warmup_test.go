package lb

import (
	"math"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestWarmupFactor(t *testing.T) {
	window := 10 * time.Second
	tests := []struct {
		name       string
		minPercent float64
		aggression float64
		addedAt    time.Time
		now        time.Time
		want       float64
	}{
		{"just added: minimum", 10, 1, epoch, epoch, 0.1},
		{"a quarter in, linear", 10, 1, epoch, epoch.Add(window / 4), 0.25},
		{"aggression 2 ramps faster", 10, 2, epoch, epoch.Add(window / 4), 0.5},
		{"aggression 0.5 ramps slower", 0, 0.5, epoch, epoch.Add(window / 2), 0.25},
		{"minimum wins early", 40, 1, epoch, epoch.Add(window / 4), 0.4},
		{"no minimum: at least 1ms of age", 0, 1, epoch, epoch, 0.0001},
		{"window over", 10, 1, epoch, epoch.Add(window), 1},
		{"long after", 10, 1, epoch, epoch.Add(time.Hour), 1},
		{"not warming", 10, 1, time.Time{}, epoch, 1},
		{"invalid aggression means 1", 10, -3, epoch, epoch.Add(window / 4), 0.25},
		{"added in the future", 10, 1, epoch.Add(time.Second), epoch, 0.1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWarmup(&routing.Warmup{Duration: window, MinPercent: tc.minPercent, Aggression: tc.aggression})
			if got := w.factor(tc.addedAt, tc.now); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("factor = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWarmupRampsNewHostsUp(t *testing.T) {
	const window = 10 * time.Second
	warm := &routing.Warmup{Duration: window, MinPercent: 10, Aggression: 1}
	tests := []struct {
		name    string
		policy  routing.LBPolicy
		weights []uint32
		active  []int64
		// age is the second host's age at the pick; the first host is an
		// original member and never warms up.
		age time.Duration
		// noClock picks with a zero Now.
		noClock bool
		want    []float64
	}{
		// The new host's weight is scaled by 0.25: 1 : 0.25.
		{"round robin", routing.LBRoundRobin, []uint32{1, 1}, nil, window / 4, false, []float64{0.8, 0.2}},
		{"round robin weighted", routing.LBRoundRobin, []uint32{1, 3}, nil, window / 4, false, []float64{1 / 1.75, 0.75 / 1.75}},
		{"least request", routing.LBLeastRequest, []uint32{1, 1}, nil, window / 4, false, []float64{0.8, 0.2}},
		// 2/(1+1) : 1×0.5 = 1 : 0.5.
		{"least request with load", routing.LBLeastRequest, []uint32{2, 1}, []int64{1, 0}, window / 2, false, []float64{2.0 / 3, 1.0 / 3}},
		// Below the minimum the factor holds at 10%: 1 : 0.1.
		{"minimum weight", routing.LBRoundRobin, []uint32{1, 1}, nil, time.Millisecond, false, []float64{1 / 1.1, 0.1 / 1.1}},
		{"after the window", routing.LBRoundRobin, []uint32{1, 1}, nil, window, false, []float64{0.5, 0.5}},
		{"no clock, no warmup", routing.LBRoundRobin, []uint32{1, 1}, nil, window / 4, true, []float64{0.5, 0.5}},
		{"random has no slow start", routing.LBRandom, []uint32{1, 1}, nil, window / 4, false, []float64{0.5, 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hosts := weighted(tc.weights...)
			for i, a := range tc.active {
				hosts[i].Active.Store(a)
			}
			hosts[1].AddedAt = epoch
			p := Build(Config{LB: routing.LoadBalancer{Policy: tc.policy, Warmup: warm}, Hosts: hosts, Seed: 5})
			ctx := &PickContext{Now: epoch.Add(tc.age)}
			if tc.noClock {
				ctx.Now = time.Time{}
			}
			const n = 50_000
			checkShares(t, tally(p, ctx, n), n, hosts, tc.want, 0.02)
		})
	}
}

func TestWarmupEndsExactly(t *testing.T) {
	// Once every host is past its window the pickers go back to their
	// fast paths: round robin is exact again.
	hosts := newHosts(2)
	hosts[1].AddedAt = epoch
	p := Build(Config{LB: routing.LoadBalancer{Policy: routing.LBRoundRobin, Warmup: &routing.Warmup{Duration: time.Minute, MinPercent: 10, Aggression: 1}}, Hosts: hosts})
	counts := tally(p, &PickContext{Now: epoch.Add(time.Minute)}, 1000)
	if counts[hosts[0]] != 500 || counts[hosts[1]] != 500 {
		t.Errorf("counts = %d, %d, want 500, 500", counts[hosts[0]], counts[hosts[1]])
	}
}
