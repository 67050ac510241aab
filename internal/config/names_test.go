package config

import (
	"regexp"
	"strings"
	"testing"
)

// TestIsDNS1123Label checks the hand-written check against the rule as a
// regular expression.
func TestIsDNS1123Label(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	for _, s := range []string{"", "a", "v1", "reviews-v2", "-a", "a-", "A", "a.b", "a_b", "1", "a--b",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "é"} {
		want := len(s) <= 63 && re.MatchString(s)
		if got := isDNS1123Label(s); got != want {
			t.Errorf("isDNS1123Label(%q) = %v, want %v", s, got, want)
		}
	}
}
