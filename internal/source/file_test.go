package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/config"
)

// waitFor bounds every wait for an event that must come. A change must be
// live within a second; the extra margin keeps a loaded CI machine from
// failing the tests that do not measure latency.
const waitFor = 5 * time.Second

// quiet is how long a test waits to be sure that no reload happens.
const quiet = 5 * DefaultDebounce

type emission struct {
	names []string // "Kind ns/name", sorted
	diags config.Diagnostics
	at    time.Time
}

// harness runs a File source and reports what it does on channels.
type harness struct {
	t        *testing.T
	emits    chan emission
	reloads  chan bool
	stop     func()
	finished chan error
}

func start(t *testing.T, paths ...string) *harness {
	t.Helper()
	h := &harness{t: t, emits: make(chan emission, 100), reloads: make(chan bool, 100), finished: make(chan error, 1)}
	src := &File{Paths: paths, reloaded: func(emitted bool) { h.reloads <- emitted }}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() {
		h.finished <- src.Run(ctx, func(set *config.Set, diags config.Diagnostics) {
			var names []string
			for _, r := range set.Resources {
				names = append(names, r.Key())
			}
			sort.Strings(names)
			h.emits <- emission{names: names, diags: diags, at: time.Now()}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-h.finished; err != nil {
			t.Errorf("Run returned %v, want nil after cancel", err)
		}
	})
	return h
}

// next returns the next emission.
func (h *harness) next() emission {
	h.t.Helper()
	select {
	case e := <-h.emits:
		return e
	case <-time.After(waitFor):
		h.t.Fatalf("no configuration emitted within %v", waitFor)
		return emission{}
	}
}

// expect waits for the next emission and checks its resources.
func (h *harness) expect(want ...string) emission {
	h.t.Helper()
	e := h.next()
	sort.Strings(want)
	if diff := cmp.Diff(want, e.names); diff != "" {
		h.t.Fatalf("emitted resources mismatch (-want +got):\n%s", diff)
	}
	return e
}

// expectNoEmit checks that nothing is emitted for a while.
func (h *harness) expectNoEmit() {
	h.t.Helper()
	select {
	case e := <-h.emits:
		h.t.Fatalf("got emission %v, want none", e.names)
	case <-time.After(quiet):
	}
}

// expectNoReload checks that no reload is even attempted for a while.
func (h *harness) expectNoReload() {
	h.t.Helper()
	select {
	case emitted := <-h.reloads:
		h.t.Fatalf("got a reload (emitted %v), want none", emitted)
	case <-time.After(quiet):
	}
}

// drainReloads forgets the reloads seen so far, including one whose
// emission was just consumed but whose callback is still on its way.
func (h *harness) drainReloads() {
	for {
		select {
		case <-h.reloads:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

func vs(name string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %s
  namespace: default
spec:
  hosts: [%s]
  http:
  - route:
    - destination:
        host: %s
`, name, name, name)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileEmitsAtStart(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vs("a"))
	write(t, filepath.Join(dir, "sub", "b.yml"), vs("b"))
	write(t, filepath.Join(dir, "notes.txt"), "not a manifest")
	write(t, filepath.Join(dir, ".hidden", "c.yaml"), vs("c"))
	h := start(t, dir)
	h.expect("VirtualService default/a", "VirtualService default/b")
}

func TestFileReportsLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.yaml"), "kind: [unclosed\n")
	h := start(t, dir)
	e := h.expect()
	if !e.diags.HasErrors() {
		t.Fatalf("got diagnostics %v, want the YAML error", e.diags)
	}
	// Fixing the file emits the good configuration.
	write(t, filepath.Join(dir, "bad.yaml"), vs("fixed"))
	if e := h.expect("VirtualService default/fixed"); e.diags.HasErrors() {
		t.Errorf("got diagnostics %v after the fix, want no errors", e.diags)
	}
}

func TestFileChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
		want   []string
	}{
		{
			name:   "write in place",
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "a.yaml"), vs("a2")) },
			want:   []string{"VirtualService default/a2", "VirtualService default/b"},
		},
		{
			name: "rename over, as vim and kubectl do",
			change: func(t *testing.T, dir string) {
				tmp := filepath.Join(dir, "a.yaml.tmp")
				write(t, tmp, vs("renamed"))
				if err := os.Rename(tmp, filepath.Join(dir, "a.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"VirtualService default/renamed", "VirtualService default/b"},
		},
		{
			name: "delete",
			change: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"VirtualService default/b"},
		},
		{
			name:   "new file",
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "c.json"), vs("c")) },
			want:   []string{"VirtualService default/a", "VirtualService default/b", "VirtualService default/c"},
		},
		{
			name:   "new subdirectory",
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "new", "deeper", "d.yaml"), vs("d")) },
			want:   []string{"VirtualService default/a", "VirtualService default/b", "VirtualService default/d"},
		},
		{
			name: "subdirectory removed",
			change: func(t *testing.T, dir string) {
				if err := os.RemoveAll(filepath.Join(dir, "sub")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"VirtualService default/a"},
		},
		{
			name: "subdirectory moved in",
			change: func(t *testing.T, dir string) {
				outside := filepath.Join(t.TempDir(), "moved")
				write(t, filepath.Join(outside, "e.yaml"), vs("e"))
				if err := os.Rename(outside, filepath.Join(dir, "moved")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"VirtualService default/a", "VirtualService default/b", "VirtualService default/e"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "a.yaml"), vs("a"))
			write(t, filepath.Join(dir, "sub", "b.yaml"), vs("b"))
			h := start(t, dir)
			h.expect("VirtualService default/a", "VirtualService default/b")
			changed := time.Now()
			tc.change(t, dir)
			e := h.expect(tc.want...)
			// The contract is live within 1s; the bound leaves headroom
			// for -race on a loaded two-core CI machine.
			if lag := e.at.Sub(changed); lag > 2*time.Second {
				t.Errorf("change took %v to be emitted, want well under 1s (bound 2s)", lag)
			}
		})
	}
}

func TestFileWatchesNewSubdirectory(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	h.expect()
	write(t, filepath.Join(dir, "team", "x.yaml"), vs("x1"))
	h.expect("VirtualService default/x1")
	// The new directory is watched: a later change inside it is seen.
	write(t, filepath.Join(dir, "team", "x.yaml"), vs("x2"))
	h.expect("VirtualService default/x2")
}

func TestFileBurstOfWritesEmitsOnce(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vs("a0"))
	h := start(t, dir)
	h.expect("VirtualService default/a0")
	for i := 1; i <= 20; i++ {
		write(t, filepath.Join(dir, "a.yaml"), vs(fmt.Sprintf("a%d", i)))
	}
	// The burst is coalesced: at most a few emits (the debounce is capped
	// so that a never-ending stream still reloads), never an empty set
	// from a file caught between truncate and write, and the last is the
	// final content.
	var got []string
	for len(got) == 0 || got[len(got)-1] != "VirtualService default/a20" {
		e := h.next()
		if len(e.names) != 1 {
			t.Fatalf("emitted %v mid-burst, want exactly one VirtualService", e.names)
		}
		got = append(got, e.names[0])
	}
	if len(got) > 3 {
		t.Errorf("20 writes gave %d emits %v, want them coalesced", len(got), got)
	}
	h.expectNoEmit()
}

func TestFileUnchangedBytesDoNotEmit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, vs("a"))
	h := start(t, dir)
	h.expect("VirtualService default/a")
	<-h.reloads // the initial load
	write(t, path, vs("a"))
	select {
	case emitted := <-h.reloads:
		if emitted {
			t.Fatal("identical rewrite emitted, want it skipped")
		}
	case <-time.After(waitFor):
		t.Fatal("identical rewrite did not even trigger a reload")
	}
	h.expectNoEmit()
}

func TestFileIgnoresEditorFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vs("a"))
	h := start(t, dir)
	h.expect("VirtualService default/a")
	<-h.reloads
	write(t, filepath.Join(dir, ".a.yaml.swp"), "swap")
	write(t, filepath.Join(dir, "a.yaml~"), "backup")
	write(t, filepath.Join(dir, "README.md"), "docs")
	h.expectNoReload()
}

func TestFileSingleFilePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.conf") // a named file is read whatever its extension
	write(t, path, vs("a"))
	write(t, filepath.Join(dir, "sibling.yaml"), vs("sibling"))
	h := start(t, path)
	h.expect("VirtualService default/a")
	h.drainReloads()

	write(t, filepath.Join(dir, "sibling.yaml"), vs("sibling2"))
	h.expectNoReload()

	tmp := filepath.Join(dir, "mesh.conf.new")
	write(t, tmp, vs("b"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	h.expect("VirtualService default/b")
}

// TestFileKubernetesConfigMap replays how the kubelet updates a mounted
// ConfigMap: the files are symlinks through "..data", which is swapped
// atomically to a new timestamped directory.
func TestFileKubernetesConfigMap(t *testing.T) {
	dir := t.TempDir()
	publish := func(version, content string) {
		ts := "..2024_05_01_" + version
		write(t, filepath.Join(dir, ts, "vs.yaml"), content)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("1", vs("one"))
	if err := os.Symlink(filepath.Join("..data", "vs.yaml"), filepath.Join(dir, "vs.yaml")); err != nil {
		t.Fatal(err)
	}
	h := start(t, dir)
	h.expect("VirtualService default/one")
	publish("2", vs("two"))
	h.expect("VirtualService default/two")
}

func TestFileMissingPathRecovers(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "conf")
	h := start(t, dir)
	if e := h.expect(); !e.diags.HasErrors() {
		t.Fatalf("got diagnostics %v, want an error for the missing directory", e.diags)
	}
	write(t, filepath.Join(dir, "a.yaml"), vs("a"))
	h.expect("VirtualService default/a")
	write(t, filepath.Join(dir, "a.yaml"), vs("a2"))
	h.expect("VirtualService default/a2")
}
