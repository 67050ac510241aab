package upstream

import (
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
)

// switchable answers with a status code the test can change.
type switchable struct{ code atomic.Int64 }

func newSwitchable(code int) *switchable {
	s := &switchable{}
	s.code.Store(int64(code))
	return s
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(int(s.code.Load()))
}

// outlierSetup is a Manager on a fake clock with a cluster over the given
// backends and outlier detection od.
type outlierSetup struct {
	m     *Manager
	c     *Cluster
	clock *fakeClock
	ticks *tickers
}

func newOutlierSetup(t *testing.T, od routing.OutlierDetection, addrs ...string) *outlierSetup {
	t.Helper()
	s := &outlierSetup{clock: newFakeClock(), ticks: &tickers{}}
	s.m = newManager(t, Options{Now: s.clock.Now, NewTicker: s.ticks.newTicker})
	cfg := httpCluster("c", addrs...)
	cfg.Policy.Outlier = &od
	s.c = update(t, s.m, cfg)["c"]
	return s
}

// endpoint returns the status of addr.
func (s *outlierSetup) endpoint(t *testing.T, addr string) EndpointStatus {
	t.Helper()
	for _, cs := range s.m.Status() {
		if cs.Name != "c" {
			continue
		}
		for _, es := range cs.Endpoints {
			if es.Address == addr {
				return es
			}
		}
	}
	t.Fatalf("no endpoint %s", addr)
	return EndpointStatus{}
}

// istioOutlier is an OutlierDetection as the compiler fills it for
// consecutive5xxErrors n and maxEjectionPercent 100.
func istioOutlier(n uint32) routing.OutlierDetection {
	return routing.OutlierDetection{
		Consecutive5xx:     n,
		Interval:           10 * time.Second,
		BaseEjectionTime:   30 * time.Second,
		MaxEjectionTime:    300 * time.Second,
		MaxEjectionPercent: 100,
	}
}

func TestConsecutive5xxEjectsAndReturns(t *testing.T) {
	bad := newBackend(t, status(500), false)
	good := newBackend(t, ok, false)
	s := newOutlierSetup(t, istioOutlier(3), bad.addr(), good.addr())

	badHits := 0
	for badHits < 3 {
		if s.endpoint(t, bad.addr()).Ejected {
			t.Fatalf("ejected after %d errors, want after 3", badHits)
		}
		code, _, att, err := get(t, s.c, AttemptOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if att.Endpoint == bad.addr() {
			badHits++
			if code != 500 {
				t.Fatalf("bad endpoint answered %d", code)
			}
		}
	}
	es := s.endpoint(t, bad.addr())
	if !es.Ejected || !es.Healthy || es.EjectionCount != 1 || es.EjectedFor != 30*time.Second {
		t.Fatalf("after 3 consecutive 500s: %+v, want ejected (not failing active checks) for 30s, once", es)
	}
	for name, want := range map[string]int64{
		"outlier_detection.ejections_active":                   1,
		"outlier_detection.ejections_enforced_total":           1,
		"outlier_detection.ejections_enforced_consecutive_5xx": 1,
		"outlier_detection.ejections_detected_consecutive_5xx": 1,
		"membership_healthy":                                   1,
		"membership_total":                                     2,
	} {
		if got := stat(t, s.m, "c", name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	for range 20 {
		_, _, att, err := get(t, s.c, AttemptOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if att.Endpoint != good.addr() {
			t.Fatalf("request went to ejected endpoint %s", att.Endpoint)
		}
	}

	// The ejection lasts base_ejection_time; the host returns at the
	// first sweep after it.
	s.clock.Advance(29 * time.Second)
	s.c.sweep(s.clock.Now())
	if !s.endpoint(t, bad.addr()).Ejected {
		t.Fatal("returned before the ejection time passed")
	}
	if got := s.endpoint(t, bad.addr()).EjectedFor; got != time.Second {
		t.Errorf("EjectedFor = %v one second before the end, want 1s", got)
	}
	s.clock.Advance(time.Second)
	s.c.sweep(s.clock.Now())
	if s.endpoint(t, bad.addr()).Ejected {
		t.Fatal("still ejected after the ejection time")
	}
	if got := stat(t, s.m, "c", "outlier_detection.ejections_active"); got != 0 {
		t.Errorf("outlier_detection.ejections_active = %d after return, want 0", got)
	}
	seen := map[string]bool{}
	for range 4 {
		_, _, att, _ := get(t, s.c, AttemptOptions{})
		seen[att.Endpoint] = true
	}
	if !seen[bad.addr()] {
		t.Error("returned endpoint gets no traffic")
	}
}

func TestSweepOnTheIntervalTimer(t *testing.T) {
	bad := newBackend(t, status(503), false)
	good := newBackend(t, ok, false)
	s := newOutlierSetup(t, istioOutlier(1), bad.addr(), good.addr())
	for !s.endpoint(t, bad.addr()).Ejected {
		get(t, s.c, AttemptOptions{})
	}
	s.clock.Advance(30 * time.Second)
	s.ticks.tick(s.clock.Now())
	s.ticks.tick(s.clock.Now()) // returns once the first sweep is done
	if s.endpoint(t, bad.addr()).Ejected {
		t.Error("the interval timer did not return the endpoint after its ejection time")
	}
}

// ejectBad sends requests until bad is ejected.
func (s *outlierSetup) ejectBad(t *testing.T, bad string) EndpointStatus {
	t.Helper()
	for range 100 {
		if es := s.endpoint(t, bad); es.Ejected {
			return es
		}
		get(t, s.c, AttemptOptions{})
	}
	t.Fatalf("%s was never ejected", bad)
	return EndpointStatus{}
}

func TestEjectionMultiplierGrowsAndDecays(t *testing.T) {
	bad := newBackend(t, status(500), false)
	good := newBackend(t, ok, false)
	od := istioOutlier(1)
	od.MaxEjectionTime = 60 * time.Second
	s := newOutlierSetup(t, od, bad.addr(), good.addr())

	back := func(after time.Duration) {
		t.Helper()
		s.clock.Advance(after)
		s.c.sweep(s.clock.Now())
		if s.endpoint(t, bad.addr()).Ejected {
			t.Fatalf("still ejected %v later", after)
		}
	}
	if es := s.ejectBad(t, bad.addr()); es.EjectedFor != 30*time.Second {
		t.Fatalf("first ejection lasts %v, want 30s (base)", es.EjectedFor)
	}
	back(30 * time.Second)
	if es := s.ejectBad(t, bad.addr()); es.EjectedFor != 60*time.Second || es.EjectionCount != 2 {
		t.Fatalf("second ejection = %+v, want 60s (2 × base), count 2", es)
	}
	back(60 * time.Second)
	if es := s.ejectBad(t, bad.addr()); es.EjectedFor != 60*time.Second {
		t.Fatalf("third ejection lasts %v, want 60s (capped by max ejection time)", es.EjectedFor)
	}
	back(60 * time.Second)
	// Healthy intervals decrement the multiplier (3 after the third
	// ejection): three sweeps an interval apart bring it to 0, so the
	// next ejection lasts the base time again.
	for range 3 {
		s.clock.Advance(10 * time.Second)
		s.c.sweep(s.clock.Now())
	}
	if es := s.ejectBad(t, bad.addr()); es.EjectedFor != 30*time.Second {
		t.Fatalf("ejection after the multiplier decayed lasts %v, want 30s", es.EjectedFor)
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name        string
		percent     uint32
		wantEjected int
	}{
		// Envoy ejects a host only if the ejected share including it
		// stays within the limit: at Istio's default of 10%, three hosts
		// are never ejected (one is 33%).
		{name: "istio default 10%", percent: 10, wantEjected: 0},
		{name: "34%", percent: 34, wantEjected: 1},
		{name: "67%", percent: 67, wantEjected: 2},
		{name: "100%", percent: 100, wantEjected: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var addrs []string
			for range 3 {
				addrs = append(addrs, newBackend(t, status(500), false).addr())
			}
			od := istioOutlier(2)
			od.MaxEjectionPercent = tc.percent
			s := newOutlierSetup(t, od, addrs...)
			for range 30 {
				get(t, s.c, AttemptOptions{})
			}
			if got := stat(t, s.m, "c", "outlier_detection.ejections_active"); got != int64(tc.wantEjected) {
				t.Errorf("ejections_active = %d, want %d", got, tc.wantEjected)
			}
			if tc.wantEjected < 3 {
				if got := stat(t, s.m, "c", "outlier_detection.ejections_overflow"); got == 0 {
					t.Error("ejections_overflow = 0, want the refused ejections counted")
				}
			}
		})
	}
}

func TestPanicThreshold(t *testing.T) {
	tests := []struct {
		name      string
		minHealth uint32
		wantBad   bool // the ejected endpoint still gets traffic
	}{
		{name: "istio default 0 disables panic", minHealth: 0, wantBad: false},
		{name: "50% healthy is not below 50", minHealth: 50, wantBad: false},
		{name: "below the threshold ignores health", minHealth: 60, wantBad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := newBackend(t, status(500), false)
			good := newBackend(t, ok, false)
			od := istioOutlier(1)
			od.MinHealthPercent = tc.minHealth
			s := newOutlierSetup(t, od, bad.addr(), good.addr())
			s.ejectBad(t, bad.addr())
			gotBad := false
			for range 20 {
				_, _, att, _ := get(t, s.c, AttemptOptions{})
				gotBad = gotBad || att.Endpoint == bad.addr()
			}
			if gotBad != tc.wantBad {
				t.Errorf("ejected endpoint picked = %v, want %v", gotBad, tc.wantBad)
			}
		})
	}
}

func TestAllEjectedIsUH(t *testing.T) {
	bad := newBackend(t, status(502), false)
	s := newOutlierSetup(t, istioOutlier(1), bad.addr())
	s.ejectBad(t, bad.addr())
	if _, _, _, err := get(t, s.c, AttemptOptions{}); flagOf(err) != "UH" {
		t.Errorf("request with the only endpoint ejected and panic disabled = %v, want UH", err)
	}
}

func TestConsecutiveGatewayErrors(t *testing.T) {
	h := newSwitchable(500)
	b := newBackend(t, h, false)
	od := istioOutlier(0) // 5xx detector off
	od.ConsecutiveGatewayErrors = 2
	s := newOutlierSetup(t, od, b.addr())
	send := func(code int) {
		t.Helper()
		h.code.Store(int64(code))
		if _, _, _, err := get(t, s.c, AttemptOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		send(500)
	}
	if s.endpoint(t, b.addr()).Ejected {
		t.Fatal("500s ejected with only the gateway detector on")
	}
	send(503)
	send(500) // a non-gateway 5xx resets the gateway count
	send(504)
	if s.endpoint(t, b.addr()).Ejected {
		t.Fatal("ejected after non-consecutive gateway errors")
	}
	send(502)
	if !s.endpoint(t, b.addr()).Ejected {
		t.Fatal("not ejected after 2 consecutive gateway errors")
	}
	if got := stat(t, s.m, "c", "outlier_detection.ejections_enforced_consecutive_gateway_failure"); got != 1 {
		t.Errorf("ejections_enforced_consecutive_gateway_failure = %d, want 1", got)
	}
}

func TestSuccessResetsConsecutiveErrors(t *testing.T) {
	h := newSwitchable(500)
	b := newBackend(t, h, false)
	s := newOutlierSetup(t, istioOutlier(3), b.addr())
	for _, code := range []int{500, 500, 200, 500, 500, 404, 500, 500} {
		h.code.Store(int64(code))
		get(t, s.c, AttemptOptions{})
	}
	if s.endpoint(t, b.addr()).Ejected {
		t.Fatal("ejected although no 3 errors were consecutive")
	}
	h.code.Store(500)
	get(t, s.c, AttemptOptions{})
	if !s.endpoint(t, b.addr()).Ejected {
		t.Fatal("not ejected after 3 consecutive 500s")
	}
}

func TestOutlierErrorCodes(t *testing.T) {
	h := newSwitchable(500)
	b := newBackend(t, h, false)
	od := istioOutlier(2)
	od.ErrorCodes = []int{404}
	s := newOutlierSetup(t, od, b.addr())
	for range 4 {
		get(t, s.c, AttemptOptions{})
	}
	if s.endpoint(t, b.addr()).Ejected {
		t.Fatal("500s ejected although only 404 is an error")
	}
	h.code.Store(404)
	get(t, s.c, AttemptOptions{})
	get(t, s.c, AttemptOptions{})
	if !s.endpoint(t, b.addr()).Ejected {
		t.Fatal("not ejected after 2 consecutive 404s listed as errors")
	}
}

// closedPort is an address that refuses connections.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestLocalOriginErrors(t *testing.T) {
	tests := []struct {
		name  string
		split bool
	}{
		// Without the split, connect failures are 503s to the 5xx
		// detector; with it they only count as local-origin failures.
		{name: "not split: counted as 5xx", split: false},
		{name: "split: counted as local origin", split: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dead := closedPort(t)
			good := newBackend(t, ok, false)
			od := istioOutlier(2)
			od.SplitExternalLocalOriginErrors = tc.split
			od.ConsecutiveLocalOriginFailures = 2
			s := newOutlierSetup(t, od, dead, good.addr())
			s.ejectBad(t, dead)
			typ := "consecutive_5xx"
			if tc.split {
				typ = "consecutive_local_origin_failure"
			}
			if got := stat(t, s.m, "c", "outlier_detection.ejections_enforced_"+typ); got != 1 {
				t.Errorf("ejections_enforced_%s = %d, want 1", typ, got)
			}
		})
	}
}

func TestSplitModeIgnoresLocalErrorsFor5xx(t *testing.T) {
	dead := closedPort(t)
	od := istioOutlier(1)
	od.SplitExternalLocalOriginErrors = true
	od.ConsecutiveLocalOriginFailures = 0 // local detector off
	s := newOutlierSetup(t, od, dead)
	for range 5 {
		if _, _, _, err := get(t, s.c, AttemptOptions{}); flagOf(err) != "UF" {
			t.Fatalf("request = %v, want UF", err)
		}
	}
	if s.endpoint(t, dead).Ejected {
		t.Error("connect failures ejected through the 5xx detector in split mode")
	}
}
