package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildMichi compiles the binary once per test run.
func buildMichi(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "michi-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "michi")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// namedBackend answers with its name, after the delay in x-delay.
func namedBackend(t *testing.T, name string) (port string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.Header.Get("X-Delay")); err == nil {
			time.Sleep(d)
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	_, port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

func runConfig(v1, v2 string, w1, w2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: %s}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: %s}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: %d}
    - {destination: {host: reviews, subset: v2}, weight: %d}
`, v1, v2, w1, w2)
}

type michiProc struct {
	cmd    *exec.Cmd
	mesh   string
	admin  string
	stderr *syncBuffer
	done   chan error
}

// syncBuffer is a strings.Builder safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) WriteString(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(v)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startMichi(t *testing.T, bin string, args ...string) *michiProc {
	t.Helper()
	p := &michiProc{mesh: freeAddr(t), admin: freeAddr(t), stderr: &syncBuffer{}, done: make(chan error, 1)}
	args = append([]string{"run", "--mesh-addr", p.mesh, "--admin-addr", p.admin}, args...)
	p.cmd = exec.Command(bin, args...)
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.stderr.WriteString(sc.Text() + "\n")
		}
	}()
	go func() { p.done <- p.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

func (p *michiProc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("michi not ready; stderr:\n%s", p.stderr.String())
}

func (p *michiProc) get(t *testing.T, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.mesh+"/", nil)
	req.Host = "reviews:9080"
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("request through michi: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunReloadAndDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildMichi(t)
	v1, v2 := namedBackend(t, "v1"), namedBackend(t, "v2")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "reviews.yaml")
	if err := os.WriteFile(cfg, []byte(runConfig(v1, v2, 100, 0)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startMichi(t, bin, "-c", dir)
	p.waitReady(t)
	if code, body := p.get(t, nil); code != 200 || body != "v1" {
		t.Fatalf("before reload: %d %q, want 200 v1", code, body)
	}

	// A file change is live within 1s.
	changed := time.Now()
	if err := os.WriteFile(cfg, []byte(runConfig(v1, v2, 0, 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	for {
		if _, body := p.get(t, nil); body == "v2" {
			break
		}
		if time.Since(changed) > time.Second {
			t.Fatal("reload not live within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An invalid change keeps the last good snapshot.
	if err := os.WriteFile(cfg, []byte(strings.Replace(runConfig(v1, v2, 0, 100), "weight: 0", "weight: -5", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(p.stderr.String(), "weight") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.stderr.String(), "spec.http[0].route[0].weight") {
		t.Errorf("invalid reload not reported with its field path; stderr:\n%s", p.stderr.String())
	}
	if code, body := p.get(t, nil); code != 200 || body != "v2" {
		t.Errorf("after invalid reload: %d %q, want the last good config (v2)", code, body)
	}
	resp, err := http.Get("http://" + p.admin + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	dump, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(dump), "lastReloadError") || !strings.Contains(string(dump), "weight") {
		t.Errorf("/config_dump does not show the rejected reload")
	}

	// SIGTERM drains: the in-flight request finishes, michi exits 0.
	result := make(chan string, 1)
	go func() {
		_, body := p.get(t, map[string]string{"X-Delay": "500ms"})
		result <- body
	}()
	time.Sleep(100 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case body := <-result:
		if body != "v2" {
			t.Errorf("in-flight request during drain got %q, want v2", body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not finish during drain")
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("michi exited with %v after SIGTERM, want 0; stderr:\n%s", err, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("michi did not exit after SIGTERM")
	}
}

func TestRunInvalidConfigExits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildMichi(t)
	dir := t.TempDir()
	bad := strings.Replace(runConfig("1", "2", 1, 1), "weight: 1", "weigth: 1", 1)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o644)
	p := startMichi(t, bin, "-c", dir)
	select {
	case err := <-p.done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Errorf("exit %v, want 1", err)
		}
		if !strings.Contains(p.stderr.String(), `did you mean "weight"`) {
			t.Errorf("stderr lacks the finding:\n%s", p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("michi kept running on an invalid first config")
	}
}

func TestRunUsage(t *testing.T) {
	var out, errb strings.Builder
	if code := runMain([]string{"run"}, &out, &errb); code != exitUsage {
		t.Errorf("michi run without -c exited %d, want %d", code, exitUsage)
	}
	if code := runMain([]string{"run", "-c", "x", "--outbound-policy", "NOPE"}, &out, &errb); code != exitUsage {
		t.Errorf("bad --outbound-policy exited %d, want %d", code, exitUsage)
	}
}
