// Package engine is michi's single writer. It takes full configuration
// sets from a source, validates them, builds the service registry,
// compiles the routing table, reconciles the upstream clusters and
// publishes the result to the dataplane:
//
//	source → validate → registry → compile → diff → publish
//
// A configuration with any error is rejected as a whole and the live one
// keeps serving (guide §9.2, as Envoy keeps its last accepted xDS update
// and records the rejection). Everything the admin endpoints show about
// the configuration comes from Status.
//
// engine imports config, registry, compile, routing, upstream and
// telemetry; the dataplane never imports engine, it is handed snapshots
// through Options.Publish.
package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/telemetry"
	"github.com/michi-mesh/michi/internal/upstream"
)

// Source delivers full configuration sets: once at start and again after
// every change. It calls emit from one goroutine, one call at a time, and
// returns when ctx is done. source.File implements it.
type Source interface {
	Run(ctx context.Context, emit func(*config.Set, config.Diagnostics)) error
}

// Upstreams reconciles the runtime state of the upstream clusters with a
// newly compiled table and returns the handles the dataplane routes to.
// *upstream.Manager implements it; it is called from the engine's
// goroutine only.
type Upstreams interface {
	Update(clusters map[string]*routing.Cluster) map[string]*upstream.Cluster
}

// CompileFunc compiles a validated set into a routing table. The table's
// Version must identify its content: equal versions mean equal tables,
// which the engine relies on to skip publishing a table that did not
// change.
type CompileFunc func(*config.Set, *registry.Registry, compile.Options) (*routing.Table, config.Diagnostics)

// Options configure an Engine.
type Options struct {
	// Compile is the proxy identity and mesh settings to compile for.
	Compile compile.Options
	// ClusterDomain resolves short host names (default cluster.local).
	ClusterDomain string
	// Logger receives one line per publish, rejection and finding; nil
	// means slog.Default().
	Logger *slog.Logger
	// Upstreams reconciles cluster state before each publish; nil skips
	// reconciliation and publishes nil handles.
	Upstreams Upstreams
	// Publish hands a new table and its cluster handles to the dataplane.
	// It is called from the engine's goroutine; nil publishes nowhere
	// (Table and Status still update).
	Publish func(*routing.Table, map[string]*upstream.Cluster)
	// Metrics counts reloads; nil counts nothing.
	Metrics *telemetry.ConfigMetrics
	// CompileFunc replaces compile.Compile, for tests.
	CompileFunc CompileFunc
	// Now is the clock for Status times; nil means time.Now.
	Now func() time.Time
}

// Engine applies configuration sets. Apply and Run must be called from
// one goroutine; Table, Status and Ready are safe for concurrent use.
type Engine struct {
	opts    Options
	log     *slog.Logger
	compile CompileFunc
	now     func() time.Time

	status    atomic.Pointer[Status]
	ready     chan struct{}
	readyOnce sync.Once
}

// Status is what the engine knows about the configuration, for the admin
// endpoints. A Status is immutable once returned.
type Status struct {
	// Version is the live table's version; "" before the first publish.
	Version string
	// LastApplied is when the live table was published.
	LastApplied time.Time
	// Table is the live table; nil before the first publish.
	Table *routing.Table
	// Diagnostics are the warnings and notes about the configuration
	// that is live (errors never go live).
	Diagnostics config.Diagnostics
	// LastReloadError describes the last rejected configuration, when the
	// configuration on disk is not the live one; nil otherwise.
	LastReloadError *ReloadError
	// Resources lists the live configuration's resources in load order.
	Resources []Resource
}

// ReloadError is a rejected configuration.
type ReloadError struct {
	Time     time.Time          `json:"time"`
	Findings config.Diagnostics `json:"findings"`
}

// Resource names one loaded resource and where it was defined.
type Resource struct {
	Kind      config.Kind
	Namespace string
	Name      string
	Pos       config.Position
}

// String renders the resource as "Kind namespace/name file:line".
func (r Resource) String() string {
	s := string(r.Kind) + " " + r.Namespace + "/" + r.Name
	if r.Pos.File != "" {
		s += fmt.Sprintf(" %s:%d", r.Pos.File, r.Pos.Line)
	}
	return s
}

// RejectedError is returned by Apply when the configuration has errors.
type RejectedError struct {
	// Findings are every finding, errors and warnings, sorted.
	Findings config.Diagnostics
}

func (e *RejectedError) Error() string {
	errs := e.Findings.Errors()
	var b strings.Builder
	fmt.Fprintf(&b, "configuration rejected: %d error", len(errs))
	if len(errs) != 1 {
		b.WriteString("s")
	}
	for _, d := range errs {
		b.WriteString("\n  ")
		b.WriteString(d.String())
	}
	return b.String()
}

// New returns an Engine with nothing published.
func New(opts Options) *Engine {
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = config.DefaultClusterDomain
	}
	if opts.Compile.ClusterDomain == "" {
		opts.Compile.ClusterDomain = opts.ClusterDomain
	}
	e := &Engine{
		opts:    opts,
		log:     opts.Logger,
		compile: opts.CompileFunc,
		now:     opts.Now,
		ready:   make(chan struct{}),
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.log = e.log.With("component", "engine")
	if e.compile == nil {
		e.compile = compile.Compile
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.status.Store(&Status{})
	return e
}

// Table returns the live routing table, or nil before the first publish.
func (e *Engine) Table() *routing.Table { return e.status.Load().Table }

// Status returns the engine's view of the configuration.
func (e *Engine) Status() *Status { return e.status.Load() }

// Ready is closed once the first table has been published.
func (e *Engine) Ready() <-chan struct{} { return e.ready }

// Run applies every set src emits until src returns. If the first set is
// rejected, Run stops src and returns that *RejectedError, so that a
// proxy does not start on a broken configuration; later rejections keep
// the live table and Run carries on.
func (e *Engine) Run(ctx context.Context, src Source) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := true
	var firstErr error
	err := src.Run(ctx, func(set *config.Set, diags config.Diagnostics) {
		if !first && ctx.Err() != nil {
			return
		}
		err := e.Apply(set, diags)
		if first {
			first = false
			if err != nil {
				firstErr = err
				cancel()
			}
		}
	})
	if firstErr != nil {
		return firstErr
	}
	if err != nil {
		return fmt.Errorf("configuration source: %w", err)
	}
	return nil
}

// Apply validates, compiles, analyzes and publishes one configuration
// set; loadDiags are the loader's findings about it. Any error finding
// rejects the whole set: the live table stays, every finding is logged,
// and a *RejectedError is returned. A set that compiles to the live
// table's version is accepted without publishing again.
func (e *Engine) Apply(set *config.Set, loadDiags config.Diagnostics) error {
	start := e.now()
	diags := append(config.Diagnostics(nil), loadDiags...)
	diags = append(diags, config.Validate(set, config.ValidateOptions{ClusterDomain: e.opts.ClusterDomain})...)
	var table *routing.Table
	if !diags.HasErrors() {
		reg := registry.Build(set, e.opts.ClusterDomain)
		var cdiags config.Diagnostics
		table, cdiags = e.compileSafely(set, reg)
		diags = append(diags, cdiags...)
	}
	diags = dedupe(diags)
	if diags.HasErrors() {
		return e.reject(diags, start)
	}

	cur := e.status.Load()
	next := &Status{
		Version:     table.Version,
		LastApplied: start,
		Table:       table,
		Diagnostics: nonErrors(diags),
		Resources:   resourcesOf(set),
	}
	if cur.Table != nil && cur.Table.Version == table.Version {
		// Nothing changed for the dataplane (guide §9.3): keep the live
		// table, but take the new positions and warnings, and forget an
		// earlier rejection since what is on disk is live again.
		next.Table, next.LastApplied = cur.Table, cur.LastApplied
		e.status.Store(next)
		e.opts.Metrics.Succeeded(table.Version, start)
		e.log.Info("configuration unchanged", "version", table.Version)
		return nil
	}

	var handles map[string]*upstream.Cluster
	if e.opts.Upstreams != nil {
		handles = e.opts.Upstreams.Update(table.Clusters)
	}
	if e.opts.Publish != nil {
		e.opts.Publish(table, handles)
	}
	e.status.Store(next)
	e.readyOnce.Do(func() { close(e.ready) })
	e.opts.Metrics.Succeeded(table.Version, start)

	for _, d := range next.Diagnostics {
		e.logFinding(d)
	}
	e.log.Info("configuration published",
		"version", table.Version,
		"previous", cur.Version,
		"resources", len(next.Resources),
		"clusters", len(table.Clusters),
		"findings", len(next.Diagnostics),
		"duration_seconds", e.now().Sub(start).Seconds())
	// Loading and compiling a large configuration leaves behind many
	// times the memory the table keeps. Give it back to the OS now rather
	// than keep the peak as the proxy's resident size until the runtime's
	// background scavenger gets to it; one forced collection per applied
	// configuration is cheap next to compiling it.
	debug.FreeOSMemory()
	return nil
}

// reject records a rejected configuration and logs every finding.
func (e *Engine) reject(diags config.Diagnostics, at time.Time) error {
	cur := e.status.Load()
	next := *cur
	next.LastReloadError = &ReloadError{Time: at, Findings: diags}
	e.status.Store(&next)
	e.opts.Metrics.Failed()
	for _, d := range diags {
		e.logFinding(d)
	}
	live := cur.Version
	if live == "" {
		live = "none"
	}
	e.log.Error("configuration rejected; the live configuration is unchanged",
		"errors", len(diags.Errors()), "live_version", live)
	return &RejectedError{Findings: diags}
}

// logFinding logs one finding, one line, at the level of its severity.
func (e *Engine) logFinding(d config.Diagnostic) {
	level := slog.LevelInfo
	switch d.Severity {
	case config.Error:
		level = slog.LevelError
	case config.Warning:
		level = slog.LevelWarn
	}
	e.log.Log(context.Background(), level, "configuration finding", "finding", d.String())
}

// compileSafely runs the compile function and compile.Analyze, the
// cross-resource checks `michi validate` runs too, so that the proxy
// rejects what validate rejects and /config_dump shows the same warnings.
// A panic becomes an error finding: a bug in the compiler must not take
// down a proxy that is serving the previous configuration.
func (e *Engine) compileSafely(set *config.Set, reg *registry.Registry) (table *routing.Table, diags config.Diagnostics) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("compile panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			table = nil
			diags = config.Diagnostics{{Severity: config.Error, Message: fmt.Sprintf("internal error: compile panicked: %v", r)}}
		}
	}()
	table, diags = e.compile(set, reg, e.opts.Compile)
	diags = append(diags, compile.Analyze(set, reg, e.opts.Compile)...)
	if table == nil && !diags.HasErrors() {
		diags = append(diags, config.Diagnostic{Severity: config.Error, Message: "internal error: compile returned no table"})
	}
	return table, diags
}

// dedupe sorts findings and drops repeats: compile and Analyze can both
// report one problem.
func dedupe(ds config.Diagnostics) config.Diagnostics {
	ds.Sort()
	out := ds[:0]
	for _, d := range ds {
		if len(out) == 0 || d != out[len(out)-1] {
			out = append(out, d)
		}
	}
	return out
}

func nonErrors(ds config.Diagnostics) config.Diagnostics {
	var out config.Diagnostics
	for _, d := range ds {
		if d.Severity != config.Error {
			out = append(out, d)
		}
	}
	return out
}

func resourcesOf(set *config.Set) []Resource {
	out := make([]Resource, 0, len(set.Resources))
	for _, r := range set.Resources {
		out = append(out, Resource{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Pos: r.Pos})
	}
	return out
}
