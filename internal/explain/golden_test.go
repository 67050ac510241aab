package explain

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output")

// TestGolden pins the text and JSON renderings of a few explanations:
// the text layout is for people, the JSON field names are a contract.
// Run `go test ./internal/explain -update` after an intended change and
// review the diff.
func TestGolden(t *testing.T) {
	frontend := Config{Paths: []string{fixture}, Namespace: "frontend"}
	gateway := Config{Paths: []string{fixture}, Namespace: "default", Gateways: []string{"default/bookinfo-gateway"}}
	tests := []struct {
		name    string
		config  Config
		method  string
		url     string
		headers []string
	}{
		{"split", productpage, "GET", "http://reviews:9080/beta/1", []string{"x-legacy: 1"}},
		{"delegate", productpage, "GET", "http://productpage:9080/api/v1/products/7?verbose=1", nil},
		{"cors-preflight", productpage, "OPTIONS", "http://productpage:9080/", []string{"Origin: https://bookinfo.example", "Access-Control-Request-Method: POST"}},
		{"fault", productpage, "GET", "http://ratings:9080/", []string{"end-user: jason"}},
		{"passthrough", productpage, "GET", "http://nowhere.example.com/a", nil},
		{"not-found", productpage, "GET", "http://legacy.example.com/other", nil},
		{"missing-subset", frontend, "GET", "http://ratings.default:9080/", nil},
		{"gateway-https-redirect", gateway, "GET", "http://secure.example.com/productpage?a=b", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := explainOne(t, tc.config, tc.method, tc.url, tc.headers...)
			var text bytes.Buffer
			if err := res.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			js, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", "golden", tc.name+".txt"), text.Bytes())
			checkGolden(t, filepath.Join("testdata", "golden", tc.name+".json"), append(js, '\n'))
		})
	}
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); rerun with -update if intended:\n%s", path, diff)
	}
}

// TestJSONContract checks the fields `michi explain -o json` promises,
// with their JSON types, for every kind of action.
func TestJSONContract(t *testing.T) {
	requests := []struct {
		url    string
		action string
	}{
		{"http://reviews:9080/", ActionRoute},
		{"http://productpage:9080/old", ActionRedirect},
		{"http://productpage:9080/healthz", ActionDirectResponse},
		{"http://legacy.example.com/nope", ActionNotFound},
	}
	for _, r := range requests {
		t.Run(r.action, func(t *testing.T) {
			b, err := json.Marshal(explainOne(t, productpage, "GET", r.url))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"virtualHost": "string", "virtualService": "string", "ruleIndex": "number", "ruleName": "string",
				"action": "string", "destinations": "array", "timeout": "string", "mirrors": "array", "rules": "array",
				"retries": "object or null", "fault": "object or null",
			}
			for field, typ := range want {
				v, ok := got[field]
				if !ok {
					t.Errorf("field %q missing", field)
					continue
				}
				if kind := jsonKind(v); kind != typ && !(typ == "object or null" && (kind == "object" || kind == "null")) {
					t.Errorf("field %q is %s, want %s", field, kind, typ)
				}
			}
			if got["action"] != r.action {
				t.Errorf("action = %v, want %s", got["action"], r.action)
			}
			dests, _ := got["destinations"].([]any)
			for _, d := range dests {
				dm := d.(map[string]any)
				for _, f := range []string{"host", "subset", "port", "weight", "cluster", "endpoints"} {
					if _, ok := dm[f]; !ok {
						t.Errorf("destination field %q missing in %v", f, dm)
					}
				}
			}
			if r.action == ActionRoute && len(dests) == 0 {
				t.Error("a route action has no destinations")
			}
		})
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	}
	return "object"
}
