package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// runAll starts the upstreams and proxies and runs the chosen sections.
func (b *bench) runAll(ctx context.Context) error {
	if err := b.startUpstreams(ctx); err != nil {
		return err
	}
	if err := b.startProxies(ctx); err != nil {
		return err
	}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"latency", b.runLatency},
		{"cpu", b.runCPU},
		{"throughput", b.runThroughput},
		{"protocols", b.runProtocols},
		{"features", b.runFeatures},
		{"scale", b.runScale},
		{"profile", b.runProfile},
	}
	for _, s := range steps {
		if !b.section(s.name) {
			continue
		}
		fmt.Printf("== %s\n", s.name)
		if err := s.run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startUpstreams starts the 1 KiB HTTP/1.1+h2c server (on two ports, the
// two subsets of the features section) and fortio's gRPC ping server,
// both on the load generator's core.
func (b *bench) startUpstreams(ctx context.Context) error {
	for _, a := range []string{upstreamAddr, upstreamAddrV2, grpcAddr, nginxAddr, haproxyAddr} {
		if err := portFree(a); err != nil {
			return err
		}
	}
	up, err := b.sup.start("upstream", loadCore, nil, b.upstreamBin, "-listen", upstreamAddr+","+upstreamAddrV2)
	if err != nil {
		return err
	}
	// fortio's ping server is the one `fortio load -grpc -ping` speaks to,
	// the pair Istio's own gRPC benchmarks use; its HTTP servers are off.
	grpc, err := b.sup.start("grpc-upstream", loadCore, nil, b.fortioBin, "server",
		"-http-port", "disabled", "-redirect-port", "disabled", "-tcp-port", "disabled", "-udp-port", "disabled",
		"-grpc-port", grpcAddr, "-loglevel", "Warning")
	if err != nil {
		return err
	}
	for p, a := range map[*proc]string{up: upstreamAddr, grpc: grpcAddr} {
		if err := waitTCP(ctx, p, a, 10*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// startProxies starts the chosen proxies on core 0 and records each one's
// idle memory once it is ready.
func (b *bench) startProxies(ctx context.Context) error {
	b.proxies = map[string]*proc{}
	if b.has("nginx") {
		dir := filepath.Join(b.out, "nginx")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConfig(dir)), 0o644); err != nil {
			return err
		}
		p, err := b.sup.start("nginx", 0, nil, "nginx", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log"))
		if err != nil {
			return err
		}
		if err := waitTCP(ctx, p, nginxAddr, 10*time.Second); err != nil {
			return err
		}
		b.proxies["nginx"] = p
	}
	if b.has("haproxy") {
		conf := filepath.Join(b.out, "haproxy.cfg")
		if err := os.WriteFile(conf, []byte(haproxyConfig()), 0o644); err != nil {
			return err
		}
		p, err := b.sup.start("haproxy", 0, nil, "haproxy", "-db", "-f", conf)
		if err != nil {
			return err
		}
		if err := waitTCP(ctx, p, haproxyAddr, 10*time.Second); err != nil {
			return err
		}
		b.proxies["haproxy"] = p
	}
	if b.has("michi") {
		inst, _, err := b.startMichi(ctx, "michi", 0, plainConfig())
		if err != nil {
			return err
		}
		b.michi = inst
		b.proxies["michi"] = inst.p
	}
	// Idle memory after a moment's settling, before any request.
	time.Sleep(2 * time.Second)
	for _, t := range b.targets {
		if p := b.proxies[t]; p != nil {
			b.res.Runs = append(b.res.Runs, Run{Section: "idle", Case: t, Rep: 1, Loadavg: loadavg(),
				Values: map[string]float64{vRSSIdle: mb(treeRSSKiB(p.pid()))}})
		}
	}
	return nil
}

// addr is where a target listens for plain HTTP/1.1.
func (b *bench) addr(target string) string {
	switch target {
	case "michi":
		return b.michi.mesh
	case "nginx":
		return nginxAddr
	case "haproxy":
		return haproxyAddr
	}
	return upstreamAddr
}

// fixedRate is a fortio case at qps over 16 connections against a target.
func (b *bench) fixedRate(name string, proxy *proc, addr, path string, qps int, headers ...string) benchCase {
	return benchCase{name: name, proxy: proxy, load: func(ctx context.Context, d time.Duration) (loadResult, error) {
		return b.load.runFortio(ctx, name, fortioLoad{
			target: "http://" + addr + path, headers: append([]string{"Host: " + hostHTTP}, headers...),
			qps: qps, conns: 16,
		}, d)
	}}
}

// maxRate is a wrk case at conns connections against a target.
func (b *bench) maxRate(name string, proxy *proc, addr string, conns int, headers ...string) benchCase {
	return benchCase{name: name, proxy: proxy, load: func(ctx context.Context, d time.Duration) (loadResult, error) {
		return b.load.runWrk(ctx, name, "http://"+addr+"/", append([]string{"Host: " + hostHTTP}, headers...), conns, d)
	}}
}

// runLatency is Istio's latency method: HTTP/1.1, 1 KiB responses, 1000
// qps over 16 connections, uniform pacing, no catch-up. The proxy CPU per
// request at 1000 qps comes from the same runs.
func (b *bench) runLatency(ctx context.Context) error {
	var cases []benchCase
	for _, t := range b.targets {
		cases = append(cases, b.fixedRate(t, b.proxies[t], b.addr(t), "/", 1000))
	}
	return b.interleave(ctx, "latency", b.d.latency, cases)
}

// runCPU measures proxy CPU per request at 5000 qps.
func (b *bench) runCPU(ctx context.Context) error {
	var cases []benchCase
	for _, t := range b.targets {
		cases = append(cases, b.fixedRate(t, b.proxies[t], b.addr(t), "/", 5000))
	}
	return b.interleave(ctx, "qps5000", b.d.fixed, cases)
}

// runThroughput finds the maximum rate with wrk at 16 and 64 connections.
func (b *bench) runThroughput(ctx context.Context) error {
	for _, conns := range []int{16, 64} {
		var cases []benchCase
		for _, t := range b.targets {
			cases = append(cases, b.maxRate(t, b.proxies[t], b.addr(t), conns))
		}
		if err := b.interleave(ctx, "wrk"+strconv.Itoa(conns), b.d.max, cases); err != nil {
			return err
		}
	}
	return nil
}

// runProtocols compares michi with direct over h2c (h2load at maximum
// rate, fortio at 1000 qps) and gRPC (fortio ping at 1000 qps).
func (b *bench) runProtocols(ctx context.Context) error {
	type target struct {
		name       string
		proxy      *proc
		http, grpc string
	}
	targets := []target{{name: "direct", http: upstreamAddr, grpc: grpcAddr}}
	if b.michi != nil {
		targets = append(targets, target{name: "michi", proxy: b.michi.p, http: b.michi.mesh, grpc: b.michi.mesh})
	}
	var h2max, h2fixed, grpcFixed []benchCase
	for _, t := range targets {
		h2max = append(h2max, benchCase{name: t.name, proxy: t.proxy, load: func(ctx context.Context, d time.Duration) (loadResult, error) {
			return b.load.runH2load(ctx, t.name+"-h2load", "http://"+t.http+"/", hostH2, 16, d)
		}})
		h2fixed = append(h2fixed, benchCase{name: t.name, proxy: t.proxy, load: func(ctx context.Context, d time.Duration) (loadResult, error) {
			return b.load.runFortio(ctx, t.name+"-h2c", fortioLoad{target: "http://" + t.http + "/",
				headers: []string{"Host: " + hostH2}, qps: 1000, conns: 16, h2: true}, d)
		}})
		grpcFixed = append(grpcFixed, benchCase{name: t.name, proxy: t.proxy, load: func(ctx context.Context, d time.Duration) (loadResult, error) {
			// fortio turns a "host" header into the gRPC :authority.
			return b.load.runFortio(ctx, t.name+"-grpc", fortioLoad{target: t.grpc,
				headers: []string{"host: " + hostGRPC}, qps: 1000, conns: 16, grpc: true}, d)
		}})
	}
	if err := b.interleave(ctx, "h2load", b.d.max, h2max); err != nil {
		return err
	}
	if err := b.interleave(ctx, "h2c1000", b.d.fixed, h2fixed); err != nil {
		return err
	}
	return b.interleave(ctx, "grpc1000", b.d.fixed, grpcFixed)
}

// runFeatures compares plain michi with michi running the Istio features
// of featuresConfig, at 1000 qps and at maximum rate. Both get the
// header the features' first rule matches.
func (b *bench) runFeatures(ctx context.Context) error {
	if b.michi == nil {
		b.note("features: skipped, michi is not a target")
		return nil
	}
	istio, _, err := b.startMichi(ctx, "michi-istio", 1, featuresConfig())
	if err != nil {
		return err
	}
	defer b.sup.stop(istio.p)
	fixed := []benchCase{
		b.fixedRate("michi", b.michi.p, b.michi.mesh, "/", 1000, featureHeader),
		b.fixedRate("michi-istio", istio.p, istio.mesh, "/", 1000, featureHeader),
	}
	if err := b.interleave(ctx, "features1000", b.d.fixed, fixed); err != nil {
		return err
	}
	max := []benchCase{
		b.maxRate("michi", b.michi.p, b.michi.mesh, 64, featureHeader),
		b.maxRate("michi-istio", istio.p, istio.mesh, 64, featureHeader),
	}
	return b.interleave(ctx, "featuresmax", b.d.max, max)
}

// scaleConfig is one configuration of the route-table scale section.
type scaleConfig struct {
	name  string
	slug  string // names its instance, log and config directory
	build func(generation string) *manifest
	probe string // a path whose route sets x-bench-generation
}

// scaleConfigs are 1, 1,000 and 10,000 services, and one service with a
// 1,000-rule VirtualService.
var scaleConfigs = []scaleConfig{
	{"1 service", "services-1", func(g string) *manifest { return servicesConfig(1, g) }, "/"},
	{"1,000 services", "services-1000", func(g string) *manifest { return servicesConfig(1000, g) }, "/"},
	{"10,000 services", "services-10000", func(g string) *manifest { return servicesConfig(10000, g) }, "/"},
	{"1,000 rules", "rules-1000", func(g string) *manifest { return rulesConfig(1000, g) }, rulePath(0)},
}

// runScale measures what the size of the configuration costs: start-up
// time and idle memory, per-request cost at 1000 qps, reload time, and
// latency and errors while the largest config is replaced every second.
func (b *bench) runScale(ctx context.Context) error {
	if b.michi == nil {
		b.note("scale: skipped, michi is not a target")
		return nil
	}
	// Start-up: each config started and stopped, interleaved.
	for rep := 1; rep <= b.d.reps; rep++ {
		for i, sc := range scaleConfigs {
			la := loadavg()
			inst, ready, err := b.startMichi(ctx, sc.slug, 2+i, sc.build("g0"))
			if err != nil {
				return err
			}
			time.Sleep(2 * time.Second) // let start-up garbage be collected
			idle := mb(treeRSSKiB(inst.p.pid()))
			b.sup.stop(inst.p)
			b.res.Runs = append(b.res.Runs, Run{Section: "startup", Case: sc.name, Rep: rep, Loadavg: la,
				Values: map[string]float64{vReadyMS: float64(ready.Milliseconds()), vRSSIdle: idle}})
			fmt.Printf("%-10s %-22s rep %d/%d: ready in %v, idle %.1f MB\n", "startup", sc.name, rep, b.d.reps, ready.Round(time.Millisecond), idle)
		}
	}

	// Per-request cost, with all four instances up and loaded in turn.
	insts := make([]*michiInstance, len(scaleConfigs))
	for i, sc := range scaleConfigs {
		inst, _, err := b.startMichi(ctx, sc.slug, 2+i, sc.build("g0"))
		if err != nil {
			return err
		}
		defer b.sup.stop(inst.p)
		insts[i] = inst
	}
	rules := insts[3]
	cases := []benchCase{
		b.fixedRate("1 service", insts[0].p, insts[0].mesh, "/", 1000),
		b.fixedRate("1,000 services", insts[1].p, insts[1].mesh, "/", 1000),
		b.fixedRate("10,000 services", insts[2].p, insts[2].mesh, "/", 1000),
		b.fixedRate("rule 1 of 1,000", rules.p, rules.mesh, rulePath(0), 1000),
		b.fixedRate("rule 1,000 of 1,000", rules.p, rules.mesh, rulePath(999), 1000),
	}
	// A random rule, drawn afresh for each repetition.
	random := benchCase{name: "random rule of 1,000", proxy: rules.p, load: func(ctx context.Context, d time.Duration) (loadResult, error) {
		n := rand.IntN(1000)
		lr, err := b.fixedRate("random rule of 1,000", rules.p, rules.mesh, rulePath(n), 1000).load(ctx, d)
		lr.extra = map[string]float64{vRule: float64(n + 1)}
		return lr, err
	}}
	cases = append(cases, random)
	if err := b.interleave(ctx, "scale1000", b.d.fixed, cases); err != nil {
		return err
	}

	// Reload: rewrite each config, time until the new one serves.
	for rep := 1; rep <= b.d.reps; rep++ {
		for i, sc := range scaleConfigs {
			gen := "g" + strconv.Itoa(rep)
			la := loadavg()
			took, err := b.reload(ctx, insts[i], sc.build(gen), sc.probe, gen)
			if err != nil {
				return fmt.Errorf("reload %s: %w", sc.name, err)
			}
			b.res.Runs = append(b.res.Runs, Run{Section: "reload", Case: sc.name, Rep: rep, Loadavg: la,
				Values: map[string]float64{vReloadMS: float64(took.Milliseconds())}})
			fmt.Printf("%-10s %-22s rep %d/%d: live in %v\n", "reload", sc.name, rep, b.d.reps, took.Round(time.Millisecond))
		}
	}

	// Churn: 1000 qps against the 10,000-service instance while its
	// config file is replaced every second.
	big := insts[2]
	for rep := 1; rep <= b.d.reps; rep++ {
		var written atomic.Int64
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					done <- nil
					return
				case <-t.C:
					gen := fmt.Sprintf("churn-%d-%d", rep, written.Load()+1)
					if err := scaleConfigs[2].build(gen).write(big.configPath); err != nil {
						done <- err
						return
					}
					written.Add(1)
				}
			}
		}()
		c := b.fixedRate("10,000 services", big.p, big.mesh, "/", 1000)
		err := b.measure(ctx, "churn", c, rep, b.d.churn)
		close(stop)
		if werr := <-done; err == nil {
			err = werr
		}
		if err != nil {
			return err
		}
		b.res.Runs[len(b.res.Runs)-1].Values[vReloads] = float64(written.Load())
		// The last config written must be the one serving.
		want := fmt.Sprintf("churn-%d-%d", rep, written.Load())
		if err := poll(ctx, big.p, time.Minute, "the last churn config", func() bool {
			g, err := big.generation("/")
			return err == nil && g == want
		}); err != nil {
			return err
		}
	}
	return b.res.save(b.resultsPath)
}

// runProfile takes CPU profiles of plain michi under 1000 qps and under
// maximum load from its admin /debug/pprof endpoint, and keeps
// `go tool pprof -top` of each for the report.
func (b *bench) runProfile(ctx context.Context) error {
	if b.michi == nil {
		return nil
	}
	resp, err := probeClient.Get("http://" + b.michi.admin + "/debug/pprof/")
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		b.note("profile: skipped, michi's admin address has no /debug/pprof/")
		return nil
	}
	loads := []benchCase{
		b.fixedRate("1000 qps", b.michi.p, b.michi.mesh, "/", 1000),
		b.maxRate("max rate, 64 connections", b.michi.p, b.michi.mesh, 64),
	}
	for i, l := range loads {
		path := filepath.Join(b.out, fmt.Sprintf("michi-%d.pprof", i))
		loadDone := make(chan error, 1)
		go func() {
			_, err := l.load(ctx, b.d.profile+4*time.Second)
			loadDone <- err
		}()
		time.Sleep(2 * time.Second) // connections established, steady state
		perr := fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.michi.admin, int(b.d.profile.Seconds())), path)
		if err := <-loadDone; err != nil {
			return fmt.Errorf("profile load %s: %w", l.name, err)
		}
		if perr != nil {
			return fmt.Errorf("profile %s: %w", l.name, perr)
		}
		top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", b.michiBin, path).Output()
		if err != nil {
			return fmt.Errorf("go tool pprof %s: %w", path, err)
		}
		b.res.Profiles[l.name] = string(top)
		fmt.Printf("profile   %s: %s\n", l.name, path)
	}
	return b.res.save(b.resultsPath)
}

func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (b *bench) note(s string) {
	b.res.Notes = append(b.res.Notes, s)
	fmt.Println("note:", s)
}
