package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// drawChart renders two panels with gnuplot: latency percentiles at 1000
// qps per target, and proxy CPU per request at three loads, each bar the
// median with the min–max spread as an error bar. It draws nothing, and
// returns false, when neither figure was measured.
func drawChart(res *Results, pngPath, workDir string) (bool, error) {
	if res.figure("latency", "direct", vRequests).n == 0 && res.figure("latency", "michi", vRequests).n == 0 {
		return false, nil
	}
	latency := filepath.Join(workDir, "chart-latency.dat")
	cpu := filepath.Join(workDir, "chart-cpu.dat")

	var lat strings.Builder
	for _, p := range percentiles {
		fmt.Fprintf(&lat, "p%s", p)
		for _, t := range allTargets {
			lat.WriteString(triple(res.figure("latency", t, pctKey(p))))
		}
		lat.WriteByte('\n')
	}
	var c strings.Builder
	for _, l := range []struct{ label, section string }{
		{"1000 qps", "latency"}, {"5000 qps", "qps5000"}, {"max (wrk, 64 conns)", "wrk64"},
	} {
		fmt.Fprintf(&c, "%q", l.label)
		for _, t := range proxies {
			c.WriteString(triple(res.figure(l.section, t, vCPUPerReq)))
		}
		c.WriteByte('\n')
	}
	if err := os.WriteFile(latency, []byte(lat.String()), 0o644); err != nil {
		return false, err
	}
	if err := os.WriteFile(cpu, []byte(c.String()), 0o644); err != nil {
		return false, err
	}

	script := fmt.Sprintf(`set terminal pngcairo size 1400,560 font "sans,11"
set output %[1]q
set datafile missing "NaN"
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key top left
set yrange [0:*]
set multiplot layout 1,2 title "michi vs nginx vs haproxy, %[4]s"
set title "Latency at 1000 qps, 16 connections (fortio, median and min–max)"
set ylabel "ms (log scale)"
set logscale y
set yrange [0.05:*]
plot %[2]q using 2:3:4:xtic(1) title "direct" lc rgb "#999999", \
     '' using 5:6:7 title "michi" lc rgb "#1f77b4", \
     '' using 8:9:10 title "nginx" lc rgb "#2ca02c", \
     '' using 11:12:13 title "haproxy" lc rgb "#ff7f0e"
unset logscale y
set yrange [0:*]
set key top right
set title "Proxy CPU per request (utime+stime, median and min–max)"
set ylabel "µs per request"
plot %[3]q using 2:3:4:xtic(1) title "michi" lc rgb "#1f77b4", \
     '' using 5:6:7 title "nginx" lc rgb "#2ca02c", \
     '' using 8:9:10 title "haproxy" lc rgb "#ff7f0e"
unset multiplot
`, pngPath, latency, cpu, res.Machine.Date.Format("2006-01-02"))
	gp := exec.Command("gnuplot")
	gp.Stdin = strings.NewReader(script)
	if out, err := gp.CombinedOutput(); err != nil {
		return false, fmt.Errorf("gnuplot: %v\n%s", err, out)
	}
	return true, nil
}

// triple is " median min max", or NaNs for a figure not measured.
func triple(s stat) string {
	if s.n == 0 {
		return fmt.Sprintf(" %v %v %v", math.NaN(), math.NaN(), math.NaN())
	}
	return fmt.Sprintf(" %g %g %g", s.median, s.min, s.max)
}
