package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const serviceEntryYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  endpoints:
  - address: 127.0.0.1
    ports:
      http: 9081
`

// brokenYAML has two errors and one warning, in that line order, and
// defines the service it routes to so that the cross-resource analysis has
// nothing to add.
const brokenYAML = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: broken
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
      weight: -1
    - destination:
        host: reviews
    retries:
      attempts: 0
      retryOn: 5xx
    fault:
      abort:
        httpStatus: 503
---
` + serviceEntryYAML

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestValidateCommand(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"ok/services.yaml":  serviceEntryYAML,
		"bad/broken.yaml":   brokenYAML,
		"bad/nested/x.yaml": strings.ReplaceAll(serviceEntryYAML, "reviews", "ratings") + "---\n" + strings.ReplaceAll(serviceEntryYAML, "reviews", "details"),
	})
	ok := filepath.Join(dir, "ok")
	broken := filepath.Join(dir, "bad", "broken.yaml")

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout *regexp.Regexp // nil: must be empty
		wantStderr *regexp.Regexp
	}{
		{
			name:       "valid directory",
			args:       []string{"-c", ok},
			wantCode:   exitOK,
			wantStderr: regexp.MustCompile(`^0 errors, 0 warnings in 1 resource from 1 file\n$`),
		},
		{
			name:     "errors exit 1, one line per finding",
			args:     []string{"-c", broken},
			wantCode: exitFail,
			wantStdout: regexp.MustCompile(`^` + regexp.QuoteMeta(broken) + `:11: VirtualService default/broken: spec.http\[0\].route\[0\].weight: must not be negative, found -1\n` +
				regexp.QuoteMeta(broken) + `:15: VirtualService default/broken: spec.http\[0\].retries.attempts: attempts is 0, .*\n` +
				regexp.QuoteMeta(broken) + `:18: VirtualService default/broken: spec.http\[0\].fault.abort.percentage: warning: not set, .*\n$`),
			wantStderr: regexp.MustCompile(`^2 errors, 1 warning in 2 resources from 1 file\n$`),
		},
		{
			name:       "repeated -c and recursive walk",
			args:       []string{"-c", ok, "-c", filepath.Join(dir, "bad", "nested"), "--namespace", "team-a"},
			wantCode:   exitOK,
			wantStderr: regexp.MustCompile(` in 3 resources from 2 files\n$`),
		},
		{
			name:       "unreadable path is an error finding",
			args:       []string{"-c", filepath.Join(dir, "missing")},
			wantCode:   exitFail,
			wantStdout: regexp.MustCompile(`missing: .*no such file or directory\n`),
			wantStderr: regexp.MustCompile(`^1 error, 0 warnings in 0 resources from 0 files\n$`),
		},
		{
			name:       "no -c",
			args:       nil,
			wantCode:   exitUsage,
			wantStderr: regexp.MustCompile(`no configuration given`),
		},
		{
			name:       "unknown flag",
			args:       []string{"-c", ok, "--bogus"},
			wantCode:   exitUsage,
			wantStderr: regexp.MustCompile(`flag provided but not defined: -bogus`),
		},
		{
			name:       "unknown output format",
			args:       []string{"-c", ok, "-o", "yaml"},
			wantCode:   exitUsage,
			wantStderr: regexp.MustCompile(`unknown output format "yaml"`),
		},
		{
			name:       "positional argument",
			args:       []string{ok},
			wantCode:   exitUsage,
			wantStderr: regexp.MustCompile(`unexpected argument`),
		},
		{
			name:       "help",
			args:       []string{"-h"},
			wantCode:   exitOK,
			wantStdout: regexp.MustCompile(`(?s)^Usage: michi validate -c PATH.*-cluster-domain`),
			wantStderr: regexp.MustCompile(`^$`),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(append([]string{"validate"}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("michi validate %v exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.args, code, tc.wantCode, stdout.String(), stderr.String())
			}
			if tc.wantStdout == nil && stdout.Len() > 0 {
				t.Errorf("stdout = %q, want empty", stdout.String())
			}
			if tc.wantStdout != nil && !tc.wantStdout.MatchString(stdout.String()) {
				t.Errorf("stdout = %q, want match for %q", stdout.String(), tc.wantStdout)
			}
			if !tc.wantStderr.MatchString(stderr.String()) {
				t.Errorf("stderr = %q, want match for %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

func TestValidateCommandJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{"ok.yaml": serviceEntryYAML, "broken.yaml": brokenYAML})

	t.Run("no findings is an empty array", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runMain([]string{"validate", "-o", "json", "-c", filepath.Join(dir, "ok.yaml")}, &stdout, &stderr); code != exitOK {
			t.Fatalf("exit code = %d, want %d; stderr: %s", code, exitOK, stderr.String())
		}
		if got := strings.TrimSpace(stdout.String()); got != "[]" {
			t.Errorf("stdout = %q, want []", got)
		}
	})

	t.Run("findings carry every key", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runMain([]string{"validate", "-o", "json", "-c", filepath.Join(dir, "broken.yaml")}, &stdout, &stderr); code != exitFail {
			t.Fatalf("exit code = %d, want %d; stderr: %s", code, exitFail, stderr.String())
		}
		var got []map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("stdout is not a JSON array: %v\n%s", err, stdout.String())
		}
		if len(got) != 3 {
			t.Fatalf("got %d findings, want 3:\n%s", len(got), stdout.String())
		}
		want := map[string]any{
			"file":      filepath.Join(dir, "broken.yaml"),
			"line":      float64(11),
			"kind":      "VirtualService",
			"namespace": "default",
			"name":      "broken",
			"field":     "spec.http[0].route[0].weight",
			"severity":  "error",
			"message":   "must not be negative, found -1",
		}
		if diff := cmp.Diff(want, got[0]); diff != "" {
			t.Errorf("first finding (-want +got):\n%s", diff)
		}
	})
}

// TestValidateBinary builds the real binary and checks the exit status the
// shell sees, since scripts and CI rely on it.
func TestValidateBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "michi")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := writeFiles(t, map[string]string{"ok.yaml": serviceEntryYAML, "broken.yaml": brokenYAML})
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"validate", "-c", filepath.Join(dir, "ok.yaml")}, exitOK},
		{[]string{"validate", "-c", filepath.Join(dir, "broken.yaml")}, exitFail},
		{[]string{"validate"}, exitUsage},
	} {
		cmd := exec.Command(bin, tc.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatalf("running %v: %v", tc.args, err)
		}
		if code != tc.want {
			t.Errorf("michi %v exited %d, want %d; stderr: %s", tc.args, code, tc.want, stderr.String())
		}
	}
}
