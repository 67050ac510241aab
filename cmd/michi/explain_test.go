package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// explainYAML has a header-matched subset route, a path-only virtual host
// for 404s, a gateway, and a VirtualService routing to a host no
// ServiceEntry defines (a warning).
const explainYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: rest
    route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: docs, namespace: default}
spec:
  hosts: [docs.example.com]
  http:
  - match: [{uri: {prefix: /docs}}]
    route: [{destination: {host: docs-backend.example.com, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: default}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [reviews.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: public, namespace: default}
spec:
  hosts: [reviews.example.com]
  gateways: [public]
  http:
  - route: [{destination: {host: reviews, subset: v1, port: {number: 9080}}}]
`

const invalidYAML = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: -1}]
`

func writeExplainConfig(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExplainCommand(t *testing.T) {
	cfg := writeExplainConfig(t, "mesh.yaml", explainYAML)
	invalid := writeExplainConfig(t, "invalid.yaml", invalidYAML)
	warning := "docs-backend.example.com is not in the service registry"

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string // substrings, in order
		wantStderr []string // substrings; nil: stderr must be empty
	}{
		{
			name:       "route found",
			args:       []string{"-c", cfg, "-H", "end-user: jason", "GET http://reviews:9080/reviews/1"},
			wantCode:   exitOK,
			wantStdout: []string{"2. Virtual host", `#0 default/reviews spec.http[0].match[0] "jason": matched`, "4. Action: route", "outbound|9080|v2|reviews.default.svc.cluster.local", "10.1.0.2:9080"},
			wantStderr: []string{warning},
		},
		{
			name:       "flags after the request, method as its own argument",
			args:       []string{"POST", "http://reviews:9080/", "-c", cfg},
			wantCode:   exitOK,
			wantStdout: []string{"Request            POST http://reviews:9080/", "header end-user is absent", `spec.http[1] "rest": matched`, "outbound|9080|v1|"},
			wantStderr: []string{warning},
		},
		{
			name:       "no route is 404 and exit 1",
			args:       []string{"-c", cfg, "http://docs.example.com/blog"},
			wantCode:   exitFail,
			wantStdout: []string{`uri prefix "/docs" does not match path "/blog"`, "4. Action: notFound", "Envoy answers 404"},
			wantStderr: []string{warning},
		},
		{
			name:       "missing cluster is a route: exit 0",
			args:       []string{"-c", cfg, "http://docs.example.com/docs/1"},
			wantCode:   exitOK,
			wantStdout: []string{"503 NC: cluster outbound|80||docs-backend.example.com not found"},
			wantStderr: []string{warning},
		},
		{
			name:       "REGISTRY_ONLY unknown host is a 502 route: exit 0",
			args:       []string{"-c", cfg, "--outbound-policy", "REGISTRY_ONLY", "http://unknown.example.org/"},
			wantCode:   exitOK,
			wantStdout: []string{"4. Action: directResponse", "BlackHoleCluster, which answers 502"},
			wantStderr: []string{warning},
		},
		{
			name:       "gateway",
			args:       []string{"-c", cfg, "--gateway", "default/public", "http://reviews.example.com:8080/"},
			wantCode:   exitOK,
			wantStdout: []string{"gateway implementing default/public", "HTTP server of default/public", "outbound|9080|v1|reviews.default.svc.cluster.local"},
			wantStderr: []string{warning},
		},
		{
			name:       "invalid configuration",
			args:       []string{"-c", invalid, "http://reviews:9080/"},
			wantCode:   exitFail,
			wantStderr: []string{"invalid.yaml:7: VirtualService default/broken: spec.http[0].route[0].weight", "michi explain: the configuration is invalid (1 error)"},
		},
		{
			name:       "help",
			args:       []string{"-h"},
			wantCode:   exitOK,
			wantStdout: []string{"Usage: michi explain -c PATH", "-outbound-policy"},
		},
		{name: "no configuration", args: []string{"http://reviews/"}, wantCode: exitUsage, wantStderr: []string{"no configuration given"}},
		{name: "no request", args: []string{"-c", cfg}, wantCode: exitUsage, wantStderr: []string{"no request given"}},
		{name: "relative URL", args: []string{"-c", cfg, "GET /reviews"}, wantCode: exitUsage, wantStderr: []string{"want an absolute http:// or https:// URL"}},
		{name: "bad header", args: []string{"-c", cfg, "-H", "end-user jason", "http://reviews/"}, wantCode: exitUsage, wantStderr: []string{"want 'Name: value'"}},
		{name: "https to a sidecar", args: []string{"-c", cfg, "https://reviews:9080/"}, wantCode: exitUsage, wantStderr: []string{"a sidecar does not terminate TLS"}},
		{name: "bad output format", args: []string{"-c", cfg, "-o", "yaml", "http://reviews/"}, wantCode: exitUsage, wantStderr: []string{`unknown output format "yaml"`}},
		{name: "bad gateway name", args: []string{"-c", cfg, "--gateway", "public", "http://reviews/"}, wantCode: exitUsage, wantStderr: []string{`--gateway "public": want NAMESPACE/NAME`}},
		{name: "bad outbound policy", args: []string{"-c", cfg, "--outbound-policy", "DENY", "http://reviews/"}, wantCode: exitUsage, wantStderr: []string{"want ALLOW_ANY or REGISTRY_ONLY"}},
		{name: "unknown flag", args: []string{"-c", cfg, "--verbose", "http://reviews/"}, wantCode: exitUsage, wantStderr: []string{"flag provided but not defined: -verbose", "Usage: michi explain"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(append([]string{"explain"}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout.String(), stderr.String())
			}
			assertInOrder(t, "stdout", stdout.String(), tc.wantStdout)
			assertInOrder(t, "stderr", stderr.String(), tc.wantStderr)
			if tc.wantStdout == nil && stdout.Len() > 0 {
				t.Errorf("stdout = %q, want it empty", stdout.String())
			}
			if tc.wantStderr == nil && stderr.Len() > 0 {
				t.Errorf("stderr = %q, want it empty", stderr.String())
			}
		})
	}
}

func assertInOrder(t *testing.T, what, got string, want []string) {
	t.Helper()
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s lacks %q (in order):\n%s", what, w, got)
			return
		}
		rest = rest[i+len(w):]
	}
}

func TestExplainCommandJSON(t *testing.T) {
	cfg := writeExplainConfig(t, "mesh.yaml", explainYAML)
	tests := []struct {
		name     string
		url      string
		wantCode int
		want     map[string]any
	}{
		{
			name: "route", url: "http://reviews:9080/", wantCode: exitOK,
			want: map[string]any{
				"virtualHost": "reviews.default.svc.cluster.local:9080", "virtualService": "default/reviews",
				"ruleIndex": 1.0, "ruleName": "rest", "action": "route", "timeout": "none",
			},
		},
		{
			name: "not found", url: "http://docs.example.com/", wantCode: exitFail,
			want: map[string]any{
				"virtualHost": "docs.example.com:80", "virtualService": "", "ruleIndex": -1.0, "ruleName": "",
				"action": "notFound", "status": 404.0, "retries": nil, "fault": nil,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain([]string{"explain", "-c", cfg, "-o", "json", tc.url}, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit code = %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			var got map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
				t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			if _, ok := got["destinations"].([]any); !ok {
				t.Errorf("destinations = %#v, want an array", got["destinations"])
			}
			if _, ok := got["mirrors"].([]any); !ok {
				t.Errorf("mirrors = %#v, want an array", got["mirrors"])
			}
		})
	}

	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"explain", "-c", cfg, "-o", "json", "-H", "end-user: jason", "http://reviews:9080/"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit code = %d; stderr:\n%s", code, stderr.String())
	}
	var res struct {
		Destinations []struct {
			Host      string  `json:"host"`
			Subset    string  `json:"subset"`
			Port      uint32  `json:"port"`
			Weight    uint32  `json:"weight"`
			Percent   float64 `json:"percent"`
			Cluster   string  `json:"cluster"`
			Endpoints []struct {
				Address string            `json:"address"`
				Labels  map[string]string `json:"labels"`
			} `json:"endpoints"`
		} `json:"destinations"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Destinations) != 1 {
		t.Fatalf("destinations = %+v, want one", res.Destinations)
	}
	d := res.Destinations[0]
	if d.Host != "reviews.default.svc.cluster.local" || d.Subset != "v2" || d.Port != 9080 || d.Percent != 100 ||
		d.Cluster != "outbound|9080|v2|reviews.default.svc.cluster.local" ||
		len(d.Endpoints) != 1 || d.Endpoints[0].Address != "10.1.0.2:9080" || d.Endpoints[0].Labels["version"] != "v2" {
		t.Errorf("destination = %+v, want reviews subset v2 on 9080 with endpoint 10.1.0.2:9080", d)
	}
}
