package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/upstream"
)

func testSnapshot() *Snapshot {
	at := time.Date(2026, 3, 4, 15, 4, 5, 0, time.Local)
	applied := at.Add(-time.Minute)
	snap := &Snapshot{
		Time: at,
		Requests: []RequestCount{
			{Service: "productpage", Version: "v1", Code: "200", Flags: "-", Count: 40},
			{Service: "productpage", Version: "v1", Code: "504", Flags: "UT", Count: 2},
			{Service: "ratings", Version: "v1", Code: "200", Flags: "-", Count: 10},
			{Service: "ratings", Version: "v1", Code: "503", Flags: "-", Count: 5},
			{Service: "reviews", Version: "v1", Code: "200", Flags: "-", Count: 36},
			{Service: "reviews", Version: "v2", Code: "200", Flags: "-", Count: 4},
			{Service: "unknown", Version: "unknown", Code: "0", Flags: "DC,DI", Count: 2},
			{Service: "unknown", Version: "unknown", Code: "400", Flags: "FI", Count: 1},
		},
		Clusters: []upstream.ClusterStatus{
			{Name: "outbound|9080||productpage.default.svc.cluster.local", Endpoints: []upstream.EndpointStatus{
				{Address: "127.0.0.1:1001", Healthy: true, TotalRequests: 42, Errors: 2},
			}},
			{Name: "outbound|9080||ratings.default.svc.cluster.local", Endpoints: []upstream.EndpointStatus{
				{Address: "127.0.0.1:1005", Healthy: true, TotalRequests: 10},
				{Address: "127.0.0.1:1006", Healthy: true, Ejected: true, EjectionCount: 1, EjectedFor: 27400 * time.Millisecond, TotalRequests: 5, Errors: 5},
			}},
			{Name: "outbound|9080|v3|reviews.default.svc.cluster.local", Endpoints: []upstream.EndpointStatus{
				{Address: "127.0.0.1:1004", Healthy: true},
			}},
		},
	}
	snap.Config.Version = "8333acff92a955ff"
	snap.Config.LastApplied = &applied
	return snap
}

func testScreen() *Screen {
	return &Screen{
		Mesh:      "127.0.0.1:15001",
		Admin:     "127.0.0.1:15000",
		ConfigDir: "/tmp/demo",
		Names: map[string]string{
			"127.0.0.1:1001": "productpage-v1",
			"127.0.0.1:1005": "ratings-v1",
			"127.0.0.1:1006": "ratings-v1-broken",
		},
	}
}

// section returns the lines of out from the one starting with title to
// the next blank line.
func section(out, title string) string {
	_, rest, ok := strings.Cut(out, "\n"+title)
	if !ok {
		return ""
	}
	body, _, _ := strings.Cut(title+rest, "\n\n")
	return strings.TrimSuffix(body, "\n")
}

func TestRenderTables(t *testing.T) {
	cur := testSnapshot()
	prev := testSnapshot()
	prev.Time = cur.Time.Add(-time.Second)
	prev.Requests[0].Count = 38 // productpage v1 200: two more since
	var b bytes.Buffer
	testScreen().Render(&b, prev, cur)
	out := b.String()

	wantRequests := strings.Join([]string{
		"REQUESTS  service / version      total     /s  codes                    flags",
		"  productpage    v1                 42    2.0  200:40 504:2             UT:2",
		"  ratings        v1                 15    0.0  200:10 503:5",
		"  reviews        v1                 36    0.0  200:36",
		"  reviews        v2                  4    0.0  200:4",
		"  (none)         (no upstream)       3    0.0  0:2 400:1                DC:2 DI:2 FI:1",
		"  flags: DC client went away, DI delay injected, FI fault abort injected, UT upstream timeout",
	}, "\n")
	if diff := cmp.Diff(wantRequests, section(out, "REQUESTS")); diff != "" {
		t.Errorf("requests table (-want +got):\n%s", diff)
	}
	// Clusters without traffic (reviews v3) are left out; an ejected
	// endpoint says so, and when it comes back.
	wantEndpoints := strings.Join([]string{
		"ENDPOINTS  cluster / instance            requests  errors  state",
		"  productpage       productpage-v1             42       2  healthy",
		"  ratings           ratings-v1                 10       0  healthy",
		"  ratings           ratings-v1-broken           5       5  EJECTED by outlier detection, 27s left (ejected 1×)",
	}, "\n")
	if diff := cmp.Diff(wantEndpoints, section(out, "ENDPOINTS")); diff != "" {
		t.Errorf("endpoints table (-want +got):\n%s", diff)
	}
	for _, want := range []string{"config version 8333acff92a9, applied 15:03:05", "export http_proxy=http://127.0.0.1:15001"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderRejectedConfig(t *testing.T) {
	cur := testSnapshot()
	rejected := &RejectedChange{Time: cur.Time, Findings: config.Diagnostics{{
		File: "/tmp/demo/reviews.yaml", Line: 57, Kind: "VirtualService", Namespace: "default", Name: "reviews",
		Field: "spec.http[3].route[0].weight", Severity: config.Error, Message: "must not be negative",
	}}}
	cur.Config.LastReloadError = rejected
	var b bytes.Buffer
	testScreen().Render(&b, nil, cur)
	out := b.String()
	for _, want := range []string{"LAST CHANGE REJECTED at 15:04:05; still serving the version above:", "reviews.yaml:57", "spec.http[3].route[0].weight"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary of a rejected change lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderLine(t *testing.T) {
	got := testScreen().Line(testSnapshot())
	want := "15:04:05 | productpage v1 42 [200:40 504:2 UT:2] | ratings v1 15 [200:10 503:5] | reviews v1 36 [200:36]" +
		" | reviews v2 4 [200:4] | (none) (no upstream) 3 [0:2 400:1 DC:2 DI:2 FI:1] | ejected: ratings-v1-broken from ratings"
	if got != want {
		t.Errorf("Line:\n got %s\nwant %s", got, want)
	}
}

func TestRenderLineEmpty(t *testing.T) {
	snap := &Snapshot{Time: time.Date(2026, 3, 4, 15, 4, 5, 0, time.Local)}
	if got, want := testScreen().Line(snap), "15:04:05 | no requests yet"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}

func TestRedrawInPlace(t *testing.T) {
	var b bytes.Buffer
	s := &Summary{Screen: testScreen(), Out: &b, Terminal: true, Scraper: &Scraper{Admin: "127.0.0.1:15000"}}
	s.redraw(nil, testSnapshot(), nil)
	out := b.String()
	if !strings.HasPrefix(out, ansiHome) || !strings.HasSuffix(out, ansiClearBelow) {
		t.Errorf("redraw does not start at home and clear below: %q...%q", out[:10], out[len(out)-10:])
	}
	for i, line := range strings.Split(strings.TrimSuffix(out, ansiClearBelow), "\n") {
		if line != "" && !strings.HasSuffix(line, ansiClearLine) {
			t.Errorf("line %d does not clear its leftovers: %q", i, line)
		}
	}
}

func TestLogTail(t *testing.T) {
	tail := NewLogTail(2)
	for _, p := range []string{"one\ntw", "o\nthree\n", "fou"} {
		tail.Write([]byte(p))
	}
	if diff := cmp.Diff([]string{"two", "three"}, tail.Lines()); diff != "" {
		t.Errorf("Lines (-want +got):\n%s", diff)
	}
	var none *LogTail
	if got := none.Lines(); got != nil {
		t.Errorf("nil LogTail: Lines() = %v, want nil", got)
	}
}
