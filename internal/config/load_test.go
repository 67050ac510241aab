package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLoadBoundsAliasExpansion checks that a small document whose nested
// YAML aliases name the same subtree millions of times is rejected
// quickly instead of being expanded ("billion laughs").
func TestLoadBoundsAliasExpansion(t *testing.T) {
	const n = 300 // 300 rules x 300 matches x 300 headers = 27M values
	headers := make([]string, n)
	for i := range headers {
		headers[i] = fmt.Sprintf("h%d: {exact: v}", i)
	}
	var b strings.Builder
	b.WriteString("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: laughs\nspec:\n  hosts: [reviews]\n  http:\n")
	fmt.Fprintf(&b, "  - &h {route: [{destination: {host: reviews}}], match: [&m {headers: {%s}}%s]}\n",
		strings.Join(headers, ", "), strings.Repeat(", *m", n-1))
	b.WriteString(strings.Repeat("  - *h\n", n-1))
	if b.Len() > 16<<10 {
		t.Fatalf("test document is %d bytes; it should stay small", b.Len())
	}

	start := time.Now()
	set, diags := LoadBytes("laughs.yaml", []byte(b.String()), LoadOptions{})
	elapsed := time.Since(start)

	if len(set.Resources) != 0 {
		t.Errorf("LoadBytes kept %d resources, want the over-large one rejected", len(set.Resources))
	}
	var found bool
	for _, d := range diags {
		if strings.Contains(d.Message, "YAML aliases") {
			found = true
			if d.Kind != "VirtualService" || d.Name != "laughs" || d.Namespace != "default" {
				t.Errorf("alias finding %+v does not name VirtualService default/laughs", d)
			}
		}
	}
	if !found {
		t.Errorf("LoadBytes findings %v, want one about YAML aliases", diags)
	}
	// Generous, to stay reliable under -race on a loaded machine; the
	// unbounded expansion takes minutes.
	if elapsed > 20*time.Second {
		t.Errorf("LoadBytes took %v", elapsed)
	}
}

// TestLoadNamesResourceInEarlyFindings checks that findings about fields
// written before metadata still name the resource.
func TestLoadNamesResourceInEarlyFindings(t *testing.T) {
	doc := `apiVersion: networking.istio.io/v1
kind: DestinationRule
extra: field
metadata:
  name: reviews
  namespace: team-a
spec:
  host: reviews
`
	_, diags := LoadBytes("early.yaml", []byte(doc), LoadOptions{})
	if len(diags) != 1 {
		t.Fatalf("LoadBytes findings = %v, want exactly one", diags)
	}
	if got, want := diags[0].String(), `early.yaml:3: DestinationRule team-a/reviews: extra: unknown field "extra"`; got != want {
		t.Errorf("finding = %q, want %q", got, want)
	}
}
