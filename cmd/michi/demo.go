package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/demo"
	"github.com/michi-mesh/michi/internal/routing"
)

func init() {
	register("demo", "run a Bookinfo-like mesh on loopback behind michi, with a live summary", demoCmd)
}

// maxLoad bounds --load: background traffic is there to make the summary
// move, not to benchmark.
const maxLoad = 1000

// demoFlags are the `michi demo` flags.
type demoFlags struct {
	meshAddr  string
	adminAddr string
	configDir string
	noSummary bool
	duration  time.Duration
	load      float64
}

func (f *demoFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.meshAddr, "mesh-addr", "127.0.0.1:15001", "the proxy's mesh listener, also an HTTP proxy (curl -x)")
	fs.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:15000", "the proxy's admin listener")
	fs.StringVar(&f.configDir, "config-dir", "", "write the demo's configuration here and run on it, to edit it live (default: a temporary directory, removed on exit)")
	fs.BoolVar(&f.noSummary, "no-summary", false, "no live summary: print what to try, then the proxy's log (for scripts)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (default: run until Ctrl-C)")
	fs.Float64Var(&f.load, "load", 2, "background requests per second to productpage, so the summary moves on its own; 0 turns it off")
}

func demoCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("michi demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f demoFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: michi demo [flags]")
		fmt.Fprintln(stderr, "\nStarts Bookinfo-like workloads (productpage, reviews v1/v2/v3, ratings) on loopback")
		fmt.Fprintln(stderr, "and michi in front of them, with a canary, header routing, a timeout, fault injection")
		fmt.Fprintln(stderr, "and a circuit breaker configured; prints what to try and a live summary.")
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
		fmt.Fprintf(stderr, "michi demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	// A sane bound, and one that NaN and Inf fail too.
	if !(f.load >= 0 && f.load <= maxLoad) {
		fmt.Fprintf(stderr, "michi demo: --load %v: want 0 to %d requests per second\n", f.load, maxLoad)
		return exitUsage
	}
	if f.duration < 0 {
		fmt.Fprintln(stderr, "michi demo: --duration must not be negative")
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl-C the demo shuts down gracefully; restoring the
	// default handling lets a second one end it at once.
	context.AfterFunc(ctx, stop)
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	if err := runDemo(ctx, &f, stdout, stderr, nil); err != nil {
		fmt.Fprintln(stderr, "michi demo:", err)
		return exitFail
	}
	return exitOK
}

// demoLive is what runDemo reports once the proxy serves the demo.
type demoLive struct {
	mesh, admin string // the bound listener addresses
	configDir   string
	workloads   []*demo.Workload
}

// runDemo runs the workloads and the proxy until ctx is done, then stops
// both. ready, when set, is called once the proxy serves.
func runDemo(ctx context.Context, f *demoFlags, stdout, stderr io.Writer, ready func(demoLive)) error {
	// Fail before starting anything when the default ports are taken,
	// most likely by another michi.
	if err := checkFree("--mesh-addr", f.meshAddr); err != nil {
		return err
	}
	if err := checkFree("--admin-addr", f.adminAddr); err != nil {
		return err
	}

	workloads, err := demo.StartWorkloads()
	if err != nil {
		return err
	}
	defer workloads.Close()

	files, err := demo.Config(workloads.Ports())
	if err != nil {
		return err
	}
	dir := f.configDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "michi-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	kept, err := demo.Write(dir, files)
	if err != nil {
		return fmt.Errorf("--config-dir: %w", err)
	}

	// On a terminal the summary owns the screen, and the proxy's log
	// shows in its last lines instead of scrolling it away.
	terminal := !f.noSummary && isTerminal(stdout)
	var logTail *demo.LogTail
	proxyLog := stderr
	if terminal {
		logTail = demo.NewLogTail(3)
		proxyLog = logTail
	}

	rf := &runFlags{
		paths:           pathList{dir},
		meshAddr:        f.meshAddr,
		adminAddr:       f.adminAddr,
		namespace:       demo.Namespace,
		labels:          labelMap{},
		outboundPolicy:  string(routing.AllowAny),
		accessLog:       "off",
		accessLogFormat: "text",
		// Nothing in a demo is worth waiting for on Ctrl-C.
		drainTimeout:  time.Second,
		clusterDomain: config.DefaultClusterDomain,
		logLevel:      "info",
	}
	type addrs struct{ mesh, admin string }
	up := make(chan addrs, 1)
	runErr := make(chan error, 1)
	go func() {
		runErr <- run(ctx, rf, proxyLog, func(mesh, admin string) { up <- addrs{mesh, admin} })
	}()
	var a addrs
	select {
	case a = <-up:
	case err := <-runErr:
		// The configuration did not load, or ctx ended first. The log
		// says why; it went to the tail, which no summary will show.
		for _, l := range logTail.Lines() {
			fmt.Fprintln(stderr, l)
		}
		return err
	}
	workloads.SetMesh(a.mesh)

	live := demoLive{mesh: a.mesh, admin: a.admin, configDir: dir, workloads: workloads.List()}
	notes := keptNotes(dir, kept)
	if !terminal {
		printIntro(stdout, live, notes)
	}
	if ready != nil {
		ready(live)
	}

	var wg sync.WaitGroup
	if f.load > 0 {
		traffic := &demo.Traffic{Mesh: a.mesh, Rate: f.load}
		wg.Go(func() { traffic.Run(ctx) })
	}
	if !f.noSummary {
		names := map[string]string{}
		for _, wl := range live.workloads {
			names[wl.Addr] = wl.Name
		}
		summary := &demo.Summary{
			Scraper:  &demo.Scraper{Admin: a.admin},
			Screen:   &demo.Screen{Mesh: a.mesh, Admin: a.admin, ConfigDir: dir, Names: names, Notes: notes, Log: logTail},
			Out:      stdout,
			Terminal: terminal,
		}
		wg.Go(func() { summary.Run(ctx) })
	}
	err = <-runErr
	wg.Wait()
	if terminal {
		fmt.Fprintln(stdout, "michi demo stopped.")
	}
	return err
}

// keptNotes tells the user which of their edits a restart kept.
func keptNotes(dir string, kept []string) []string {
	if len(kept) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("kept your edited %s in %s (delete them to start from the demo's)", strings.Join(kept, ", "), dir)}
}

// printIntro says what runs where and what to try.
func printIntro(w io.Writer, live demoLive, notes []string) {
	proxy := "http://" + live.mesh
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("michi demo: Bookinfo on loopback, routed by michi from Istio configuration.")
	p("")
	p("  proxy      %s   an HTTP proxy, and the workloads' sidecar", live.mesh)
	p("  admin      http://%s   /config_dump /clusters /stats/prometheus", live.admin)
	var wls []string
	for _, wl := range live.workloads {
		wls = append(wls, fmt.Sprintf("%s %s", wl.Name, wl.Addr))
	}
	p("  workloads  %s", strings.Join(wls, ", "))
	p("  config     %s", live.configDir)
	for _, n := range notes {
		p("             %s", n)
	}
	p("")
	p("Try, from another shell:")
	try := []struct{ cmd, what string }{
		{"curl -x %[1]s http://reviews:%[2]d/", "canary (reviews.yaml): 9 in 10 answers from reviews v1, 1 in 10 from v2"},
		{"curl -x %[1]s -H 'end-user: jason' http://reviews:%[2]d/", "header routing: jason always gets reviews v2"},
		{"curl -x %[1]s -H 'x-test-user: true' http://reviews:%[2]d/", "header routing: test users get reviews v3"},
		{"curl -x %[1]s http://productpage:%[2]d/", "the chain: productpage calls reviews, reviews v2 and v3 call ratings, every hop through michi"},
		{"curl -x %[1]s -H 'end-user: tester' http://productpage:%[2]d/", "fault and timeout: tester's calls to reviews are delayed 5s, so productpage's 3s timeout answers 504 (UT)"},
		{"curl -x %[1]s http://ratings:%[2]d/", "fault injection: 1 in 10 aborted with 400 (FI); and one ratings instance is broken: after 5 errors in a row, outlier detection ejects it"},
		{"seq 20 | xargs -P 20 -I{} curl -s -o /dev/null -w '%%{http_code} ' -x %[1]s http://ratings:%[2]d/", "circuit breaker: more than two requests at once overflow with 503 (UO)"},
	}
	for _, t := range try {
		p("  "+t.cmd, proxy, demo.MeshPort)
		p("      %s", t.what)
	}
	p("")
	p("Any HTTP client works through michi: export http_proxy=%[1]s HTTP_PROXY=%[1]s", proxy)
	p("Shift the canary: edit the weights in %s and save; michi reloads within a second.", live.configDir+string(os.PathSeparator)+demo.ReviewsFile)
	p("Ctrl-C stops the demo.")
	p("")
}

// checkFree reports a listener address that is already taken, with the
// flags that move the demo elsewhere.
func checkFree(flagName, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln.Close()
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s is already in use (is another michi running?); pick other ports, e.g. michi demo --mesh-addr 127.0.0.1:16001 --admin-addr 127.0.0.1:16000", flagName, addr)
	}
	return fmt.Errorf("%s: %w", flagName, err)
}

// isTerminal reports whether w is a character device, where the summary
// may redraw in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
