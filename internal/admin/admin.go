// Package admin serves michi's admin endpoints, modelled on Envoy's admin
// interface so that the habits (and scripts) of Istio operators carry
// over: /ready, /config_dump, /clusters, /stats/prometheus and
// /debug/pprof/.
//
// admin only reads: the engine's Status, the upstream clusters' state and
// a Prometheus gatherer. It changes nothing but its own drain flag.
package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/engine"
	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/upstream"
)

// Options configure a Server.
type Options struct {
	// Status returns the engine's view of the configuration; required.
	// (*engine.Engine).Status fits.
	Status func() *engine.Status
	// Clusters returns the upstream clusters' state;
	// (*upstream.Manager).Status fits. nil shows no clusters.
	Clusters func() []upstream.ClusterStatus
	// Gatherer is served on /stats/prometheus; nil means
	// prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Logger receives errors writing responses; nil means slog.Default().
	Logger *slog.Logger
}

// Server is the admin HTTP handler. It is safe for concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	draining atomic.Bool
}

// New returns a Server.
func New(opts Options) *Server {
	if opts.Clusters == nil {
		opts.Clusters = func() []upstream.ClusterStatus { return nil }
	}
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.DefaultGatherer
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "admin")

	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("GET /ready", s.ready)
	s.mux.HandleFunc("GET /config_dump", s.configDump)
	s.mux.HandleFunc("GET /clusters", s.clusters)
	s.mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError),
	}))
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return s
}

// Handler returns the admin endpoints.
func (s *Server) Handler() http.Handler { return s.mux }

// Drain makes /ready answer 503 DRAINING from now on, as Envoy's does
// while it drains, so that load balancers stop sending new connections
// before the process stops.
func (s *Server) Drain() { s.draining.Store(true) }

var endpoints = []struct{ path, help string }{
	{"/ready", "LIVE once a configuration is being served"},
	{"/config_dump", "the live routing table, findings and last reload error (JSON)"},
	{"/clusters", "upstream clusters and endpoints (?format=json for JSON)"},
	{"/stats/prometheus", "metrics in Prometheus format"},
	{"/debug/pprof/", "Go profiles"},
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	b.WriteString("michi admin\n\n")
	for _, e := range endpoints {
		b.WriteString("  ")
		b.WriteString(e.path)
		b.WriteString(strings.Repeat(" ", 20-len(e.path)))
		b.WriteString(e.help)
		b.WriteString("\n")
	}
	s.writeText(w, http.StatusOK, b.String())
}

// ready answers like Envoy's /ready: 200 "LIVE" once the first
// configuration is published, 503 with the server state otherwise.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.draining.Load():
		s.writeText(w, http.StatusServiceUnavailable, "DRAINING\n")
	case s.opts.Status().Table == nil:
		s.writeText(w, http.StatusServiceUnavailable, "INITIALIZING\n")
	default:
		s.writeText(w, http.StatusOK, "LIVE\n")
	}
}

// configDump is the /config_dump document.
type configDump struct {
	Version         string              `json:"version"`
	LastApplied     *time.Time          `json:"lastApplied"`
	Table           *routing.Table      `json:"table"`
	Diagnostics     config.Diagnostics  `json:"diagnostics"`
	LastReloadError *engine.ReloadError `json:"lastReloadError"`
	Resources       []string            `json:"resources"`
}

func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	st := s.opts.Status()
	dump := configDump{
		Version:         st.Version,
		Table:           st.Table,
		Diagnostics:     st.Diagnostics,
		LastReloadError: st.LastReloadError,
		Resources:       make([]string, 0, len(st.Resources)),
	}
	if !st.LastApplied.IsZero() {
		dump.LastApplied = &st.LastApplied
	}
	if dump.Diagnostics == nil {
		dump.Diagnostics = config.Diagnostics{}
	}
	for _, res := range st.Resources {
		dump.Resources = append(dump.Resources, res.String())
	}
	s.writeJSON(w, dump)
}

// clusters answers like Envoy's /clusters: one "cluster::stat::value" or
// "cluster::endpoint::stat::value" line each, or with ?format=json the
// upstream package's ClusterStatus list.
func (s *Server) clusters(w http.ResponseWriter, r *http.Request) {
	status := slices.Clone(s.opts.Clusters()) // sorted here; the caller's slice is not ours
	slices.SortFunc(status, func(a, b upstream.ClusterStatus) int { return strings.Compare(a.Name, b.Name) })
	switch format := r.URL.Query().Get("format"); format {
	case "json":
		if status == nil {
			status = []upstream.ClusterStatus{}
		}
		s.writeJSON(w, status)
	case "", "text":
		var table *routing.Table
		if st := s.opts.Status(); st != nil {
			table = st.Table
		}
		var b []byte
		for i := range status {
			var cfg *routing.Cluster
			if table != nil {
				cfg = table.Clusters[status[i].Name]
			}
			b = appendClusterText(b, &status[i], cfg)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(b)
	default:
		s.writeText(w, http.StatusBadRequest, "unknown format "+strconv.Quote(format)+": want text or json\n")
	}
}

// appendClusterText renders one cluster the way Envoy's /clusters does:
// its circuit-breaker thresholds (from the compiled configuration, when
// the cluster is in the live table), then for every endpoint its request
// counts, weight, locality and health flags. Two lines are michi's own:
// ejected and ejection_count, the outlier detector's view of the endpoint.
func appendClusterText(b []byte, cs *upstream.ClusterStatus, cfg *routing.Cluster) []byte {
	name := cs.Name
	line := func(parts ...string) {
		b = append(b, name...)
		for _, p := range parts {
			b = append(b, "::"...)
			b = append(b, p...)
		}
		b = append(b, '\n')
	}
	u := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }

	line("observability_name", name)
	if cfg != nil {
		cp := cfg.Policy.ConnectionPool
		line("default_priority", "max_connections", u(cp.MaxConnections))
		line("default_priority", "max_pending_requests", u(cp.MaxPendingRequests))
		line("default_priority", "max_requests", u(cp.MaxRequests))
		line("default_priority", "max_retries", u(cp.MaxRetries))
	}
	line("added_via_api", "true")
	for _, ep := range cs.Endpoints {
		region, zone, subZone := splitLocality(ep.Locality)
		a := ep.Address
		line(a, "rq_active", i(ep.ActiveRequests))
		line(a, "rq_error", i(ep.Errors))
		line(a, "rq_total", i(ep.TotalRequests))
		line(a, "weight", u(ep.Weight))
		line(a, "region", region)
		line(a, "zone", zone)
		line(a, "sub_zone", subZone)
		line(a, "health_flags", healthFlags(ep))
		line(a, "ejected", strconv.FormatBool(ep.Ejected))
		line(a, "ejection_count", strconv.Itoa(ep.EjectionCount))
	}
	return b
}

// healthFlags renders Envoy's health_flags: "healthy", or the reasons the
// endpoint is out of rotation, each prefixed by "/".
func healthFlags(ep upstream.EndpointStatus) string {
	var flags string
	if !ep.Healthy {
		flags += "/failed_active_hc"
	}
	if ep.Ejected {
		flags += "/failed_outlier_check"
	}
	if flags == "" {
		return "healthy"
	}
	return flags
}

// splitLocality splits Istio's "region/zone/subzone" locality.
func splitLocality(l string) (region, zone, subZone string) {
	parts := strings.SplitN(l, "/", 3)
	parts = append(parts, "", "", "")
	return parts[0], parts[1], parts[2]
}

func (s *Server) writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		s.log.Error("encode admin response", "error", err)
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(body, '\n'))
}
