package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Results is everything one benchmark run measured. It is saved as JSON
// beside the report, so the report can be re-rendered (-report-only)
// without measuring again.
type Results struct {
	Machine Machine
	Quick   bool
	Runs    []Run
	// Notes are facts about the run the reader needs, such as which rule
	// "random" picked or why a section was skipped.
	Notes []string
	// Profiles maps a load name to `go tool pprof -top` output for michi.
	Profiles map[string]string
}

// Machine identifies where and when the figures were taken.
type Machine struct {
	Date     time.Time
	NProc    int
	CPU      string
	Kernel   string
	Go       string
	Versions map[string]string // tool → version string
	Michi    string            // michi's version (commit)
}

// Run is one measurement: one case of one section, one repetition.
type Run struct {
	Section string
	Case    string
	Rep     int
	Loadavg string // /proc/loadavg before the run
	// ForeignCPU is the CPU time used during the run by processes the
	// benchmark did not start, in % of one core. Above a few % the run
	// shared the machine with something else.
	ForeignCPU float64
	Values     map[string]float64
}

// Keys of Run.Values.
const (
	vRequests  = "requests"
	vFailed    = "failed"         // non-200 responses and errors
	vQPS       = "qps"            // achieved rate
	vCPUPerReq = "cpu_us_per_req" // proxy CPU (utime+stime) µs per request
	vRSSLoad   = "rss_load_mb"    // proxy peak RSS sampled during the run, MB
	vRSSIdle   = "rss_idle_mb"
	vMeanMS    = "mean_ms"
	vMaxMS     = "max_ms"
	vReadyMS   = "ready_ms"  // process start → /ready 200
	vReloadMS  = "reload_ms" // config file rewritten → new version served
	vReloads   = "reloads"   // config rewrites during a churn run
	vRule      = "rule"      // which rule a "random rule" run hit, from 1
)

// mb converts KiB, as /proc reports memory, to MB (10^6 bytes), the unit
// of the memory targets.
func mb(kib int64) float64 { return float64(kib) * 1024 / 1e6 }

// pctKey is the Values key for a latency percentile, "p99.9_ms".
func pctKey(p string) string { return "p" + p + "_ms" }

// stat summarises one figure over its repetitions.
type stat struct {
	median, min, max float64
	n                int
}

// figure returns the median and spread of a value over the runs of one
// case; n is 0 when it was not measured.
func (r *Results) figure(section, cas, key string) stat {
	var vs []float64
	for _, run := range r.Runs {
		if run.Section != section || run.Case != cas {
			continue
		}
		if v, ok := run.Values[key]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return stat{}
	}
	slices.Sort(vs)
	m := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		m = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return stat{median: m, min: vs[0], max: vs[len(vs)-1], n: len(vs)}
}

// runSections are the Run.Section names each section of the benchmark
// records; "idle" is recorded whenever the proxies start.
var runSections = map[string][]string{
	"latency":    {"latency"},
	"cpu":        {"qps5000"},
	"throughput": {"wrk16", "wrk64"},
	"protocols":  {"h2load", "h2c1000", "grpc1000"},
	"features":   {"features1000", "featuresmax"},
	"scale":      {"startup", "scale1000", "reload", "churn"},
}

// replaced returns r with the given sections' runs (and profiles, and the
// proxies' idle memory) taken from newer, which measured only those. r
// keeps its machine description and date; a note says which sections
// were measured again, when, and from which michi commit.
func (r *Results) replaced(newer *Results, sections []string) *Results {
	drop := map[string]bool{"idle": true}
	for _, s := range sections {
		for _, rs := range runSections[s] {
			drop[rs] = true
		}
	}
	out := &Results{Machine: r.Machine, Profiles: r.Profiles}
	for _, run := range r.Runs {
		if !drop[run.Section] {
			out.Runs = append(out.Runs, run)
		}
	}
	out.Runs = append(out.Runs, newer.Runs...)
	if slices.Contains(sections, "profile") {
		out.Profiles = newer.Profiles
	}
	out.Notes = append(append(out.Notes, r.Notes...), newer.Notes...)
	out.Notes = append(out.Notes, fmt.Sprintf("sections %s (and the idle memory) were measured again on %s, michi %s",
		strings.Join(sections, ", "), newer.Machine.Date.Format("2006-01-02 15:04 UTC"), newer.Machine.Michi))
	return out
}

func (r *Results) save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func loadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	return &r, json.Unmarshal(b, &r)
}
