package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/demo"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// demoRun is a demo running in this process.
type demoRun struct {
	live           demoLive
	cancel         context.CancelFunc
	done           chan error
	stdout, stderr *lockedBuffer
	// client sends requests through the mesh listener as an HTTP proxy,
	// as curl -x does.
	client    *http.Client
	transport *http.Transport
}

// startDemo runs the demo with f (on random ports, no summary, no
// background traffic unless f says otherwise) until the test ends.
func startDemo(t *testing.T, f demoFlags) *demoRun {
	t.Helper()
	if f.meshAddr == "" {
		f.meshAddr = "127.0.0.1:0"
	}
	if f.adminAddr == "" {
		f.adminAddr = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &demoRun{cancel: cancel, done: make(chan error, 1), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	live := make(chan demoLive, 1)
	go func() {
		d.done <- runDemo(ctx, &f, d.stdout, d.stderr, func(l demoLive) { live <- l })
	}()
	select {
	case d.live = <-live:
	case err := <-d.done:
		cancel()
		t.Fatalf("demo stopped before serving: %v\nstderr:\n%s", err, d.stderr)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("demo not serving after 10s; stderr:\n%s", d.stderr)
	}
	d.transport = &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: d.live.mesh})}
	d.client = &http.Client{Transport: d.transport}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop cancels the demo and waits for it to return.
func (d *demoRun) stop(t *testing.T) error {
	t.Helper()
	d.cancel()
	d.transport.CloseIdleConnections()
	select {
	case err, ok := <-d.done:
		if ok {
			close(d.done)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop within 10s of its context ending")
		return nil
	}
}

type answer struct {
	status  int
	body    string
	version string // the X-Demo-Version header
	elapsed time.Duration
}

// first is the answer's first line, which names the instance.
func (a answer) first() string {
	line, _, _ := strings.Cut(a.body, "\n")
	return line
}

// get sends GET http://host:9080/ through the mesh with the given headers
// (name, value, name, value...).
func (d *demoRun) get(t *testing.T, host string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d/", host, demo.MeshPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s through the mesh: %v", req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s through the mesh: reading the body: %v", req.URL, err)
	}
	return answer{status: resp.StatusCode, body: string(body), version: resp.Header.Get(demo.HeaderVersion), elapsed: time.Since(start)}
}

// requests reads istio_requests_total from the demo's admin listener,
// summed per service, version, code and flags ("ratings v1 503 -").
func (d *demoRun) requests(t *testing.T) map[string]float64 {
	t.Helper()
	snap, err := (&demo.Scraper{Admin: d.live.admin}).Scrape(context.Background())
	if err != nil {
		t.Fatalf("scrape admin: %v", err)
	}
	out := map[string]float64{}
	for _, r := range snap.Requests {
		out[strings.Join([]string{r.Service, r.Version, r.Code, r.Flags}, " ")] += r.Count
	}
	return out
}

func (d *demoRun) workload(t *testing.T, name string) *demo.Workload {
	t.Helper()
	for _, wl := range d.live.workloads {
		if wl.Name == name {
			return wl
		}
	}
	t.Fatalf("no workload %q", name)
	return nil
}

func TestDemoRouting(t *testing.T) {
	d := startDemo(t, demoFlags{})

	t.Run("canary split 90/10", func(t *testing.T) {
		const n = 1000
		got := map[string]int{}
		for range n {
			a := d.get(t, "reviews")
			if a.status != http.StatusOK {
				t.Fatalf("GET reviews: status %d, body %q; want 200", a.status, a.body)
			}
			got[a.first()]++
		}
		v1, v2 := got["reviews v1 (no stars)"], got["reviews v2 (stars: black)"]
		if v1+v2 != n {
			t.Errorf("answers %v; want only reviews v1 and v2", got)
		}
		// 10% of 1000 is 100 with a standard deviation of 9.5; ±40 is
		// beyond 4 deviations.
		if v2 < 60 || v2 > 140 {
			t.Errorf("got %d of %d answers from reviews v2, want 100±40 (weight 10 of 100)", v2, n)
		}
	})

	t.Run("end-user jason gets v2", func(t *testing.T) {
		for range 50 {
			a := d.get(t, "reviews", "end-user", "jason")
			if a.first() != "reviews v2 (stars: black)" || a.version != "v2" {
				t.Fatalf("jason got %q (version header %q), want reviews v2", a.first(), a.version)
			}
		}
	})

	t.Run("x-test-user gets v3", func(t *testing.T) {
		for range 20 {
			if a := d.get(t, "reviews", "x-test-user", "true"); a.first() != "reviews v3 (stars: red)" {
				t.Fatalf("test user got %q, want reviews v3", a.first())
			}
		}
	})

	t.Run("productpage chain through the mesh", func(t *testing.T) {
		before := d.requests(t)
		const n = 20
		for range n {
			a := d.get(t, "productpage", "end-user", "jason")
			lines := strings.Split(strings.TrimSuffix(a.body, "\n"), "\n")
			// productpage propagated end-user to reviews, so the header
			// rule there routed the call to v2, which called ratings.
			if a.status != http.StatusOK || len(lines) != 3 ||
				lines[0] != "productpage v1 (user: jason)" ||
				lines[1] != "  reviews v2 (stars: black)" ||
				!strings.HasPrefix(lines[2], "    ratings") {
				t.Fatalf("productpage for jason: status %d, body:\n%s\nwant productpage v1 → reviews v2 → ratings", a.status, a.body)
			}
		}
		// Every hop went through michi: it counted each of them.
		after := d.requests(t)
		sum := func(m map[string]float64, prefix string) float64 {
			var s float64
			for k, v := range m {
				if strings.HasPrefix(k, prefix) {
					s += v
				}
			}
			return s
		}
		hops := map[string]float64{
			"productpage": sum(after, "productpage v1 200") - sum(before, "productpage v1 200"),
			"reviews":     sum(after, "reviews v2 200") - sum(before, "reviews v2 200"),
			// Calls to ratings reach it, or are aborted by the fault;
			// either way they count against ratings, as in Istio.
			"ratings": sum(after, "ratings ") - sum(before, "ratings "),
		}
		for hop, got := range hops {
			if got != n {
				t.Errorf("istio_requests_total for %s grew by %v, want %d", hop, got, n)
			}
		}
	})
}

func TestDemoFaults(t *testing.T) {
	d := startDemo(t, demoFlags{})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		// tester's call from productpage to reviews is delayed 5s;
		// productpage's route gives up after 3s.
		a := d.get(t, "productpage", "end-user", "tester")
		if a.status != http.StatusGatewayTimeout || a.body != "upstream request timeout" {
			t.Errorf("productpage for tester: %d %q, want 504 \"upstream request timeout\"", a.status, a.body)
		}
		if a.elapsed < 3*time.Second || a.elapsed > 4500*time.Millisecond {
			t.Errorf("productpage for tester answered after %v, want the 3s timeout", a.elapsed)
		}
		if got := d.requests(t)["productpage v1 504 UT"]; got != 1 {
			t.Errorf("istio_requests_total{productpage, 504, UT} = %v, want 1", got)
		}
		// The delayed call to reviews ends when productpage gives up on it.
		deadline := time.Now().Add(2 * time.Second)
		for d.requests(t)["reviews unknown 0 DC,DI"] != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("no delayed (DI) request to reviews that the client left (DC); requests: %v", d.requests(t))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("abort and outlier ejection", func(t *testing.T) {
		t.Parallel()
		const n = 200
		var ok, aborted, broken int
		for range n {
			a := d.get(t, "ratings")
			switch {
			case a.status == http.StatusOK && a.body == "ratings v1: 4 of 5 stars\n":
				ok++
			case a.status == http.StatusBadRequest && a.body == "fault filter abort":
				aborted++
			case a.status == http.StatusServiceUnavailable && strings.Contains(a.body, "broken instance"):
				broken++
			default:
				t.Fatalf("ratings answered %d %q", a.status, a.body)
			}
		}
		// 10% of 200 is 20, standard deviation 4.2.
		if aborted < 4 || aborted > 36 {
			t.Errorf("%d of %d ratings requests aborted, want 20±16 (fault abort 10%%)", aborted, n)
		}
		// Five 503s in a row from the broken instance eject it; none after.
		if broken != 5 {
			t.Errorf("the broken instance answered %d times, want 5 (consecutive5xxErrors) and then ejection", broken)
		}

		snap, err := (&demo.Scraper{Admin: d.live.admin}).Scrape(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		bad, good := d.workload(t, "ratings-v1-broken").Addr, d.workload(t, "ratings-v1").Addr
		ejected := map[string]bool{}
		for _, c := range snap.Clusters {
			if c.Name == "outbound|9080||ratings.default.svc.cluster.local" {
				for _, ep := range c.Endpoints {
					ejected[ep.Address] = ep.Ejected
				}
			}
		}
		if want := map[string]bool{bad: true, good: false}; fmt.Sprint(ejected) != fmt.Sprint(want) {
			t.Errorf("ratings endpoints ejected: %v, want %v", ejected, want)
		}

		// The summary's numbers are michi's own, and match what the
		// client saw.
		reqs := d.requests(t)
		for key, want := range map[string]int{
			"ratings v1 200 -":       ok,
			"ratings v1 503 -":       broken,
			"ratings unknown 400 FI": aborted,
		} {
			if got := reqs[key]; got != float64(want) {
				t.Errorf("istio_requests_total{%s} = %v, want %d as the client saw", key, got, want)
			}
		}
	})
}

func TestDemoCircuitBreaker(t *testing.T) {
	d := startDemo(t, demoFlags{})
	// One connection and one pending request: of 20 requests at once,
	// most overflow.
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make(chan answer, 20)
	for range 20 {
		wg.Go(func() {
			<-start
			results <- d.get(t, "ratings")
		})
	}
	close(start)
	wg.Wait()
	close(results)
	var overflow int
	for a := range results {
		if a.status == http.StatusServiceUnavailable && strings.HasSuffix(a.body, "reset reason: overflow") {
			overflow++
		}
	}
	if overflow == 0 {
		t.Fatal("no request of 20 concurrent ones overflowed the ratings circuit breaker")
	}
	var uo float64
	for k, v := range d.requests(t) {
		if strings.HasSuffix(k, " 503 UO") {
			uo += v
		}
	}
	if uo != float64(overflow) {
		t.Errorf("istio_requests_total with flag UO = %v, want %d", uo, overflow)
	}
}

func TestDemoConfigDirHotReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	d := startDemo(t, demoFlags{configDir: dir})

	// The files are real, validate, and point at this run's workloads.
	diags, resources, files := validatePaths([]string{dir}, demo.Namespace, config.DefaultClusterDomain)
	if len(diags) > 0 || files != 4 || resources == 0 {
		t.Errorf("michi validate -c %s: %d files, %d resources, findings %v; want 4 files and none", dir, files, resources, diags)
	}
	services, err := os.ReadFile(filepath.Join(dir, demo.ServicesFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, wl := range d.live.workloads {
		if !strings.Contains(string(services), fmt.Sprintf("http: %d\n", wl.Port)) {
			t.Errorf("%s does not map to %s's port %d", demo.ServicesFile, wl.Name, wl.Port)
		}
	}
	if !strings.Contains(d.stdout.String(), filepath.Join(dir, demo.ReviewsFile)) {
		t.Errorf("the intro does not say which file to edit:\n%s", d.stdout)
	}

	// Move all of the canary to v2; it is live within about a second.
	reviews := filepath.Join(dir, demo.ReviewsFile)
	shiftCanary(t, reviews)
	changed := time.Now()
	for streak := 0; streak < 10; {
		if d.get(t, "reviews").version == "v2" {
			streak++
		} else {
			streak = 0
		}
		if time.Since(changed) > 1500*time.Millisecond {
			t.Fatal("the new weights were not live within 1.5s of saving reviews.yaml")
		}
	}
	t.Logf("new split live after %v", time.Since(changed).Round(time.Millisecond))

	// A restart keeps the edited routing and writes the new ports.
	if err := d.stop(t); err != nil {
		t.Fatalf("demo returned %v", err)
	}
	d2 := startDemo(t, demoFlags{configDir: dir})
	if !strings.Contains(d2.stdout.String(), "kept your edited reviews.yaml") {
		t.Errorf("restart does not say it kept reviews.yaml:\n%s", d2.stdout)
	}
	for range 20 {
		if a := d2.get(t, "reviews"); a.version != "v2" {
			t.Fatalf("after a restart reviews answered %q, want v2 as edited", a.first())
		}
	}
}

// shiftCanary rewrites the canary weights in reviews.yaml from 90/10 to
// 0/100, as a user would in an editor.
func shiftCanary(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), "weight: 90", "weight: 0", 1)
	edited = strings.Replace(edited, "weight: 10", "weight: 100", 1)
	if edited == string(data) {
		t.Fatalf("%s has no 90/10 weights to edit", path)
	}
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDemoStopsCleanly(t *testing.T) {
	d := startDemo(t, demoFlags{load: 20})
	if a := d.get(t, "productpage"); a.status != http.StatusOK {
		t.Fatalf("productpage: %d %q", a.status, a.body)
	}
	// A client whose connection is still open when the demo stops.
	conn, err := net.Dial("tcp", d.live.mesh)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if err := d.stop(t); err != nil {
		t.Fatalf("demo returned %v after its context ended, want nil", err)
	}
	addrs := map[string]string{"mesh": d.live.mesh, "admin": d.live.admin}
	for _, wl := range d.live.workloads {
		addrs[wl.Name] = wl.Addr
	}
	for name, addr := range addrs {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s (%s) still accepts connections after the demo stopped", name, addr)
		}
	}
	if _, err := os.Stat(d.live.configDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary config dir %s still there after the demo stopped (stat: %v)", d.live.configDir, err)
	}
	waitNoGoroutines(t, "michi/internal/", "main.run(", "main.runDemo(")
}

// waitNoGoroutines fails unless, within a few seconds, no goroutine's
// stack mentions any of marks.
func waitNoGoroutines(t *testing.T, marks ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			for _, m := range marks {
				if strings.Contains(g, m) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after the demo stopped:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDemoCommand(t *testing.T) {
	t.Run("duration ends it, summary lines on a pipe", func(t *testing.T) {
		var stdout, stderr lockedBuffer
		start := time.Now()
		code := runMain([]string{"demo", "--mesh-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--duration", "2500ms", "--load", "10"}, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("michi demo exited %d, want 0; stderr:\n%s", code, stderr.String())
		}
		if took := time.Since(start); took > 6*time.Second {
			t.Errorf("michi demo --duration 2500ms took %v", took)
		}
		out := stdout.String()
		for _, want := range []string{"curl -x http://127.0.0.1:", "-H 'end-user: jason'", "HTTP_PROXY=", "| productpage v1 "} {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "\x1b[") {
			t.Error("ANSI escapes written to a pipe")
		}
	})

	t.Run("busy port", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var stdout, stderr lockedBuffer
		code := runMain([]string{"demo", "--mesh-addr", ln.Addr().String(), "--admin-addr", "127.0.0.1:0"}, &stdout, &stderr)
		if code != exitFail {
			t.Errorf("michi demo on a busy port exited %d, want %d", code, exitFail)
		}
		msg := stderr.String()
		for _, want := range []string{"--mesh-addr " + ln.Addr().String() + " is already in use", "--admin-addr"} {
			if !strings.Contains(msg, want) {
				t.Errorf("stderr lacks %q: %s", want, msg)
			}
		}
	})

	t.Run("usage", func(t *testing.T) {
		var stdout, stderr lockedBuffer
		if code := runMain([]string{"demo", "extra"}, &stdout, &stderr); code != exitUsage {
			t.Errorf("michi demo extra exited %d, want %d", code, exitUsage)
		}
		for _, load := range []string{"-1", "NaN", "+Inf"} {
			if code := runMain([]string{"demo", "--load", load}, &stdout, &stderr); code != exitUsage {
				t.Errorf("michi demo --load %s exited %d, want %d", load, code, exitUsage)
			}
		}
	})
}
