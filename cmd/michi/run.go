package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/michi-mesh/michi/internal/admin"
	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/dataplane"
	"github.com/michi-mesh/michi/internal/engine"
	"github.com/michi-mesh/michi/internal/meshca"
	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/source"
	"github.com/michi-mesh/michi/internal/telemetry"
	"github.com/michi-mesh/michi/internal/upstream"
)

func init() {
	register("run", "run the proxy on Istio configuration, hot-reloading it", runCmd)
}

// labelMap is a k=v,k=v flag.
type labelMap map[string]string

func (l labelMap) String() string {
	var parts []string
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (l labelMap) Set(v string) error {
	for _, kv := range strings.Split(v, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("label %q: want key=value", kv)
		}
		l[k] = val
	}
	return nil
}

// runFlags are the `michi run` flags: a public contract, keep them stable.
type runFlags struct {
	paths           pathList
	meshAddr        string
	adminAddr       string
	namespace       string
	labels          labelMap
	outboundPolicy  string
	accessLog       string
	accessLogFormat string
	drainTimeout    time.Duration
	clusterDomain   string
	compat          string
	locality        string
	meshCADir       string
	inboundAddr     string
	inboundTarget   string
	logLevel        string
}

func (f *runFlags) register(fs *flag.FlagSet) {
	f.labels = labelMap{}
	fs.Var(&f.paths, "c", "configuration file or directory (repeatable); directories are read recursively for *.yaml, *.yml, *.json")
	fs.StringVar(&f.meshAddr, "mesh-addr", "127.0.0.1:15001", "sidecar-style outbound HTTP listener (HTTP/1.1 and h2c); also an HTTP proxy for absolute-form requests")
	fs.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:15000", "admin listener: /ready, /config_dump, /clusters, /stats/prometheus")
	fs.StringVar(&f.namespace, "namespace", "default", "the proxy's own namespace (short names, exportTo, sourceNamespace)")
	fs.Var(f.labels, "labels", "the proxy's own workload labels, k=v,k=v (sourceLabels)")
	fs.StringVar(&f.outboundPolicy, "outbound-policy", "ALLOW_ANY", "Istio outboundTrafficPolicy for unknown hosts: ALLOW_ANY or REGISTRY_ONLY")
	fs.StringVar(&f.accessLog, "access-log", "off", "access log: off, stdout or a file path")
	fs.StringVar(&f.accessLogFormat, "access-log-format", "text", "access log format: text (Istio's default) or json")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 5*time.Second, "on SIGTERM, how long in-flight requests may take to finish")
	fs.StringVar(&f.clusterDomain, "cluster-domain", config.DefaultClusterDomain, "Kubernetes cluster DNS domain for short host names")
	fs.StringVar(&f.compat, "compat", "", "behave like an older Istio where defaults changed: 1.27 appends -shadow to mirrored hosts")
	fs.StringVar(&f.locality, "locality", "", "the proxy's own locality region/zone/subzone, for locality load balancing")
	fs.StringVar(&f.meshCADir, "mesh-ca-dir", "", "directory with this proxy's mesh identity (cert.pem, key.pem, root-cert.pem) for ISTIO_MUTUAL")
	fs.StringVar(&f.inboundAddr, "inbound-addr", "", "sidecar-style inbound listener: mutual TLS with --mesh-ca-dir (Istio STRICT), plaintext without")
	fs.StringVar(&f.inboundTarget, "inbound-target", "", "the local application the inbound listener forwards to, host:port")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

func (f *runFlags) check() error {
	if len(f.paths) == 0 {
		return errors.New("no configuration: give at least one -c PATH")
	}
	switch f.outboundPolicy {
	case string(routing.AllowAny), string(routing.RegistryOnly):
	default:
		return fmt.Errorf("--outbound-policy %q: want ALLOW_ANY or REGISTRY_ONLY", f.outboundPolicy)
	}
	switch f.accessLogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--access-log-format %q: want text or json", f.accessLogFormat)
	}
	switch f.compat {
	case "", "1.27", "1.28":
	default:
		return fmt.Errorf("--compat %q: michi follows the newest Istio; only 1.27 (mirror -shadow suffix) is offered", f.compat)
	}
	if (f.inboundAddr == "") != (f.inboundTarget == "") {
		return errors.New("--inbound-addr and --inbound-target go together")
	}
	if f.drainTimeout < 0 {
		return errors.New("--drain-timeout must not be negative")
	}
	return nil
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("michi run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f runFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: michi run -c PATH [-c PATH ...] [flags]")
		fmt.Fprintln(stderr, "\nServes the Istio configuration under PATH, reloading it when files change.")
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "michi run: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if err := f.check(); err != nil {
		fmt.Fprintln(stderr, "michi run:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &f, stderr, nil); err != nil {
		fmt.Fprintln(stderr, "michi run:", err)
		return exitFail
	}
	return exitOK
}

// runReady, when set (by demo and tests), is told the bound addresses once
// the first configuration is live.
type runReady func(meshAddr, adminAddr string)

// run serves until ctx is done, then drains. It returns an error when the
// proxy cannot start: bad flags, busy ports, an invalid first
// configuration.
func run(ctx context.Context, f *runFlags, stderr io.Writer, ready runReady) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: parseLevel(f.logLevel)}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var mesh *upstream.MeshIdentity
	if f.meshCADir != "" {
		mesh = &upstream.MeshIdentity{
			CertFile:  f.meshCADir + "/cert.pem",
			KeyFile:   f.meshCADir + "/key.pem",
			RootsFile: f.meshCADir + "/root-cert.pem",
		}
	}
	mgr := upstream.NewManager(upstream.Options{Logger: log, Locality: f.locality, Labels: f.labels, MeshTLS: mesh})
	defer mgr.Close()
	reg.MustRegister(telemetry.NewClusterCollector(mgr.StatusUsed))

	accessLog, closer, err := telemetry.OpenAccessLog(f.accessLog, f.accessLogFormat)
	if err != nil {
		return fmt.Errorf("--access-log: %w", err)
	}
	if closer != nil {
		defer closer.Close()
	}
	metrics := telemetry.NewMetrics(reg, telemetry.MetricsOptions{
		Workload:  f.labels["app"],
		Namespace: f.namespace,
		Labels:    f.labels,
	})
	dp := dataplane.New(dataplane.Options{
		Logger:           log,
		AccessLog:        accessLog,
		Metrics:          metrics,
		Passthrough:      mgr.Passthrough(),
		ShadowHostSuffix: f.compat == "1.27",
	})
	eng := engine.New(engine.Options{
		Compile: compile.Options{
			Proxy: routing.Proxy{
				Role:      routing.RoleMesh,
				Namespace: f.namespace,
				Labels:    f.labels,
				Locality:  f.locality,
			},
			ClusterDomain:  f.clusterDomain,
			OutboundPolicy: routing.OutboundPolicy(f.outboundPolicy),
		},
		ClusterDomain: f.clusterDomain,
		Logger:        log,
		Upstreams:     mgr,
		Publish:       dp.Publish,
		Metrics:       telemetry.NewConfigMetrics(reg),
	})
	adm := admin.New(admin.Options{Status: eng.Status, Clusters: mgr.Status, Gatherer: reg, Logger: log})

	// Bind both ports before loading, so a busy port fails fast.
	meshLn, err := net.Listen("tcp", f.meshAddr)
	if err != nil {
		return fmt.Errorf("--mesh-addr: %w", err)
	}
	defer meshLn.Close()
	adminLn, err := net.Listen("tcp", f.adminAddr)
	if err != nil {
		return fmt.Errorf("--admin-addr: %w", err)
	}
	adminSrv := &http.Server{Handler: adm.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go adminSrv.Serve(adminLn)
	defer adminSrv.Close()

	engCtx, cancelEngine := context.WithCancel(context.Background())
	defer cancelEngine()
	// The document cache makes a reload decode only the documents that
	// changed.
	src := &source.File{Paths: f.paths, Load: config.LoadOptions{DefaultNamespace: f.namespace, Cache: &config.DocCache{}}, Logger: log}
	engErr := make(chan error, 1)
	go func() { engErr <- eng.Run(engCtx, src) }()
	select {
	case <-eng.Ready():
	case err := <-engErr:
		if err == nil {
			err = errors.New("configuration source stopped before the first configuration")
		}
		return err
	case <-ctx.Done():
		return nil
	}

	go dp.Serve(meshLn)
	var inbound *dataplane.Server
	if f.inboundAddr != "" {
		if inbound, err = serveInbound(f, log, accessLog); err != nil {
			return err
		}
	}
	log.Info("michi is serving", "mesh", meshLn.Addr().String(), "admin", adminLn.Addr().String(),
		"version", eng.Status().Version)
	if ready != nil {
		ready(meshLn.Addr().String(), adminLn.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-engErr:
		if err != nil {
			log.Error("configuration source failed", "err", err)
		}
		<-ctx.Done()
	}
	// Drain: report not ready, stop accepting, let in-flight requests
	// finish within the drain timeout.
	log.Info("draining", "timeout", f.drainTimeout.String())
	adm.Drain()
	drainCtx, cancel := context.WithTimeout(context.Background(), f.drainTimeout)
	defer cancel()
	if err := dp.Shutdown(drainCtx); err != nil {
		log.Warn("drain ended with requests still in flight", "err", err)
	}
	if inbound != nil {
		inbound.Shutdown(drainCtx)
	}
	cancelEngine()
	return nil
}

// serveInbound starts the inbound listener: like an Istio sidecar's
// inbound side it forwards everything to the local application, and with a
// mesh identity it accepts only mutual TLS from mesh peers (STRICT).
func serveInbound(f *runFlags, log *slog.Logger, accessLog *telemetry.AccessLog) (*dataplane.Server, error) {
	table, err := dataplane.InboundTable(f.inboundTarget)
	if err != nil {
		return nil, fmt.Errorf("--inbound-target: %w", err)
	}
	ln, err := net.Listen("tcp", f.inboundAddr)
	if err != nil {
		return nil, fmt.Errorf("--inbound-addr: %w", err)
	}
	mgr := upstream.NewManager(upstream.Options{Logger: log})
	srv := dataplane.New(dataplane.Options{Logger: log.With("listener", "inbound"), AccessLog: accessLog})
	srv.Publish(table, mgr.Update(table.Clusters))
	if f.meshCADir == "" {
		go srv.Serve(ln)
		log.Info("inbound listener (plaintext)", "addr", ln.Addr().String(), "target", f.inboundTarget)
		return srv, nil
	}
	id, err := meshca.LoadIdentityDir(f.meshCADir)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("--mesh-ca-dir: %w", err)
	}
	go srv.ServeTLS(ln, meshca.ServerTLSConfig(id))
	log.Info("inbound listener (mutual TLS)", "addr", ln.Addr().String(), "target", f.inboundTarget, "identity", id.ID.String())
	return srv, nil
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
