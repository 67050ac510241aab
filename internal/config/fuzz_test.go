package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadValidate feeds arbitrary bytes through the loader and validator:
// neither may panic, and every finding must say how bad it is and what is
// wrong. The seeds are the golden and valid configurations.
func FuzzLoadValidate(f *testing.F) {
	for _, pattern := range []string{"testdata/invalid/*.yaml", "testdata/valid/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, diags := LoadBytes("fuzz.yaml", data, LoadOptions{})
		diags = append(diags, Validate(set, ValidateOptions{})...)
		for _, d := range diags {
			switch d.Severity {
			case Error, Warning, Info:
			default:
				t.Errorf("finding %+v has severity %q", d, d.Severity)
			}
			if d.Message == "" {
				t.Errorf("finding %+v has no message", d)
			}
		}
		for _, r := range set.Resources {
			if r.Spec == nil || r.Name == "" || r.Namespace == "" {
				t.Errorf("resource %s loaded without a spec, name or namespace", r.Key())
			}
		}
	})
}
