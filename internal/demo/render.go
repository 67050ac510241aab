package demo

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Screen renders the live summary. Its fields describe the run and do not
// change between redraws.
type Screen struct {
	// Mesh and Admin are the proxy's listeners, host:port.
	Mesh, Admin string
	// ConfigDir is where the configuration files are.
	ConfigDir string
	// Names maps an endpoint address to its workload's name.
	Names map[string]string
	// Notes are shown under the configuration line.
	Notes []string
	// Log holds the proxy's recent log lines; nil shows none.
	Log *LogTail
}

// flagMeaning explains the Envoy response flags the demo can produce
// (Envoy's access-log documentation, %RESPONSE_FLAGS%).
var flagMeaning = map[string]string{
	"DI":  "delay injected",
	"FI":  "fault abort injected",
	"UT":  "upstream timeout",
	"UO":  "overflow: circuit breaker",
	"UH":  "no healthy upstream",
	"UF":  "upstream connect failure",
	"DC":  "client went away",
	"NR":  "no route",
	"URX": "retries exhausted",
	"UC":  "upstream closed the connection",
}

// Render writes the whole summary of cur. prev is the snapshot taken one
// interval earlier, for the per-second column; it may be nil.
func (sc *Screen) Render(w io.Writer, prev, cur *Snapshot) {
	p := func(format string, args ...any) {
		io.WriteString(w, strings.TrimRight(fmt.Sprintf(format, args...), " ")+"\n")
	}
	p("michi demo: Bookinfo, routed by michi as Istio would   %s   (Ctrl-C stops)", cur.Time.Format(time.TimeOnly))
	p("proxy %s   admin http://%s   config %s", sc.Mesh, sc.Admin, sc.ConfigDir)
	sc.renderConfig(w, cur.Config)
	for _, n := range sc.Notes {
		p("%s", n)
	}
	p("")
	p("Try it from another shell:  export http_proxy=http://%s", sc.Mesh)
	p("  curl http://reviews:%d/                            canary: 90%% v1, 10%% v2", MeshPort)
	p("  curl -H 'end-user: jason' http://reviews:%d/       header match: always v2", MeshPort)
	p("  curl http://productpage:%d/                        the chain, every hop through michi", MeshPort)
	p("  curl -H 'end-user: tester' http://productpage:%d/  5s fault delay vs 3s timeout: 504", MeshPort)
	p("  curl http://ratings:%d/                            10%% aborted; broken instance ejected", MeshPort)
	p("  seq 20 | xargs -P 20 -I{} curl -s -o /dev/null -w '%%{http_code} ' http://ratings:%d/   circuit breaker: 503s", MeshPort)
	p("")

	rows := destinations(cur.Requests)
	var before map[[2]string]float64
	var elapsed float64
	if prev != nil {
		before = map[[2]string]float64{}
		for _, d := range destinations(prev.Requests) {
			before[[2]string{d.service, d.version}] = d.total
		}
		elapsed = cur.Time.Sub(prev.Time).Seconds()
	}
	p("%-30s %7s %6s  %-24s %s", "REQUESTS  service / version", "total", "/s", "codes", "flags")
	if len(rows) == 0 {
		p("  (none yet)")
	}
	seen := map[string]bool{}
	for _, d := range rows {
		rate := ""
		if before != nil && elapsed > 0 {
			rate = fmt.Sprintf("%.1f", (d.total-before[[2]string{d.service, d.version}])/elapsed)
		}
		for f := range d.flags {
			seen[f] = true
		}
		p("  %-14s %-13s %7.0f %6s  %-24s %s", serviceLabel(d.service), versionLabel(d.version), d.total, rate, counts(d.codes), counts(d.flags))
	}
	if len(seen) > 0 {
		var legend []string
		for _, f := range slices.Sorted(maps.Keys(seen)) {
			if m, ok := flagMeaning[f]; ok {
				legend = append(legend, f+" "+m)
			}
		}
		if len(legend) > 0 {
			p("  flags: %s", strings.Join(legend, ", "))
		}
	}
	p("")

	p("%-40s %8s %7s  %s", "ENDPOINTS  cluster / instance", "requests", "errors", "state")
	shown := 0
	for _, c := range cur.Clusters {
		if !clusterActive(c.Endpoints) {
			continue
		}
		for _, ep := range c.Endpoints {
			name := sc.Names[ep.Address]
			if name == "" {
				name = ep.Address
			}
			p("  %-17s %-20s %8d %7d  %s", clusterLabel(c.Name), name, ep.TotalRequests, ep.Errors, endpointState(ep))
			shown++
		}
	}
	if shown == 0 {
		p("  (no traffic yet)")
	}
	if lines := sc.Log.Lines(); len(lines) > 0 {
		p("")
		p("PROXY LOG")
		for _, l := range lines {
			p("  %s", truncate(l, maxLogWidth))
		}
	}
}

// renderConfig says which configuration is live, and what is wrong with
// the files when the last change was rejected.
func (sc *Screen) renderConfig(w io.Writer, c ConfigStatus) {
	applied := ""
	if c.LastApplied != nil {
		applied = ", applied " + c.LastApplied.Local().Format(time.TimeOnly)
	}
	fmt.Fprintf(w, "config version %s%s\n", shortVersion(c.Version), applied)
	if e := c.LastReloadError; e != nil {
		fmt.Fprintf(w, "LAST CHANGE REJECTED at %s; still serving the version above:\n", e.Time.Local().Format(time.TimeOnly))
		for i, d := range e.Findings.Errors() {
			if i == 3 {
				fmt.Fprintf(w, "  ... and %d more\n", len(e.Findings.Errors())-3)
				break
			}
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
}

// Line is the summary in one line, for output that is not a terminal:
// requests per destination, then the ejected endpoints.
func (sc *Screen) Line(cur *Snapshot) string {
	var b strings.Builder
	b.WriteString(cur.Time.Format(time.TimeOnly))
	if len(cur.Requests) == 0 {
		b.WriteString(" | no requests yet")
	}
	for _, d := range destinations(cur.Requests) {
		fmt.Fprintf(&b, " | %s %s %.0f [%s", serviceLabel(d.service), versionLabel(d.version), d.total, counts(d.codes))
		if len(d.flags) > 0 {
			b.WriteString(" " + counts(d.flags))
		}
		b.WriteString("]")
	}
	var ejected []string
	for _, c := range cur.Clusters {
		for _, ep := range c.Endpoints {
			if ep.Ejected {
				name := sc.Names[ep.Address]
				if name == "" {
					name = ep.Address
				}
				ejected = append(ejected, name+" from "+clusterLabel(c.Name))
			}
		}
	}
	if len(ejected) > 0 {
		b.WriteString(" | ejected: " + strings.Join(ejected, ", "))
	}
	return b.String()
}

// destination is one row of the requests table.
type destination struct {
	service, version string
	total            float64
	codes, flags     map[string]float64
}

func destinations(reqs []RequestCount) []destination {
	byKey := map[[2]string]*destination{}
	for _, r := range reqs {
		k := [2]string{r.Service, r.Version}
		d := byKey[k]
		if d == nil {
			d = &destination{service: r.Service, version: r.Version, codes: map[string]float64{}, flags: map[string]float64{}}
			byKey[k] = d
		}
		d.total += r.Count
		d.codes[r.Code] += r.Count
		if r.Flags != "-" && r.Flags != "" {
			for f := range strings.SplitSeq(r.Flags, ",") {
				d.flags[f] += r.Count
			}
		}
	}
	out := make([]destination, 0, len(byKey))
	for _, d := range byKey {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b destination) int {
		return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.version, b.version))
	})
	return out
}

// serviceLabel and versionLabel render Istio's "unknown" as something a
// reader understands. The version is unknown when no endpoint answered
// (a fault abort, a timeout, an overflow); the service is unknown when
// the request never got as far as choosing one (michi fills the
// destination only once it forwards).
func serviceLabel(s string) string {
	if s == "unknown" {
		return "(none)"
	}
	return s
}

func versionLabel(v string) string {
	if v == "unknown" {
		return "(no upstream)"
	}
	return v
}

// counts renders a count map as "200:118 504:2", keys sorted.
func counts(m map[string]float64) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%.0f", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func clusterActive(eps []endpointStatus) bool {
	for _, ep := range eps {
		if ep.TotalRequests > 0 || ep.Ejected {
			return true
		}
	}
	return false
}

// clusterLabel shortens Istio's cluster name outbound|9080|v1|reviews.default.svc.cluster.local
// to "reviews v1", and outbound|9080||ratings... to "ratings".
func clusterLabel(name string) string {
	parts := strings.Split(name, "|")
	if len(parts) != 4 {
		return name
	}
	host, _, _ := strings.Cut(parts[3], ".")
	if parts[2] == "" {
		return host
	}
	return host + " " + parts[2]
}

func endpointState(ep endpointStatus) string {
	switch {
	case ep.Ejected:
		// The time left is a lower bound: Envoy, and michi, return an
		// ejected host at the first outlier sweep after it.
		return fmt.Sprintf("EJECTED by outlier detection, %s left (ejected %d×)", ep.EjectedFor.Round(time.Second), ep.EjectionCount)
	case !ep.Healthy:
		return "unhealthy"
	case ep.EjectionCount > 0:
		return fmt.Sprintf("healthy (ejected %d× before)", ep.EjectionCount)
	default:
		return "healthy"
	}
}

// maxLogWidth keeps a log line from wrapping on a common terminal.
const maxLogWidth = 130

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func shortVersion(v string) string {
	if v == "" {
		return "(none)"
	}
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
