package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc: 100 on
// every Linux architecture the benchmark runs on (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

// procStat is the part of /proc/PID/stat the benchmark reads.
type procStat struct {
	comm  string // command name, at most 15 bytes
	ppid  int
	pgrp  int
	ticks int64 // utime + stime, all threads of the process
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may contain spaces and parentheses; the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	j := bytes.IndexByte(b, '(')
	if i < 0 || j < 0 || j > i {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return procStat{comm: string(b[j+1 : i]), ppid: ppid, pgrp: pgrp, ticks: utime + stime}, nil
}

// allProcs reads the stat of every process on the machine.
func allProcs() map[int]procStat {
	out := map[int]procStat{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, err := readProcStat(p); err == nil { // else it exited meanwhile
			out[p] = st
		}
	}
	return out
}

// processTree returns pid and all its descendants: nginx serves from a
// worker that its master forked, and the worker's CPU is what counts.
func processTree(pid int) []int {
	children := map[int][]int{}
	for p, st := range allProcs() {
		children[st.ppid] = append(children[st.ppid], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// treeTicks is the CPU time used so far by pid and its descendants.
func treeTicks(pid int) int64 {
	var sum int64
	for _, p := range processTree(pid) {
		if st, err := readProcStat(p); err == nil {
			sum += st.ticks
		}
	}
	return sum
}

// treeRSSKiB is the resident memory of pid and its descendants (VmRSS from
// /proc/PID/status). Summing over-counts pages that nginx's master and
// worker share, which only makes nginx look bigger, never michi.
func treeRSSKiB(pid int) int64 {
	var sum int64
	for _, p := range processTree(pid) {
		sum += statusKiB(p, "VmRSS:")
	}
	return sum
}

func statusKiB(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// loadavg is /proc/loadavg's three averages, recorded before each run.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuTimes is the machine-wide CPU time from /proc/stat, in ticks.
type cpuTimes struct {
	busy  int64 // user + nice + system: time spent running processes
	steal int64 // time the hypervisor gave to another guest
}

// readCPUTimes leaves irq and softirq time out of busy: loopback TCP is
// processed there, and no process is charged for it, so counting it would
// make every run look polluted.
func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	return cpuTimes{busy: n(1) + n(2) + n(3), steal: n(8)}
}
