package dataplane

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTimeout(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    timeout: 100ms
`)
	start := time.Now()
	resp := p.get("http://reviews:9080/", map[string]string{"x-test-delay": "2s"})
	if resp.StatusCode != 504 || string(resp.body) != "upstream request timeout" {
		t.Fatalf("status %d body %q, want 504 upstream request timeout", resp.StatusCode, resp.body)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("timeout took %v, want about 100ms", el)
	}
	if line := p.lastLog(1); !strings.Contains(line, " 504 UT ") {
		t.Errorf("access log %q lacks 504 UT", line)
	}
	if resp := p.get("http://reviews:9080/", map[string]string{"x-test-delay": "10ms"}); resp.StatusCode != 200 {
		t.Errorf("fast request: status %d, want 200", resp.StatusCode)
	}
}

func TestNoTimeoutByDefault(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, "")
	// Istio disables Envoy's 15s default route timeout; a slow upstream is
	// waited for.
	if resp := p.get("http://reviews:9080/", map[string]string{"x-test-delay": "300ms"}); resp.StatusCode != 200 {
		t.Errorf("slow request without timeout: status %d, want 200", resp.StatusCode)
	}
}

func TestRetries(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /5xx}}]
    route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 3, retryOn: 5xx}
  - match: [{uri: {prefix: /codes}}]
    route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 2, retryOn: "retriable-status-codes,418"}
  - match: [{uri: {prefix: /off}}]
    route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 0}
  - match: [{uri: {prefix: /pertry}}]
    route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 2, perTryTimeout: 50ms, retryOn: 5xx}
  - match: [{uri: {prefix: /gateway}}]
    route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 2, retryOn: gateway-error}
  - route: [{destination: {host: reviews, subset: v1}}]
`)
	// v1 fails the first n tries of each test request, then answers 200.
	var fails, tries atomic.Int64
	var status atomic.Int64
	var bodiesMu sync.Mutex
	var gotBodies []string
	bi.v1.setHandler(func(w http.ResponseWriter, r *http.Request) {
		tries.Add(1)
		if r.Method == "POST" {
			bi.v1.mu.Lock()
			b := bi.v1.lastBody
			bi.v1.mu.Unlock()
			bodiesMu.Lock()
			gotBodies = append(gotBodies, string(b))
			bodiesMu.Unlock()
		}
		if fails.Add(-1) >= 0 {
			w.WriteHeader(int(status.Load()))
			return
		}
		w.Header().Set("X-Attempt", r.Header.Get("X-Envoy-Attempt-Count"))
		w.WriteHeader(200)
	})
	tests := []struct {
		name      string
		method    string
		path      string
		status    int
		fails     int64
		wantCode  int
		wantTries int64
		wantFlags string
	}{
		{"5xx retried until success", "GET", "/5xx", 503, 2, 200, 3, "-"},
		{"5xx retries exhausted returns the last response", "GET", "/5xx", 500, 10, 500, 4, "URX"},
		{"4xx not retried on 5xx", "GET", "/5xx", 404, 1, 404, 1, "-"},
		{"numeric code retried", "GET", "/codes", 418, 1, 200, 2, "-"},
		{"other code not retried", "GET", "/codes", 503, 1, 503, 1, "-"},
		{"attempts 0 disables retries", "GET", "/off", 503, 1, 503, 1, "-"},
		{"default policy does not retry 503 (Istio 1.24+)", "GET", "/default", 503, 1, 503, 1, "-"},
		{"gateway-error retries 502", "GET", "/gateway", 502, 1, 200, 2, "-"},
		{"gateway-error does not retry 500", "GET", "/gateway", 500, 1, 500, 1, "-"},
		{"POST body replayed on retry", "POST", "/5xx", 503, 1, 200, 2, "-"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fails.Store(tc.fails)
			status.Store(int64(tc.status))
			tries.Store(0)
			bodiesMu.Lock()
			gotBodies = nil
			bodiesMu.Unlock()
			body := ""
			if tc.method == "POST" {
				body = "payload-123"
			}
			resp := p.do(tc.method, "http://reviews:9080"+tc.path, nil, body)
			if resp.StatusCode != tc.wantCode || tries.Load() != tc.wantTries {
				t.Fatalf("status %d after %d tries, want %d after %d", resp.StatusCode, tries.Load(), tc.wantCode, tc.wantTries)
			}
			if tc.wantCode == 200 {
				if got := resp.Header.Get("X-Attempt"); got != strconv.FormatInt(tc.wantTries, 10) {
					t.Errorf("x-envoy-attempt-count on the last try = %q, want %d", got, tc.wantTries)
				}
			}
			fields := strings.Fields(p.lastLog(i + 1))
			if len(fields) < 6 || fields[5] != tc.wantFlags {
				t.Errorf("access log flags in %q, want %q", p.lastLog(i+1), tc.wantFlags)
			}
			bodiesMu.Lock()
			defer bodiesMu.Unlock()
			for _, b := range gotBodies {
				if b != body {
					t.Errorf("try received body %q, want %q", b, body)
				}
			}
		})
	}
	t.Run("per-try timeout retried", func(t *testing.T) {
		var n atomic.Int64
		bi.v1.setHandler(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				time.Sleep(300 * time.Millisecond)
			}
			w.WriteHeader(200)
		})
		resp := p.get("http://reviews:9080/pertry", nil)
		if resp.StatusCode != 200 || n.Load() != 2 {
			t.Errorf("status %d after %d tries, want 200 after 2", resp.StatusCode, n.Load())
		}
	})
	t.Run("backoff is jittered within Envoy's bounds", func(t *testing.T) {
		p.sleepMu.Lock()
		sleeps := append([]time.Duration(nil), p.sleeps...)
		p.sleepMu.Unlock()
		if len(sleeps) == 0 {
			t.Fatal("no backoff recorded")
		}
		for _, d := range sleeps {
			if d < 0 || d >= 250*time.Millisecond {
				t.Errorf("backoff %v outside [0, 250ms)", d)
			}
		}
	})
}

func TestRetryConnectFailureOtherHost(t *testing.T) {
	good := newBackend(t, "good")
	// A port that refuses connections: listen, note the port, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, dead, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	p := newProxy(t, render(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: flaky}
spec:
  hosts: [flaky.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: `+dead+`}}
  - {address: 127.0.0.1, ports: {http: {{.good}}}}
`, good))
	// Istio's default policy retries connect failures on another host, so
	// every request succeeds even though one endpoint is down.
	for i := 0; i < 20; i++ {
		resp := p.get("http://flaky/", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d %q, want 200", i, resp.StatusCode, resp.body)
		}
	}
}

func TestConnectFailureAllDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, dead, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	p := newProxy(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: down}
spec:
  hosts: [down.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: `+dead+`}}
`)
	resp := p.get("http://down/", nil)
	if resp.StatusCode != 503 || !strings.Contains(string(resp.body), "connection failure") {
		t.Fatalf("status %d %q, want 503 connection failure", resp.StatusCode, resp.body)
	}
	if line := p.lastLog(1); !strings.Contains(line, " 503 UF,URX ") {
		t.Errorf("access log %q lacks 503 UF,URX", line)
	}
}

func TestFaults(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /abort}}]
    fault:
      abort: {httpStatus: 418, percentage: {value: 100}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /half}}]
    fault:
      abort: {httpStatus: 500, percentage: {value: 50}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /delay}}]
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /both}}]
    fault:
      delay: {fixedDelay: 1s, percentage: {value: 100}}
      abort: {httpStatus: 503, percentage: {value: 100}}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /tiny}}]
    fault:
      abort: {httpStatus: 500, percentage: {value: 0.1}}
    route: [{destination: {host: ratings}}]
`)
	resp := p.get("http://ratings:9080/abort", nil)
	if resp.StatusCode != 418 || string(resp.body) != "fault filter abort" || bi.ratings.hits.Load() != 0 {
		t.Errorf("abort: %d %q (upstream hits %d), want 418 fault filter abort, no upstream", resp.StatusCode, resp.body, bi.ratings.hits.Load())
	}
	if line := p.lastLog(1); !strings.Contains(line, " 418 FI ") || !strings.Contains(line, " outbound|9080||ratings.default.svc.cluster.local ") {
		t.Errorf("access log %q lacks 418 FI and the route's destination cluster", line)
	}
	resp = p.get("http://ratings:9080/delay", nil)
	p.sleepMu.Lock()
	sleeps := append([]time.Duration(nil), p.sleeps...)
	p.sleepMu.Unlock()
	if resp.StatusCode != 200 || len(sleeps) != 1 || sleeps[0] != 7*time.Second {
		t.Errorf("delay: status %d, sleeps %v, want 200 after one 7s delay", resp.StatusCode, sleeps)
	}
	if line := p.lastLog(2); !strings.Contains(line, " 200 DI ") {
		t.Errorf("access log %q lacks 200 DI", line)
	}
	resp = p.get("http://ratings:9080/both", nil)
	if resp.StatusCode != 503 {
		t.Errorf("delay+abort: status %d, want 503", resp.StatusCode)
	}
	if line := p.lastLog(3); !strings.Contains(line, " 503 DI,FI ") {
		t.Errorf("access log %q lacks 503 DI,FI", line)
	}

	const n = 2000
	aborted := 0
	for i := 0; i < n; i++ {
		if p.get("http://ratings:9080/half", nil).StatusCode == 500 {
			aborted++
		}
	}
	// Binomial(2000, 0.5): sd = 22.4; accept ±4 sd.
	if aborted < 1000-90 || aborted > 1000+90 {
		t.Errorf("50%% abort: %d of %d aborted, want 1000±90", aborted, n)
	}
}

func TestFaultPercentPrecision(t *testing.T) {
	// Istio's Percent is a double with per-million precision: 0.1% must
	// abort about 1 in 1000, not 0 (integer percent) or 1 in 100.
	var calls, aborted int
	s := New(Options{Rand: func() uint64 { calls++; return uint64(calls*7919) % 1_000_000 }})
	for i := 0; i < 100_000; i++ {
		if s.chance(1000) { // 0.1% = 1000 per million
			aborted++
		}
	}
	if aborted < 80 || aborted > 120 {
		t.Errorf("0.1%% chance hit %d of 100000, want about 100", aborted)
	}
}

// TestRetryBodyLimit checks that a body larger than the retry buffer still
// streams through whole, but is not retried, as in Envoy.
func TestRetryBodyLimit(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 3, retryOn: 5xx}
`, withOptions(func(o *Options) { o.RetryBufferBytes = 1 << 10 }))
	var tries atomic.Int64
	var gotLen atomic.Int64
	bi.v1.setHandler(func(w http.ResponseWriter, r *http.Request) {
		tries.Add(1)
		bi.v1.mu.Lock()
		gotLen.Store(int64(len(bi.v1.lastBody)))
		bi.v1.mu.Unlock()
		w.WriteHeader(503)
	})
	small := strings.Repeat("s", 512)
	if resp := p.do("POST", "http://reviews:9080/", nil, small); resp.StatusCode != 503 || tries.Load() != 4 {
		t.Errorf("small body: %d after %d tries, want 503 after 4", resp.StatusCode, tries.Load())
	}
	tries.Store(0)
	big := strings.Repeat("b", 64<<10)
	if resp := p.do("POST", "http://reviews:9080/", nil, big); resp.StatusCode != 503 || tries.Load() != 1 {
		t.Errorf("big body: %d after %d tries, want 503 after 1 (not replayable)", resp.StatusCode, tries.Load())
	}
	if gotLen.Load() != int64(len(big)) {
		t.Errorf("upstream received %d bytes of a %d-byte body", gotLen.Load(), len(big))
	}
}

// TestNoEndpoints checks 503 UH for a service without endpoints.
func TestNoEndpoints(t *testing.T) {
	p := newProxy(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: empty}
spec:
  hosts: [empty.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: nothing-matches}}
`)
	resp := p.get("http://empty/", nil)
	if resp.StatusCode != 503 || string(resp.body) != "no healthy upstream" {
		t.Fatalf("status %d %q, want 503 no healthy upstream", resp.StatusCode, resp.body)
	}
	if line := p.lastLog(1); !strings.Contains(line, " 503 UH ") {
		t.Errorf("access log %q lacks 503 UH", line)
	}
}
