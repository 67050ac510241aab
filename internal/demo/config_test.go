package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// testPorts stands in for a run's random ports.
func testPorts() map[string]int {
	ports := map[string]int{}
	for i, wl := range catalogue {
		ports[wl.Name] = 20001 + i
	}
	return ports
}

// validate runs what `michi validate` runs and returns every finding.
func validate(t *testing.T, dir string) config.Diagnostics {
	t.Helper()
	set, diags := config.Load([]string{dir}, config.LoadOptions{DefaultNamespace: Namespace})
	diags = append(diags, config.Validate(set, config.ValidateOptions{ClusterDomain: config.DefaultClusterDomain})...)
	reg := registry.Build(set, config.DefaultClusterDomain)
	diags = append(diags, compile.Analyze(set, reg, compile.Options{
		Proxy:         routing.Proxy{Role: routing.RoleMesh, Namespace: Namespace},
		ClusterDomain: config.DefaultClusterDomain,
	})...)
	return diags
}

func TestConfigValidates(t *testing.T) {
	files, err := Config(testPorts())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Write(dir, files); err != nil {
		t.Fatal(err)
	}
	for _, d := range validate(t, dir) {
		t.Errorf("finding: %s", d)
	}
}

func TestWriteKeepsEditedRouting(t *testing.T) {
	files, err := Config(testPorts())
	if err != nil {
		t.Fatal(err)
	}
	const edited = "# my edit\n"
	tests := []struct {
		name     string
		existing map[string]string // files in dir before Write
		wantKept []string
		wantEdit []string // files that must still hold the edit
	}{
		{name: "empty dir"},
		{
			name:     "edited routing survives",
			existing: map[string]string{ReviewsFile: edited, RatingsFile: edited},
			wantKept: []string{ReviewsFile, RatingsFile},
			wantEdit: []string{ReviewsFile, RatingsFile},
		},
		{
			name:     "services always rewritten",
			existing: map[string]string{ServicesFile: edited},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.existing {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			kept, err := Write(dir, files)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantKept, kept); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			for _, f := range files {
				got, err := os.ReadFile(filepath.Join(dir, f.Name))
				if err != nil {
					t.Fatal(err)
				}
				want := string(f.Data)
				if slices.Contains(tc.wantEdit, f.Name) {
					want = edited
				}
				if string(got) != want {
					t.Errorf("%s after Write:\n%s\nwant:\n%s", f.Name, got, want)
				}
			}
		})
	}
}

func TestConfigUsesPorts(t *testing.T) {
	ports := testPorts()
	files, err := Config(ports)
	if err != nil {
		t.Fatal(err)
	}
	services := string(files[0].Data)
	for name, port := range ports {
		if !strings.Contains(services, fmt.Sprintf("http: %d\n", port)) {
			t.Errorf("%s lacks %s's port %d:\n%s", files[0].Name, name, port, services)
		}
	}
	delete(ports, "ratings-v1-broken")
	if _, err := Config(ports); err == nil || !strings.Contains(err.Error(), "ratings-v1-broken") {
		t.Errorf("Config without a port for ratings-v1-broken: error %v, want one naming it", err)
	}
}
