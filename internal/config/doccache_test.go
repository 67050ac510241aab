package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		lines []int
		first []string // first line of each document
	}{
		{"single document", "a: 1\nb: 2\n", []int{1}, []string{"a: 1"}},
		{"markers", "a: 1\n---\nb: 2\n---\nc: 3\n", []int{1, 2, 4}, []string{"a: 1", "---", "---"}},
		{"leading marker", "---\na: 1\n---\nb: 2", []int{1, 3}, []string{"---", "---"}},
		{"directive stays with its document", "%YAML 1.2\n---\na: 1\n", []int{1}, []string{"%YAML 1.2"}},
		{"comment before the first marker", "# header\n---\na: 1\n", []int{1}, []string{"# header"}},
		{"content on the marker line", "a: 1\n--- {b: 2}\n", []int{1, 2}, []string{"a: 1", "--- {b: 2}"}},
		{"dashes that are not a marker", "a: |\n  x\n----\nb: ---x\n", []int{1}, []string{"a: |"}},
		{"CRLF", "a: 1\r\n---\r\nb: 2\r\n", []int{1, 2}, []string{"a: 1", "---"}},
		{"empty", "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var lines []int
			var first []string
			for _, d := range splitDocuments([]byte(tc.in)) {
				lines = append(lines, d.line)
				f, _, _ := strings.Cut(string(d.data), "\n")
				first = append(first, strings.TrimRight(f, "\r"))
			}
			if diff := cmp.Diff(tc.lines, lines); diff != "" {
				t.Errorf("start lines (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.first, first); diff != "" {
				t.Errorf("first lines (-want +got):\n%s", diff)
			}
		})
	}
}

const cacheDocs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a]
  http:
  - route: [{destination: {host: a}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: [b]
  http:
  - route: [{destination: {host: b}, weigth: 1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: c}
spec:
  hosts: [c]
  http:
  - route: [{destination: {host: c}}]
`

// TestDocCache checks that a reload reuses unchanged documents, decodes
// changed ones, and reports every line where it now is.
func TestDocCache(t *testing.T) {
	cache := &DocCache{}
	opts := LoadOptions{Cache: cache}
	set1, diags1 := LoadBytes("m.yaml", []byte(cacheDocs), opts)
	if len(set1.Resources) != 2 || len(diags1) != 1 || diags1[0].Line != 15 {
		t.Fatalf("first load: %d resources, findings %v", len(set1.Resources), diags1)
	}

	// b gains two lines, which moves c; a and c are unchanged.
	edited := strings.Replace(cacheDocs, "spec:\n  hosts: [b]", "# one\n# two\nspec:\n  hosts: [b]", 1)
	set2, diags2 := LoadBytes("m.yaml", []byte(edited), opts)
	if len(set2.Resources) != 2 || len(diags2) != 1 {
		t.Fatalf("second load: %d resources, findings %v", len(set2.Resources), diags2)
	}
	if diags2[0].Line != 17 {
		t.Errorf("finding in the edited document at line %d, want 17", diags2[0].Line)
	}
	for i, name := range []string{"a", "c"} {
		r1, r2 := set1.Resources[i], set2.Resources[i]
		if r1.Spec != r2.Spec {
			t.Errorf("unchanged document %s was decoded again instead of coming from the cache", name)
		}
	}
	c1, c2 := set1.Resources[1], set2.Resources[1]
	if c2.Pos.Line != c1.Pos.Line+2 || c2.Line("spec.hosts") != c1.Line("spec.hosts")+2 {
		t.Errorf("cached c: at line %d, spec.hosts at %d; want both two lines below %d, %d",
			c2.Pos.Line, c2.Line("spec.hosts"), c1.Pos.Line, c1.Line("spec.hosts"))
	}
	changed := strings.Replace(cacheDocs, "host: c}", "host: c2}", 1)
	set3, _ := LoadBytes("m.yaml", []byte(changed), opts)
	if c3 := set3.Resources[1]; c3.Spec == c1.Spec || !strings.Contains(c3.VirtualService().String(), "c2") {
		t.Error("changed document c was not decoded again")
	}

	// A document that appears twice is decoded once but is still a
	// duplicate.
	twice := cacheDocs + "---\n" + strings.SplitN(cacheDocs, "---\n", 2)[0]
	_, diags3 := LoadBytes("m.yaml", []byte(twice), opts)
	var dup bool
	for _, d := range diags3 {
		if strings.Contains(d.Message, "duplicate VirtualService default/a") && d.Line == 27 {
			dup = true
		}
	}
	if !dup {
		t.Errorf("repeated document not reported as a duplicate at line 27: %v", diags3)
	}
}

// TestSyntaxErrorKeepsOtherDocuments checks that a YAML error in one
// document loses only that document.
func TestSyntaxErrorKeepsOtherDocuments(t *testing.T) {
	bad := strings.Replace(cacheDocs, "metadata: {name: b}", "metadata: {name: b", 1)
	set, diags := LoadBytes("m.yaml", []byte(bad), LoadOptions{})
	if len(set.Resources) != 2 || len(diags) != 1 || !strings.Contains(diags[0].Message, "invalid YAML") || diags[0].Line < 9 {
		t.Errorf("got %d resources and findings %v; want a and c, and one YAML error in b's document", len(set.Resources), diags)
	}
}
