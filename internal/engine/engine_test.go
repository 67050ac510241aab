package engine

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/source"
	"github.com/michi-mesh/michi/internal/telemetry"
	"github.com/michi-mesh/michi/internal/upstream"
)

var _ Source = (*source.File)(nil)

// Annotations that make fakeCompile report findings, standing in for
// the problems the real compiler finds.
const (
	annotateCompileError   = "michi.test/compile-error"
	annotateCompileWarning = "michi.test/compile-warning"
	annotateCompilePanic   = "michi.test/compile-panic"
)

// fakeCompile stands in for compile.Compile: a cluster per service port
// of the registry, a version hashed from every resource's identity and
// spec, and findings for resources annotated to ask for them.
func fakeCompile(set *config.Set, reg *registry.Registry, opts compile.Options) (*routing.Table, config.Diagnostics) {
	var diags config.Diagnostics
	h := fnv.New64a()
	for _, r := range set.Resources {
		h.Write([]byte(r.Key()))
		spec, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Spec)
		if err != nil {
			panic(err)
		}
		h.Write(spec)
		if msg, ok := r.Annotations[annotateCompileError]; ok {
			diags = append(diags, r.Diagnostic(config.Error, "spec.http[0].route[0].destination.host", msg))
		}
		if msg, ok := r.Annotations[annotateCompileWarning]; ok {
			diags = append(diags, r.Diagnostic(config.Warning, "spec.hosts[0]", msg))
		}
		if msg, ok := r.Annotations[annotateCompilePanic]; ok {
			panic(msg)
		}
	}
	t := &routing.Table{
		Version:  hex.EncodeToString(h.Sum(nil)),
		Proxy:    opts.Proxy,
		HTTP:     map[uint32]*routing.RouteConfig{},
		Clusters: map[string]*routing.Cluster{},
	}
	for _, svc := range reg.Services() {
		for _, p := range svc.Ports {
			name := routing.ClusterName(p.Number, "", svc.Hostname)
			t.Clusters[name] = &routing.Cluster{Name: name, Host: svc.Hostname, Port: p.Number}
		}
	}
	return t, diags
}

// recordingUpstreams is a trivial Upstreams: it remembers each update and
// returns a nil handle per cluster.
type recordingUpstreams struct{ updates [][]string }

func (u *recordingUpstreams) Update(clusters map[string]*routing.Cluster) map[string]*upstream.Cluster {
	names := make([]string, 0, len(clusters))
	handles := map[string]*upstream.Cluster{}
	for name := range clusters {
		names = append(names, name)
		handles[name] = nil
	}
	u.updates = append(u.updates, names)
	return handles
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testEngine is an Engine wired to recording fakes.
type testEngine struct {
	*Engine
	upstreams *recordingUpstreams
	published chan *routing.Table
	reg       *prometheus.Registry
	logs      *syncBuffer
	clock     time.Time
}

func newTestEngine(t *testing.T) *testEngine {
	t.Helper()
	te := &testEngine{
		upstreams: &recordingUpstreams{},
		published: make(chan *routing.Table, 100),
		reg:       prometheus.NewRegistry(),
		logs:      &syncBuffer{},
		clock:     time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC),
	}
	te.Engine = New(Options{
		Compile:   compile.Options{Proxy: routing.Proxy{Role: routing.RoleMesh, Namespace: "default"}},
		Logger:    slog.New(slog.NewTextHandler(te.logs, nil)),
		Upstreams: te.upstreams,
		Publish: func(t *routing.Table, handles map[string]*upstream.Cluster) {
			if len(handles) != len(t.Clusters) {
				panic("published handles do not match the table's clusters")
			}
			te.published <- t
		},
		Metrics:     telemetry.NewConfigMetrics(te.reg),
		CompileFunc: fakeCompile,
		Now:         func() time.Time { return te.clock },
	})
	return te
}

// publishes returns the tables published since the last call.
func (te *testEngine) publishes() []*routing.Table {
	var out []*routing.Table
	for {
		select {
		case t := <-te.published:
			out = append(out, t)
		default:
			return out
		}
	}
}

func (te *testEngine) expectCounters(t *testing.T, success, failure int) {
	t.Helper()
	want := strings.NewReader(`
# HELP michi_config_reload_errors_total Configuration reloads rejected because the configuration had errors.
# TYPE michi_config_reload_errors_total counter
michi_config_reload_errors_total ` + strconv.Itoa(failure) + `
# HELP michi_config_reloads_total Configuration reloads, by result.
# TYPE michi_config_reloads_total counter
michi_config_reloads_total{result="error"} ` + strconv.Itoa(failure) + `
michi_config_reloads_total{result="success"} ` + strconv.Itoa(success) + `
`)
	if err := testutil.GatherAndCompare(te.reg, want, "michi_config_reloads_total", "michi_config_reload_errors_total"); err != nil {
		t.Error(err)
	}
}

const reviewsSE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    labels: {version: v1}
`

const reviewsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
`

// load writes files into a fresh directory and loads it as the source
// would.
func load(t *testing.T, files map[string]string) (*config.Set, config.Diagnostics) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return config.Load([]string{dir}, config.LoadOptions{})
}

func TestApplyPublishes(t *testing.T) {
	te := newTestEngine(t)
	select {
	case <-te.Ready():
		t.Fatal("Ready closed before anything was published")
	default:
	}
	warned := strings.Replace(reviewsVS, "namespace: default", "namespace: default\n  annotations: {michi.test/compile-warning: host shadows another}", 1)
	set, diags := load(t, map[string]string{"se.yaml": reviewsSE, "vs.yaml": warned})
	if err := te.Apply(set, diags); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	pub := te.publishes()
	if len(pub) != 1 {
		t.Fatalf("got %d publishes, want 1", len(pub))
	}
	if te.Table() != pub[0] {
		t.Error("Table() is not the published table")
	}
	select {
	case <-te.Ready():
	default:
		t.Error("Ready not closed after the first publish")
	}
	if diff := cmp.Diff([][]string{{"outbound|9080||reviews.default.svc.cluster.local"}}, te.upstreams.updates); diff != "" {
		t.Errorf("upstream updates mismatch (-want +got):\n%s", diff)
	}

	st := te.Status()
	if st.Version != pub[0].Version || st.Version == "" {
		t.Errorf("Status().Version = %q, want the table's %q", st.Version, pub[0].Version)
	}
	if !st.LastApplied.Equal(te.clock) || st.LastReloadError != nil {
		t.Errorf("Status() = applied %v, error %v; want applied %v and no error", st.LastApplied, st.LastReloadError, te.clock)
	}
	var resources []string
	for _, r := range st.Resources {
		resources = append(resources, strings.Replace(r.String(), filepath.Dir(r.Pos.File)+"/", "", 1))
	}
	if diff := cmp.Diff([]string{"ServiceEntry default/reviews se.yaml:1", "VirtualService default/reviews vs.yaml:1"}, resources); diff != "" {
		t.Errorf("Status().Resources mismatch (-want +got):\n%s", diff)
	}
	if len(st.Diagnostics) != 1 || st.Diagnostics[0].Message != "host shadows another" {
		t.Errorf("Status().Diagnostics = %v, want the compile warning", st.Diagnostics)
	}
	te.expectCounters(t, 1, 0)
	if logs := te.logs.String(); !strings.Contains(logs, "host shadows another") || !strings.Contains(logs, "configuration published") {
		t.Errorf("logs lack the warning or the publish:\n%s", logs)
	}
}

func TestApplyRejectsAndKeepsLastGood(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		wantError string
	}{
		{
			name:      "load error",
			files:     map[string]string{"se.yaml": reviewsSE, "vs.yaml": "kind: [unclosed\n"},
			wantError: "invalid YAML",
		},
		{
			name: "compile error",
			files: map[string]string{"se.yaml": reviewsSE, "vs.yaml": strings.Replace(reviewsVS, "namespace: default",
				"namespace: default\n  annotations: {michi.test/compile-error: host not found}", 1)},
			wantError: "VirtualService default/reviews: spec.http[0].route[0].destination.host: host not found",
		},
		{
			name: "compile panic",
			files: map[string]string{"se.yaml": reviewsSE, "vs.yaml": strings.Replace(reviewsVS, "namespace: default",
				"namespace: default\n  annotations: {michi.test/compile-panic: boom}", 1)},
			wantError: "internal error: compile panicked: boom",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEngine(t)
			good, diags := load(t, map[string]string{"se.yaml": reviewsSE})
			if err := te.Apply(good, diags); err != nil {
				t.Fatalf("Apply(good): %v", err)
			}
			live := te.Table()
			te.publishes()

			te.clock = te.clock.Add(time.Minute)
			bad, diags := load(t, tc.files)
			err := te.Apply(bad, diags)
			var rejected *RejectedError
			if !errors.As(err, &rejected) || !strings.Contains(err.Error(), tc.wantError) {
				t.Fatalf("Apply(bad) error = %v, want a *RejectedError containing %q", err, tc.wantError)
			}
			if pub := te.publishes(); len(pub) != 0 {
				t.Errorf("a rejected configuration published %d tables", len(pub))
			}
			if te.Table() != live {
				t.Error("the live table changed after a rejected reload")
			}
			st := te.Status()
			if st.LastReloadError == nil || !st.LastReloadError.Time.Equal(te.clock) || !st.LastReloadError.Findings.HasErrors() {
				t.Fatalf("Status().LastReloadError = %+v, want the findings at %v", st.LastReloadError, te.clock)
			}
			if len(st.Resources) != 1 || st.Version != live.Version {
				t.Errorf("Status() describes %d resources at %q, want the live configuration's 1 at %q", len(st.Resources), st.Version, live.Version)
			}
			te.expectCounters(t, 1, 1)
			for _, d := range st.LastReloadError.Findings.Errors() {
				if !strings.Contains(te.logs.String(), d.Message) {
					t.Errorf("finding %q was not logged", d.Message)
				}
			}

			// A valid reload swaps the table and clears the error.
			te.clock = te.clock.Add(time.Minute)
			fixed, diags := load(t, map[string]string{"se.yaml": reviewsSE, "vs.yaml": reviewsVS})
			if err := te.Apply(fixed, diags); err != nil {
				t.Fatalf("Apply(fixed): %v", err)
			}
			if pub := te.publishes(); len(pub) != 1 || te.Table() != pub[0] || pub[0].Version == live.Version {
				t.Fatalf("after the fix got %d publishes, want 1 new table", len(pub))
			}
			if st := te.Status(); st.LastReloadError != nil || !st.LastApplied.Equal(te.clock) {
				t.Errorf("after the fix Status() = error %v applied %v, want no error, applied %v", st.LastReloadError, st.LastApplied, te.clock)
			}
			te.expectCounters(t, 2, 1)
		})
	}
}

func TestApplyIdenticalConfigDoesNotPublish(t *testing.T) {
	te := newTestEngine(t)
	set, diags := load(t, map[string]string{"se.yaml": reviewsSE, "vs.yaml": reviewsVS})
	if err := te.Apply(set, diags); err != nil {
		t.Fatal(err)
	}
	first := te.Status()
	te.publishes()

	// The same resources from other files: same table, new positions.
	te.clock = te.clock.Add(time.Minute)
	again, diags := load(t, map[string]string{"all.yaml": reviewsSE + "---\n" + reviewsVS})
	if err := te.Apply(again, diags); err != nil {
		t.Fatal(err)
	}
	if pub := te.publishes(); len(pub) != 0 {
		t.Errorf("identical configuration published %d tables, want 0", len(pub))
	}
	if len(te.upstreams.updates) != 1 {
		t.Errorf("identical configuration reconciled upstreams %d times, want once in all", len(te.upstreams.updates))
	}
	st := te.Status()
	if st.Table != first.Table || !st.LastApplied.Equal(first.LastApplied) {
		t.Error("identical configuration replaced the live table or its time")
	}
	if got := filepath.Base(st.Resources[1].Pos.File); got != "all.yaml" {
		t.Errorf("Status().Resources[1] is in %q, want the new file all.yaml", got)
	}
	te.expectCounters(t, 2, 0)
}

func TestApplyFirstConfigInvalid(t *testing.T) {
	te := newTestEngine(t)
	set, diags := load(t, map[string]string{"vs.yaml": "kind: [unclosed\n"})
	if err := te.Apply(set, diags); err == nil {
		t.Fatal("Apply of an invalid first configuration succeeded")
	}
	if te.Table() != nil || te.Status().LastReloadError == nil {
		t.Errorf("got table %v, error %v; want no table and the error recorded", te.Table(), te.Status().LastReloadError)
	}
	select {
	case <-te.Ready():
		t.Error("Ready closed without a publish")
	default:
	}
}

// notifyingSource wraps a source and tells the test after each Apply.
type notifyingSource struct {
	Source
	applied chan struct{}
}

func (s notifyingSource) Run(ctx context.Context, emit func(*config.Set, config.Diagnostics)) error {
	return s.Source.Run(ctx, func(set *config.Set, diags config.Diagnostics) {
		emit(set, diags)
		s.applied <- struct{}{}
	})
}

func TestRunReloadsFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("se.yaml", reviewsSE)
	te := newTestEngine(t)
	src := notifyingSource{Source: &source.File{Paths: []string{dir}}, applied: make(chan struct{}, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- te.Run(ctx, src) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	}()
	wait := func(what string) {
		t.Helper()
		select {
		case <-src.applied:
		case <-time.After(5 * time.Second):
			t.Fatalf("no apply after %s", what)
		}
	}

	wait("start")
	<-te.Ready()
	live := te.Table()

	write("vs.yaml", "kind: [unclosed\n")
	wait("the invalid edit")
	if te.Table() != live || te.Status().LastReloadError == nil {
		t.Fatal("an invalid edit replaced the live table or was not recorded")
	}

	write("vs.yaml", reviewsVS)
	wait("the fix")
	if te.Table() == live || te.Status().LastReloadError != nil {
		t.Fatal("the fixed configuration did not go live")
	}
	te.expectCounters(t, 2, 1)
}

func TestRunReturnsFirstRejection(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vs.yaml"), []byte("kind: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	te := newTestEngine(t)
	done := make(chan error, 1)
	go func() { done <- te.Run(context.Background(), &source.File{Paths: []string{dir}}) }()
	select {
	case err := <-done:
		var rejected *RejectedError
		if !errors.As(err, &rejected) {
			t.Fatalf("Run error = %v, want a *RejectedError", err)
		}
		if !strings.Contains(err.Error(), "vs.yaml:1: invalid YAML") {
			t.Errorf("Run error = %q, want it to name the file and line", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run kept running after the first configuration was rejected")
	}
}

func TestRejectedErrorMessage(t *testing.T) {
	err := &RejectedError{Findings: config.Diagnostics{
		{File: "vs.yaml", Line: 7, Kind: "VirtualService", Namespace: "default", Name: "reviews",
			Field: "spec.http[1].route[0].weight", Severity: config.Error, Message: "must be between 0 and 100"},
		{File: "vs.yaml", Line: 9, Severity: config.Warning, Message: "only a warning"},
		{File: "dr.yaml", Line: 2, Severity: config.Error, Message: "second error"},
	}}
	want := "configuration rejected: 2 errors\n" +
		"  vs.yaml:7: VirtualService default/reviews: spec.http[1].route[0].weight: must be between 0 and 100\n" +
		"  dr.yaml:2: second error"
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Error() mismatch (-want +got):\n%s", diff)
	}
}

// TestApplyWithRealCompiler runs the default CompileFunc, compile.Compile,
// on real files: the reviews VirtualService becomes a route on port 9080
// to the reviews cluster.
func TestApplyWithRealCompiler(t *testing.T) {
	published := make(chan *routing.Table, 1)
	e := New(Options{
		Compile: compile.Options{Proxy: routing.Proxy{Role: routing.RoleMesh, Namespace: "default"}},
		Logger:  slog.New(slog.DiscardHandler),
		Publish: func(t *routing.Table, _ map[string]*upstream.Cluster) { published <- t },
	})
	set, diags := load(t, map[string]string{"se.yaml": reviewsSE, "vs.yaml": reviewsVS})
	if err := e.Apply(set, diags); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	table := <-published
	rc := table.HTTP[9080]
	if rc == nil {
		t.Fatalf("table has no route configuration for port 9080: %v", table.HTTP)
	}
	vh := rc.Lookup("reviews.default.svc.cluster.local")
	if vh == nil || vh.VirtualService != "default/reviews" || len(vh.Routes) == 0 || vh.Routes[0].Forward == nil {
		t.Fatalf("virtual host for reviews = %+v, want the VirtualService's forward route", vh)
	}
	if got, want := vh.Routes[0].Forward.Destinations[0].Cluster, "outbound|9080||reviews.default.svc.cluster.local"; got != want {
		t.Errorf("route goes to %q, want %q", got, want)
	}
	if table.Clusters["outbound|9080||reviews.default.svc.cluster.local"] == nil {
		t.Errorf("table lacks the reviews cluster: %v", table.Clusters)
	}
	if e.Status().Version != table.Version || table.Version == "" {
		t.Errorf("Status().Version = %q, want the table's non-empty %q", e.Status().Version, table.Version)
	}

	// Compiling the same files again gives the same version: no publish.
	if err := e.Apply(set, diags); err != nil {
		t.Fatal(err)
	}
	select {
	case <-published:
		t.Error("an identical configuration was published again")
	default:
	}
}

func TestDedupe(t *testing.T) {
	a := config.Diagnostic{File: "a.yaml", Line: 1, Severity: config.Warning, Message: "x"}
	b := config.Diagnostic{File: "b.yaml", Line: 2, Severity: config.Error, Message: "y"}
	got := dedupe(config.Diagnostics{b, a, b, a, a})
	if diff := cmp.Diff(config.Diagnostics{a, b}, got); diff != "" {
		t.Errorf("dedupe mismatch (-want +got):\n%s", diff)
	}
}
