// Command bench measures michi side by side with nginx, haproxy and a
// direct connection to the upstream, on this machine, and writes
// BENCHMARKS.md with a chart. bench/run.sh installs the tools it needs and
// builds the binaries, then runs it; see BENCHMARKS.md for the method.
//
// Layout (two cores): the proxy under test runs alone on core 0; the load
// generator and the upstream share core 1. Each figure is measured
// several times, interleaved across the cases (A B C A B C ...), and
// reported as the median and the spread.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// sections in the order they run.
var allSections = []string{"latency", "cpu", "throughput", "protocols", "features", "scale", "profile"}

var allTargets = []string{"direct", "michi", "nginx", "haproxy"}

// durations of one mode.
type durations struct {
	reps    int
	latency time.Duration // Istio's method, section 1
	fixed   time.Duration // other fixed-rate runs
	max     time.Duration // closed-loop maximum-rate runs
	churn   time.Duration // load while the config is replaced every second
	warm    time.Duration // warm-up per case, discarded
	profile time.Duration // pprof CPU profile length
}

var (
	fullRun  = durations{reps: 3, latency: 30 * time.Second, fixed: 15 * time.Second, max: 10 * time.Second, churn: 30 * time.Second, warm: 3 * time.Second, profile: 20 * time.Second}
	quickRun = durations{reps: 1, latency: 5 * time.Second, fixed: 4 * time.Second, max: 3 * time.Second, churn: 6 * time.Second, warm: time.Second, profile: 5 * time.Second}
)

func main() {
	os.Exit(run())
}

func run() int {
	repo := flag.String("repo", ".", "repository root")
	quick := flag.Bool("quick", false, "short runs, one repetition, report to bench/out (for iterating)")
	targets := flag.String("targets", strings.Join(allTargets, ","), "targets to compare (michi can be left out until `michi run` exists)")
	sections := flag.String("sections", strings.Join(allSections, ","), "sections to run")
	reportOnly := flag.Bool("report-only", false, "re-render the report from saved results without measuring")
	remeasure := flag.Bool("remeasure", false, "measure only -sections again (full length, all targets) and replace them in the committed results, e.g. after a run that shared the machine")
	fortio := flag.String("fortio", "fortio", "fortio binary (v1.66.5)")
	configsOnly := flag.Bool("configs-only", false, "write every generated proxy configuration under bench/out/configs and exit (check them with michi validate)")
	flag.Parse()

	b := &bench{
		repo:     mustAbs(*repo),
		targets:  strings.Split(*targets, ","),
		sections: strings.Split(*sections, ","),
		d:        fullRun,
	}
	if *quick {
		b.d = quickRun
	}
	b.out = filepath.Join(b.repo, "bench", "out")
	b.michiBin = filepath.Join(b.out, "michi")
	b.upstreamBin = filepath.Join(b.out, "upstream")
	for _, t := range b.targets {
		if !slices.Contains(allTargets, t) {
			return fail("unknown target %q (have %s)", t, strings.Join(allTargets, ", "))
		}
	}
	for _, s := range b.sections {
		if !slices.Contains(allSections, s) {
			return fail("unknown section %q (have %s)", s, strings.Join(allSections, ", "))
		}
	}

	// Only a complete full run replaces the committed report; anything
	// less is written under bench/out so it cannot be mistaken for it.
	complete := !*quick && len(b.targets) == len(allTargets) && (len(b.sections) == len(allSections) || *remeasure)
	reportPath := filepath.Join(b.out, "BENCHMARKS.md")
	resultsDir := b.out
	if complete {
		reportPath = filepath.Join(b.repo, "BENCHMARKS.md")
		resultsDir = filepath.Join(b.repo, "bench", "results")
	}
	resultsPath := filepath.Join(resultsDir, "results.json")
	chartPath := filepath.Join(resultsDir, "chart.png")

	if *configsOnly {
		if err := b.writeConfigs(filepath.Join(b.out, "configs")); err != nil {
			return fail("%v", err)
		}
		return 0
	}
	if *reportOnly {
		res, err := loadResults(resultsPath)
		if err != nil {
			return fail("%v", err)
		}
		return b.writeReport(res, reportPath, chartPath)
	}

	if err := b.checkTools(*fortio); err != nil {
		return fail("%v", err)
	}
	for _, dir := range []string{b.out, resultsDir, filepath.Join(b.out, "logs")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail("%v", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	b.sup = &supervisor{logDir: filepath.Join(b.out, "logs"), groupsPath: filepath.Join(b.out, "running.pgids")}
	b.sup.killLeftovers()
	defer b.sup.stopAll()
	b.load = &loadTool{fortio: b.fortioBin, logDir: filepath.Join(b.out, "logs")}
	b.res = &Results{Quick: *quick, Machine: b.machine(), Profiles: map[string]string{}}
	var earlier *Results
	if *remeasure {
		if !complete {
			return fail("-remeasure replaces sections of a full run: it needs every target and no -quick")
		}
		r, err := loadResults(resultsPath)
		if err != nil {
			return fail("-remeasure: %v", err)
		}
		earlier = r
	}
	b.resultsPath = resultsPath

	start := time.Now()
	if err := b.runAll(ctx); err != nil {
		// Keep what was measured: a long run that fails late still
		// leaves its figures behind (a failed -remeasure leaves the
		// earlier results alone and saves its own beside them).
		if earlier != nil {
			resultsPath = filepath.Join(b.out, "results.json")
		}
		_ = b.res.save(resultsPath)
		return fail("%v", err)
	}
	if earlier != nil {
		b.res = earlier.replaced(b.res, b.sections)
	}
	if err := b.res.save(resultsPath); err != nil {
		return fail("%v", err)
	}
	b.sup.stopAll()
	fmt.Printf("measured in %v\n", time.Since(start).Round(time.Second))
	return b.writeReport(b.res, reportPath, chartPath)
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	return 1
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

// checkTools fails with the name of the first missing tool, and checks
// that the michi binary can run as a proxy when michi is a target.
func (b *bench) checkTools(fortio string) error {
	var missing []string
	for _, t := range []string{"taskset", "wrk", "h2load", "nginx", "haproxy", "gnuplot", "go"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	path, err := exec.LookPath(fortio)
	if err != nil {
		missing = append(missing, "fortio (go install fortio.org/fortio@v1.66.5)")
	}
	b.fortioBin = path
	for _, bin := range []string{b.upstreamBin, b.michiBin} {
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, bin+" (build it with bench/run.sh)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %s; bench/run.sh installs them", strings.Join(missing, ", "))
	}
	if b.has("michi") {
		out, _ := exec.Command(b.michiBin, "help").CombinedOutput()
		if !strings.Contains(string(out), "\n  run ") {
			return fmt.Errorf("%s has no run subcommand yet; leave michi out with -targets direct,nginx,haproxy", b.michiBin)
		}
	}
	return nil
}

func (b *bench) has(target string) bool { return slices.Contains(b.targets, target) }

func (b *bench) section(name string) bool { return slices.Contains(b.sections, name) }

// machine describes this machine and the tools' versions.
func (b *bench) machine() Machine {
	m := Machine{Date: time.Now().UTC(), Versions: map[string]string{}}
	m.NProc = numCPU()
	if cpuinfo, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(cpuinfo), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(k))
	}
	m.Go = firstLine(exec.Command("go", "version"))
	m.Versions["nginx"] = firstLine(exec.Command("nginx", "-v"))
	m.Versions["haproxy"] = firstLine(exec.Command("haproxy", "-v"))
	m.Versions["fortio"] = firstLine(exec.Command(b.fortioBin, "version"))
	m.Versions["wrk"] = firstLine(exec.Command("wrk", "-v"))
	m.Versions["h2load"] = firstLine(exec.Command("h2load", "--version"))
	// run.sh records the commit when it builds michi.
	m.Michi = "unknown"
	if c, err := os.ReadFile(filepath.Join(b.out, "michi.commit")); err == nil {
		m.Michi = strings.TrimSpace(string(c))
	}
	return m
}

// firstLine is the first line a command prints on stdout or stderr
// (nginx -v and wrk -v print to stderr, and wrk exits 1).
func firstLine(cmd *exec.Cmd) string {
	out, _ := cmd.CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// numCPU counts the online CPUs, as nproc --all would, regardless of the
// benchmark's own affinity.
func numCPU() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(r, "-")
		var a, z int
		fmt.Sscan(lo, &a)
		z = a
		if found {
			fmt.Sscan(hi, &z)
		}
		n += z - a + 1
	}
	return n
}
