package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a long-running process the benchmark started: an upstream or a
// proxy under test. Its output goes to a log file in the log directory.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // the exit status, valid once done is closed
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the end of the process's log, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// stop ends the process and its children: SIGTERM to its process group,
// then SIGKILL if it has not gone within the grace period (michi drains
// in-flight requests on SIGTERM; nginx's master takes its worker down).
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// supervisor starts processes pinned to a core and stops them all when
// the benchmark ends. A benchmark killed with SIGKILL cannot stop them;
// its direct children then die of their parent-death signal, but not
// their own children (nginx's worker), so the supervisor also keeps a
// list of the process groups it started, and the next run ends whatever
// is left of them before it starts (killLeftovers).
type supervisor struct {
	logDir string
	// groupsPath lists "pgid command" for each running process group.
	groupsPath string

	mu    sync.Mutex
	procs []*proc
}

// start runs bin pinned to core with taskset (which execs bin, so the pid
// is bin's own). Each process gets its own process group, so stop can
// reach its children, and SIGKILL as its parent-death signal, so that not
// even a crash of the benchmark leaves a proxy behind on a port.
func (s *supervisor) start(name string, core int, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(s.logDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))

	cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(core), bin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.writeGroups()
	s.mu.Unlock()
	return p, nil
}

// writeGroups records the running process groups; s.mu must be held.
func (s *supervisor) writeGroups() {
	var b strings.Builder
	for _, p := range s.procs {
		fmt.Fprintf(&b, "%d %s\n", p.pid(), commName(p.cmd.Args[3]))
	}
	_ = os.WriteFile(s.groupsPath, []byte(b.String()), 0o644)
}

// commName is the name /proc/PID/stat shows for a binary: its base name
// cut to 15 bytes.
func commName(bin string) string {
	n := filepath.Base(bin)
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// killLeftovers ends the process groups a previous run recorded and did
// not stop. A group is only killed if a process in it still runs the
// recorded command, so a reused process id is left alone.
func (s *supervisor) killLeftovers() {
	b, err := os.ReadFile(s.groupsPath)
	if err != nil {
		return
	}
	procs := allProcs()
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var pgid int
		var comm string
		if _, err := fmt.Sscan(line, &pgid, &comm); err != nil || pgid <= 1 {
			continue
		}
		for _, st := range procs {
			if st.pgrp == pgid && st.comm == comm {
				fmt.Fprintf(os.Stderr, "bench: killing process group %d (%s) left by an earlier run\n", pgid, comm)
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				break
			}
		}
	}
	_ = os.Remove(s.groupsPath)
}

// stop stops p and forgets it.
func (s *supervisor) stop(p *proc) {
	p.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			break
		}
	}
	s.writeGroups()
}

// stopAll stops every process still running, newest first.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	procs := s.procs
	s.procs = nil
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	s.writeGroups()
}

// running returns the processes still alive.
func (s *supervisor) running() []*proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		if !p.exited() {
			out = append(out, p)
		}
	}
	return out
}

// errExited is returned by the wait helpers when the process they wait
// for dies first.
var errExited = errors.New("process exited")

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	return poll(ctx, p, timeout, "port "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// waitHTTP200 waits until url answers 200.
func waitHTTP200(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	return poll(ctx, p, timeout, url, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// pollInterval is short because the time to readiness is itself a result.
const pollInterval = 10 * time.Millisecond

func poll(ctx context.Context, p *proc, timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if ok() {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s %w while waiting for %s (%v); log %s:\n%s", p.name, errExited, what, p.err, p.logPath, p.logTail())
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %v waiting for %s", timeout, what)
			if p != nil {
				msg += fmt.Sprintf("; %s log %s:\n%s", p.name, p.logPath, p.logTail())
			}
			return errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// portFree fails when something already listens on addr: a leftover
// proxy from another run would silently take the measurements.
func portFree(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("%s is already in use; stop whatever listens there (ss -ltnp 'sport = :%s')", addr, addr[strings.LastIndexByte(addr, ':')+1:])
}
