package demo

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/template"
)

// manifests are the demo's Istio configuration, with the workloads' ports
// left as template actions: {{port "reviews-v2"}} and {{meshPort}}.
//
//go:embed manifests/*.yaml.tmpl
var manifests embed.FS

// The configuration files, in the order they are shown. ServicesFile
// holds the endpoints, which change with every run; the others are the
// routing a user edits.
const (
	ServicesFile    = "services.yaml"
	ProductpageFile = "productpage.yaml"
	ReviewsFile     = "reviews.yaml"
	RatingsFile     = "ratings.yaml"
)

var fileOrder = []string{ServicesFile, ProductpageFile, ReviewsFile, RatingsFile}

// Namespace is where the demo's resources live (they set none), and the
// proxy's own namespace, so that the short host names resolve the same
// way for both: reviews is reviews.default.svc.cluster.local.
const Namespace = "default"

// File is one manifest of the demo configuration.
type File struct {
	Name string
	Data []byte
}

// Config renders the demo configuration for workloads listening on ports
// (workload name → loopback port, as Workloads.Ports returns).
func Config(ports map[string]int) ([]File, error) {
	funcs := template.FuncMap{
		"meshPort": func() int { return MeshPort },
		"port": func(name string) (int, error) {
			p, ok := ports[name]
			if !ok {
				return 0, fmt.Errorf("no port for workload %q", name)
			}
			return p, nil
		},
	}
	files := make([]File, 0, len(fileOrder))
	for _, name := range fileOrder {
		src, err := manifests.ReadFile("manifests/" + name + ".tmpl")
		if err != nil {
			return nil, err
		}
		t, err := template.New(name).Funcs(funcs).Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		files = append(files, File{Name: name, Data: b.Bytes()})
	}
	return files, nil
}

// Write puts files into dir, creating it if needed. ServicesFile is always
// written, because it holds this run's ports. A routing file that already
// exists with other content is kept, so that edits made during an earlier
// run survive a restart; Write returns the names of the files it kept.
func Write(dir string, files []File) (kept []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if f.Name != ServicesFile {
			old, err := os.ReadFile(path)
			switch {
			case err == nil && !bytes.Equal(old, f.Data):
				kept = append(kept, f.Name)
				continue
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				return kept, err
			}
		}
		if err := os.WriteFile(path, f.Data, 0o644); err != nil {
			return kept, err
		}
	}
	return kept, nil
}
