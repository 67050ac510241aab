package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/invalid")

// loadAndValidate runs what `michi validate` runs on one package's
// input: Load, then Validate, sorted.
func loadAndValidate(t *testing.T, paths ...string) (*Set, Diagnostics) {
	t.Helper()
	set, diags := Load(paths, LoadOptions{})
	diags = append(diags, Validate(set, ValidateOptions{})...)
	diags.Sort()
	return set, diags
}

func render(diags Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// TestInvalidGolden checks every broken configuration in
// testdata/invalid against the findings in its .golden file. Each golden
// line was reviewed by hand; `go test ./internal/config -update` rewrites
// them after a deliberate change, and the diff must be reviewed again.
func TestInvalidGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata/invalid")
	}
	want := map[string]bool{}
	for _, in := range inputs {
		golden := strings.TrimSuffix(in, ".yaml") + ".golden"
		want[golden] = true
		t.Run(filepath.Base(in), func(t *testing.T) {
			_, diags := loadAndValidate(t, in)
			if !diags.HasErrors() {
				t.Errorf("Load+Validate(%s) found no errors; every file in testdata/invalid must have at least one", in)
			}
			got := render(diags)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantText, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file: %v (run go test ./internal/config -update)", err)
			}
			if diff := cmp.Diff(string(wantText), got); diff != "" {
				t.Errorf("Load+Validate(%s) findings differ from %s (-want +got):\n%s", in, golden, diff)
			}
		})
	}
	goldens, err := filepath.Glob("testdata/invalid/*.golden")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldens {
		if want[g] {
			continue
		}
		if *update {
			if err := os.Remove(g); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("golden file %s has no input %s", g, strings.TrimSuffix(g, ".golden")+".yaml")
	}
}

// TestValidConfigs checks that the configurations in testdata/valid, which
// between them set every field of every kind, produce no findings at all.
func TestValidConfigs(t *testing.T) {
	inputs, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata/valid")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			set, diags := loadAndValidate(t, in)
			if len(diags) > 0 {
				t.Errorf("Load+Validate(%s) = %d findings, want none:\n%s", in, len(diags), render(diags))
			}
			if len(set.Resources) == 0 {
				t.Errorf("Load(%s) decoded no resources", in)
			}
		})
	}
}
