package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// bench holds one benchmark run's state.
type bench struct {
	repo, out   string
	michiBin    string
	upstreamBin string
	fortioBin   string
	targets     []string
	sections    []string
	d           durations

	sup         *supervisor
	load        *loadTool
	res         *Results
	resultsPath string

	// proxies under test, by target name; direct has none.
	proxies map[string]*proc
	// michi is the plain michi instance compared with nginx and haproxy.
	michi *michiInstance
	// quietWaited is the time spent so far waiting for a quiet machine.
	quietWaited time.Duration
}

// benchCase is one thing to measure: a load against one target.
type benchCase struct {
	name string
	// proxy is the process whose CPU and memory the run reports; nil
	// when no proxy is in the path.
	proxy *proc
	load  func(ctx context.Context, d time.Duration) (loadResult, error)
}

// interleave measures every case b.d.reps times, in the order A B C A B
// C ..., so that a disturbance of the machine (another process, a
// thermal or frequency change) spreads over all cases instead of
// landing on one. Each case first gets a discarded warm-up run.
func (b *bench) interleave(ctx context.Context, section string, d time.Duration, cases []benchCase) error {
	for _, c := range cases {
		if _, err := c.load(ctx, b.d.warm); err != nil {
			return fmt.Errorf("%s: warm-up %s: %w", section, c.name, err)
		}
	}
	for rep := 1; rep <= b.d.reps; rep++ {
		for _, c := range cases {
			if err := b.measure(ctx, section, c, rep, d); err != nil {
				return err
			}
		}
	}
	return b.res.save(b.resultsPath)
}

// measure runs one load and records it with the proxy's CPU time and
// memory over the run, the load average before it, and how much CPU
// other processes took meanwhile.
func (b *bench) measure(ctx context.Context, section string, c benchCase, rep int, d time.Duration) error {
	if err := b.waitQuiet(ctx); err != nil {
		return err
	}
	run := Run{Section: section, Case: c.name, Rep: rep, Loadavg: loadavg(), Values: map[string]float64{}}

	ours0 := b.ourTicks()
	sys0 := readCPUTimes()
	var proxy0 int64
	if c.proxy != nil {
		proxy0 = treeTicks(c.proxy.pid())
	}
	rss := b.sampleRSS(c.proxy)
	start := time.Now()
	lr, err := c.load(ctx, d)
	wall := time.Since(start)
	peakKiB := rss()
	if err != nil {
		return fmt.Errorf("%s: %s: %w", section, c.name, err)
	}
	if c.proxy != nil && c.proxy.exited() {
		return fmt.Errorf("%s: %s: %s died during the run; log %s:\n%s", section, c.name, c.proxy.name, c.proxy.logPath, c.proxy.logTail())
	}

	foreign := (readCPUTimes().busy - sys0.busy) - (b.ourTicks() - ours0) - int64(lr.cpu.Seconds()*clockTicks)
	run.ForeignCPU = math.Max(0, 100*float64(foreign)/(wall.Seconds()*clockTicks))

	v := run.Values
	v[vRequests] = float64(lr.requests)
	v[vFailed] = float64(lr.failed)
	v[vQPS] = lr.qps
	for p, ms := range lr.pctMS {
		v[pctKey(p)] = ms
	}
	if lr.maxMS > 0 {
		v[vMaxMS] = lr.maxMS
	}
	if lr.meanMS > 0 {
		v[vMeanMS] = lr.meanMS
	}
	if c.proxy != nil && lr.requests > 0 {
		ticks := treeTicks(c.proxy.pid()) - proxy0
		v[vCPUPerReq] = float64(ticks) / clockTicks * 1e6 / float64(lr.requests)
		v[vRSSLoad] = mb(peakKiB)
	}
	for k, x := range lr.extra {
		v[k] = x
	}
	b.res.Runs = append(b.res.Runs, run)
	fmt.Printf("%-10s %-22s rep %d/%d: %s  [load %s, foreign %.0f%%]\n", section, c.name, rep, b.d.reps, summary(v), run.Loadavg, run.ForeignCPU)
	return nil
}

// Waiting for a quiet machine: other processes (a build, a test suite) are
// given up to quietWait to go quiet before each run, checked over windows
// of quietWindow; the run then goes ahead regardless, and its foreign CPU
// in the run log says how quiet it was. All the waits of one benchmark
// together stop at quietBudget, so a machine that never goes quiet delays
// the benchmark by minutes, not hours.
const (
	quietWait      = 20 * time.Second
	quietBudget    = 5 * time.Minute
	quietWindow    = 500 * time.Millisecond
	quietThreshold = 10 // % of one core
)

func (b *bench) waitQuiet(ctx context.Context) error {
	start := time.Now()
	defer func() { b.quietWaited += time.Since(start) }()
	deadline := start.Add(min(quietWait, quietBudget-b.quietWaited))
	for {
		ours0, sys0 := b.ourTicks(), readCPUTimes()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(quietWindow):
		}
		foreign := (readCPUTimes().busy - sys0.busy) - (b.ourTicks() - ours0)
		if 100*float64(foreign)/(quietWindow.Seconds()*clockTicks) < quietThreshold || time.Now().After(deadline) {
			return nil
		}
	}
}

// summary is a one-line progress report of a run.
func summary(v map[string]float64) string {
	s := fmt.Sprintf("%.0f req/s", v[vQPS])
	if p, ok := v[pctKey("50")]; ok {
		s += fmt.Sprintf(", p50 %.3f p99 %.3f ms", p, v[pctKey("99")])
	}
	if c, ok := v[vCPUPerReq]; ok {
		s += fmt.Sprintf(", %.1f µs/req, %.1f MB", c, v[vRSSLoad])
	}
	if f := v[vFailed]; f > 0 {
		s += fmt.Sprintf(", %.0f FAILED", f)
	}
	return s
}

// ourTicks is the CPU time of every process the benchmark keeps running,
// and of the benchmark itself.
func (b *bench) ourTicks() int64 {
	var sum int64
	for _, p := range b.sup.running() {
		sum += treeTicks(p.pid())
	}
	if st, err := readProcStat(os.Getpid()); err == nil {
		sum += st.ticks
	}
	return sum
}

// sampleRSS samples p's resident memory every 250 ms until the returned
// function is called, which returns the peak in KiB.
func (b *bench) sampleRSS(p *proc) func() int64 {
	if p == nil {
		return func() int64 { return 0 }
	}
	var (
		mu   sync.Mutex
		peak int64
	)
	sample := func() {
		r := treeRSSKiB(p.pid())
		mu.Lock()
		peak = max(peak, r)
		mu.Unlock()
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() int64 {
		close(done)
		<-stopped
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// michiInstance is one michi process with its own ports and config file.
type michiInstance struct {
	name        string
	p           *proc
	mesh, admin string
	configPath  string
}

// michiAddrs are the mesh and admin addresses of instance i.
func michiAddrs(i int) (mesh, admin string) {
	return "127.0.0.1:" + strconv.Itoa(michiBasePort+1+10*i), "127.0.0.1:" + strconv.Itoa(michiBasePort+10*i)
}

// startMichi writes m as the instance's config, starts michi alone on
// core 0 with one P (GOMAXPROCS=1, as nginx and haproxy get one worker),
// and returns the time from start to /ready answering 200.
func (b *bench) startMichi(ctx context.Context, name string, i int, m *manifest) (*michiInstance, time.Duration, error) {
	mesh, admin := michiAddrs(i)
	for _, a := range []string{mesh, admin} {
		if err := portFree(a); err != nil {
			return nil, 0, err
		}
	}
	inst := &michiInstance{name: name, mesh: mesh, admin: admin,
		configPath: filepath.Join(b.out, "configs", name, "config.yaml")}
	if err := m.write(inst.configPath); err != nil {
		return nil, 0, err
	}
	start := time.Now()
	p, err := b.sup.start(name, 0, []string{"GOMAXPROCS=1"}, b.michiBin, "run",
		"-c", inst.configPath, "--mesh-addr", mesh, "--admin-addr", admin,
		"--access-log", "off", "--namespace", "default")
	if err != nil {
		return nil, 0, err
	}
	inst.p = p
	if err := waitHTTP200(ctx, p, "http://"+admin+"/ready", 2*time.Minute); err != nil {
		b.sup.stop(p)
		return nil, 0, fmt.Errorf("michi %s: %w", name, err)
	}
	return inst, time.Since(start), nil
}

// generation fetches path through the instance's mesh listener and
// returns the x-bench-generation response header that the config under
// test sets, which tells which config version served the request.
func (inst *michiInstance) generation(path string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+inst.mesh+path, nil)
	if err != nil {
		return "", err
	}
	req.Host = hostHTTP
	resp, err := probeClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s via %s: %s", path, inst.name, resp.Status)
	}
	return resp.Header.Get("X-Bench-Generation"), nil
}

var probeClient = &http.Client{Timeout: 2 * time.Second}

// dumpClient waits longer: michi renders the whole /config_dump before it
// sends the first byte, which takes seconds with 10,000 services.
var dumpClient = &http.Client{Timeout: time.Minute}

// configVersion reads the top-level "version" of michi's /config_dump.
// It stops reading as soon as it has it: with 10,000 services the dump is
// large, and decoding all of it on every poll would slow the very reload
// being timed.
func (inst *michiInstance) configVersion() (string, error) {
	resp, err := dumpClient.Get("http://" + inst.admin + "/config_dump")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s /config_dump: %s", inst.name, resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", fmt.Errorf("%s /config_dump: not a JSON object", inst.name)
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return "", err
		}
		if key == "version" {
			return string(v), nil
		}
	}
	return "", errors.New(inst.name + " /config_dump has no top-level version")
}

// reload rewrites the instance's config with m and returns how long it
// took until the new config is live: until a request through the mesh
// listener carries wantGen in x-bench-generation, which proves the new
// version serves traffic. The /config_dump version must have changed too.
func (b *bench) reload(ctx context.Context, inst *michiInstance, m *manifest, probePath, wantGen string) (time.Duration, error) {
	before, err := inst.configVersion()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := m.write(inst.configPath); err != nil {
		return 0, err
	}
	err = poll(ctx, inst.p, time.Minute, inst.name+" to serve generation "+wantGen, func() bool {
		g, err := inst.generation(probePath)
		return err == nil && g == wantGen
	})
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	after, err := inst.configVersion()
	if err != nil {
		return 0, err
	}
	if after == before {
		return 0, fmt.Errorf("%s serves generation %s but /config_dump still shows version %s", inst.name, wantGen, after)
	}
	return took, nil
}
