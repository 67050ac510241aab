package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// loadCore is the core the load generators share with the upstream; the
// proxy under test has the other one to itself.
const loadCore = 1

// loadResult is what one load-generator run reports.
type loadResult struct {
	requests int64              // completed requests
	failed   int64              // requests that did not get a 200 (or gRPC SERVING)
	qps      float64            // achieved rate
	pctMS    map[string]float64 // latency percentiles in ms, keyed "50", "99.9"...
	maxMS    float64
	meanMS   float64
	cpu      time.Duration      // CPU time of the load generator itself
	extra    map[string]float64 // case-specific values to record with the run
}

// loadTool runs the load generators, pinned to loadCore, with their
// output kept in the log directory.
type loadTool struct {
	fortio string // path to the fortio binary
	logDir string
	seq    int // numbers each run's files
}

// run executes a load generator and returns its stdout and CPU time. The
// context kills it if the benchmark is interrupted.
func (t *loadTool) run(ctx context.Context, name string, bin string, args ...string) ([]byte, time.Duration, error) {
	t.seq++
	cmd := exec.CommandContext(ctx, "taskset", append([]string{"-c", strconv.Itoa(loadCore), bin}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	logPath := filepath.Join(t.logDir, fmt.Sprintf("load-%03d-%s.log", t.seq, name))
	_ = os.WriteFile(logPath, []byte(strings.Join(cmd.Args, " ")+"\n"+stdout.String()+"\n"+stderr.String()), 0o644)
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return nil, cpu, fmt.Errorf("%s: %v (output in %s)", name, err, logPath)
	}
	return stdout.Bytes(), cpu, nil
}

// fortioLoad is Istio's latency method: a fixed request rate, spread
// uniformly over a fixed number of connections, without catching up
// after a stall (which would hide it).
type fortioLoad struct {
	target  string // URL, or host:port for gRPC
	headers []string
	qps     int
	conns   int
	grpc    bool // gRPC ping instead of HTTP
	h2      bool // HTTP/2 over cleartext (h2c)
}

// percentiles reported by every fortio run.
var percentiles = []string{"50", "90", "99", "99.9"}

func (t *loadTool) runFortio(ctx context.Context, name string, l fortioLoad, d time.Duration) (loadResult, error) {
	jsonPath := filepath.Join(t.logDir, fmt.Sprintf("load-%03d-%s.json", t.seq+1, name))
	args := []string{"load",
		"-qps", strconv.Itoa(l.qps), "-c", strconv.Itoa(l.conns),
		"-uniform", "-nocatchup", "-t", d.String(),
		// fortio's default 1 ms histogram resolution would round every
		// sub-millisecond percentile; 10 µs keeps them apart.
		"-r", "0.00001",
		"-p", strings.Join(percentiles, ","),
		"-json", jsonPath, "-quiet",
	}
	if l.grpc {
		args = append(args, "-grpc", "-ping")
	}
	if l.h2 {
		args = append(args, "-h2")
	}
	for _, h := range l.headers {
		args = append(args, "-H", h)
	}
	args = append(args, l.target)
	_, cpu, err := t.run(ctx, name, t.fortio, args...)
	if err != nil {
		return loadResult{}, err
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return loadResult{}, err
	}
	r, err := parseFortio(b)
	r.cpu = cpu
	return r, err
}

func parseFortio(b []byte) (loadResult, error) {
	var out struct {
		ActualQPS         float64
		RetCodes          map[string]int64
		DurationHistogram struct {
			Count       int64
			Max         float64
			Avg         float64
			Percentiles []struct {
				Percentile float64
				Value      float64
			}
		}
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return loadResult{}, fmt.Errorf("fortio JSON: %w", err)
	}
	h := out.DurationHistogram
	r := loadResult{
		requests: h.Count,
		qps:      out.ActualQPS,
		maxMS:    h.Max * 1e3,
		meanMS:   h.Avg * 1e3,
		pctMS:    map[string]float64{},
	}
	ok := out.RetCodes["200"] + out.RetCodes["SERVING"]
	r.failed = h.Count - ok
	for _, p := range h.Percentiles {
		r.pctMS[strconv.FormatFloat(p.Percentile, 'f', -1, 64)] = p.Value * 1e3
	}
	return r, nil
}

// wrk drives a closed loop (each connection sends as fast as answers come
// back), which finds the maximum rate.
func (t *loadTool) runWrk(ctx context.Context, name, url string, headers []string, conns int, d time.Duration) (loadResult, error) {
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	out, cpu, err := t.run(ctx, name, "wrk", args...)
	if err != nil {
		return loadResult{}, err
	}
	r, err := parseWrk(out)
	r.cpu = cpu
	return r, err
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in`)
	wrkRate     = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkNon2xx   = regexp.MustCompile(`(?m)Non-2xx or 3xx responses:\s*(\d+)`)
	wrkSocket   = regexp.MustCompile(`(?m)Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
)

func parseWrk(b []byte) (loadResult, error) {
	s := string(b)
	m := wrkRequests.FindStringSubmatch(s)
	q := wrkRate.FindStringSubmatch(s)
	if m == nil || q == nil {
		return loadResult{}, fmt.Errorf("wrk output not understood:\n%s", s)
	}
	r := loadResult{pctMS: map[string]float64{}}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.qps, _ = strconv.ParseFloat(q[1], 64)
	if m := wrkNon2xx.FindStringSubmatch(s); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.failed += n
	}
	if m := wrkSocket.FindStringSubmatch(s); m != nil {
		// Read errors at the end of a run are wrk closing its own
		// connections; connect, write and timeout errors are failures.
		for _, i := range []int{1, 3, 4} {
			n, _ := strconv.ParseInt(m[i], 10, 64)
			r.failed += n
		}
	}
	for _, m := range wrkPct.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		r.pctMS[m[1]] = v * map[string]float64{"us": 1e-3, "ms": 1, "s": 1e3}[m[3]]
	}
	return r, nil
}

// h2load is nghttp2's closed-loop HTTP/2 load generator; -m 1 keeps one
// request in flight per connection so that it compares with wrk.
func (t *loadTool) runH2load(ctx context.Context, name, url, authority string, conns int, d time.Duration) (loadResult, error) {
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-m1",
		"-D", strconv.Itoa(int(d.Seconds())), "--warm-up-time=1",
		"-H", ":authority: " + authority, url}
	out, cpu, err := t.run(ctx, name, "h2load", args...)
	if err != nil {
		return loadResult{}, err
	}
	r, err := parseH2load(out)
	r.cpu = cpu
	return r, err
}

var (
	h2Rate     = regexp.MustCompile(`(?m)^finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`(?m)^requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`(?m)^status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Time     = regexp.MustCompile(`(?m)^time for request:\s+\S+\s+\S+\s+([0-9.]+)(us|ms|s)`)
)

func parseH2load(b []byte) (loadResult, error) {
	s := string(b)
	q := h2Rate.FindStringSubmatch(s)
	m := h2Requests.FindStringSubmatch(s)
	st := h2Status.FindStringSubmatch(s)
	if q == nil || m == nil || st == nil {
		return loadResult{}, fmt.Errorf("h2load output not understood:\n%s", s)
	}
	r := loadResult{pctMS: map[string]float64{}}
	r.qps, _ = strconv.ParseFloat(q[1], 64)
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	// The status counts include the warm-up and the requests done counts
	// do not, so they cannot be subtracted; failures are the requests that
	// failed, errored or timed out, and the 4xx and 5xx answers.
	for _, n := range []string{m[2], m[3], m[4], st[1], st[2]} {
		x, _ := strconv.ParseInt(n, 10, 64)
		r.failed += x
	}
	if t := h2Time.FindStringSubmatch(s); t != nil {
		v, _ := strconv.ParseFloat(t[1], 64)
		r.meanMS = v * map[string]float64{"us": 1e-3, "ms": 1, "s": 1e3}[t[2]]
	}
	return r, nil
}
