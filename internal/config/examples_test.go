package config

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// examplesDir is the repository's examples/, which `michi validate -c
// examples/` must accept.
const examplesDir = "../../examples"

// TestExamplesValidate loads every example, all together and each
// directory on its own (each is meant to run by itself), and requires that
// none has an error.
func TestExamplesValidate(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(examplesDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	runs := []string{examplesDir}
	for _, d := range dirs {
		if info, err := os.Stat(d); err == nil && info.IsDir() {
			runs = append(runs, d)
		}
	}
	if len(runs) < 10 {
		t.Fatalf("found %d example directories, want the full set", len(runs)-1)
	}
	for _, dir := range runs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			set, diags := loadAndValidate(t, dir)
			if len(set.Resources) == 0 {
				t.Fatalf("Load(%s) found no resources", dir)
			}
			if diags.HasErrors() {
				t.Errorf("Load+Validate(%s) has errors:\n%s", dir, render(diags.Errors()))
			}
			for _, d := range diags {
				if d.Severity != Error {
					t.Logf("%s", d) // allowed, but worth seeing
				}
			}
		})
	}
}

// TestExamplesHaveHeaderComments checks that every example file starts by
// saying what it demonstrates.
func TestExamplesHaveHeaderComments(t *testing.T) {
	files, err := ListFiles([]string{examplesDir})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		first, _ := bufio.NewReader(fh).ReadString('\n')
		fh.Close()
		if !strings.HasPrefix(first, "# ") {
			t.Errorf("%s starts with %q, want a comment saying what it demonstrates", f, strings.TrimSpace(first))
		}
	}
}
