package compile

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// The golden tests compile every testdata/<case>.in.yaml and compare the
// result with testdata/<case>.golden.yaml. To add a case, write the input
// (optionally starting with a "# michi: key=value ..." options line, see
// parseGoldenOptions), run `go test ./internal/compile -update`, and review
// the new golden by hand before committing it. -update also deletes
// goldens whose input is gone.
var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current output")

const (
	inSuffix     = ".in.yaml"
	goldenSuffix = ".golden.yaml"
)

// goldenOutput is what a golden file holds. Load carries the loader's and
// config.Validate's findings, so a case whose input is itself invalid says
// so in its golden.
type goldenOutput struct {
	Load    config.Diagnostics `json:"load,omitempty"`
	Compile config.Diagnostics `json:"compile,omitempty"`
	Analyze config.Diagnostics `json:"analyze,omitempty"`
	Table   *routing.Table     `json:"table"`
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*"+inSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*" + inSuffix + " cases found")
	}
	cases := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), inSuffix)
		cases[name] = true
		t.Run(name, func(t *testing.T) { runGolden(t, name) })
	}

	goldens, err := filepath.Glob(filepath.Join("testdata", "*"+goldenSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), goldenSuffix)
		if cases[name] {
			continue
		}
		if *update {
			if err := os.Remove(g); err != nil {
				t.Fatal(err)
			}
			t.Logf("deleted orphaned %s", g)
			continue
		}
		t.Errorf("%s has no %s input; run with -update to delete it", g, name+inSuffix)
	}
}

func runGolden(t *testing.T, name string) {
	inPath := filepath.Join("testdata", name+inSuffix)
	goldenPath := filepath.Join("testdata", name+goldenSuffix)
	data, err := os.ReadFile(inPath)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := parseGoldenOptions(data)
	if err != nil {
		t.Fatalf("%s: %v", inPath, err)
	}

	got := renderGolden(t, name+inSuffix, data, opts)
	// Compile must be deterministic: a second run over a fresh load of the
	// same bytes must render identically (map iteration, sort stability).
	if again := renderGolden(t, name+inSuffix, data, opts); again != got {
		t.Fatalf("Compile is not deterministic for %s:\n%s", name, cmp.Diff(got, again))
	}

	if *update {
		if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run `go test ./internal/compile -update` to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", goldenPath, diff)
	}
}

// renderGolden runs the whole pipeline a proxy would: load, validate,
// registry, Compile and Analyze, and renders the result as YAML.
func renderGolden(t *testing.T, fileName string, data []byte, g goldenOptions) string {
	t.Helper()
	opts := g.Options
	set, diags := config.LoadBytes(fileName, data, config.LoadOptions{})
	diags = append(diags, config.Validate(set, config.ValidateOptions{ClusterDomain: opts.ClusterDomain})...)
	diags.Sort()
	reg := registry.Build(set, opts.ClusterDomain)

	table, compileDiags := Compile(set, reg, opts)
	if table == nil {
		t.Fatal("Compile returned a nil table")
	}
	compileDiags.Sort()
	analyzeDiags := Analyze(set, reg, opts)
	analyzeDiags.Sort()

	if len(g.omit) > 0 {
		// The version hashes the whole table, sections left out included.
		table.Version = ""
	}
	for _, section := range g.omit {
		switch section {
		case "clusters":
			table.Clusters = nil
		case "http":
			table.HTTP = nil
		case "tcp":
			table.TCP = nil
		case "tls":
			table.TLS = nil
		case "gateways":
			table.Gateways = nil
		}
	}
	out := goldenOutput{Load: diags, Compile: compileDiags, Analyze: analyzeDiags, Table: table}
	js, err := json.Marshal(out)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		t.Fatalf("json to yaml: %v", err)
	}
	return string(y)
}

// parseGoldenOptions reads the optional first-line options comment:
//
//	# michi: role=mesh namespace=default labels=app=web,version=v1 outbound=REGISTRY_ONLY gateways=istio-system/ingress
//
// Keys: role (mesh|gateway), namespace, labels (k=v,...), gateways
// (ns/name,...), locality, outbound (ALLOW_ANY|REGISTRY_ONLY), domain (the
// cluster domain) and root (the root namespace). Unset keys keep
// Compile's defaults, except namespace, which defaults to "default".
//
// omit (clusters,http,tcp,tls,gateways) leaves table sections out of the
// golden, so that a case about routes does not change when cluster
// building does; the table version, a hash of everything, goes too.
func parseGoldenOptions(data []byte) (goldenOptions, error) {
	var g goldenOptions
	g.Proxy = routing.Proxy{Role: routing.RoleMesh, Namespace: "default"}
	opts := &g.Options
	first, _, _ := strings.Cut(string(data), "\n")
	rest, ok := strings.CutPrefix(strings.TrimSpace(first), "# michi:")
	if !ok {
		return g, nil
	}
	for _, kv := range strings.Fields(rest) {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			return g, fmt.Errorf("options: %q is not key=value", kv)
		}
		switch key {
		case "role":
			opts.Proxy.Role = routing.Role(value)
		case "namespace":
			opts.Proxy.Namespace = value
		case "labels":
			opts.Proxy.Labels = map[string]string{}
			for _, l := range strings.Split(value, ",") {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return g, fmt.Errorf("options: label %q is not k=v", l)
				}
				opts.Proxy.Labels[k] = v
			}
		case "gateways":
			opts.Proxy.Gateways = strings.Split(value, ",")
		case "locality":
			opts.Proxy.Locality = value
		case "outbound":
			opts.OutboundPolicy = routing.OutboundPolicy(value)
		case "domain":
			opts.ClusterDomain = value
		case "root":
			opts.RootNamespace = value
		case "omit":
			for _, section := range strings.Split(value, ",") {
				switch section {
				case "clusters", "http", "tcp", "tls", "gateways":
					g.omit = append(g.omit, section)
				default:
					return g, fmt.Errorf("options: omit: unknown table section %q", section)
				}
			}
		default:
			return g, fmt.Errorf("options: unknown key %q", key)
		}
	}
	return g, nil
}

// goldenOptions are the compile options of a case and what its golden
// leaves out.
type goldenOptions struct {
	Options
	omit []string
}
