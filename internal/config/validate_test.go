package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCheckWildcardHost(t *testing.T) {
	tests := []struct {
		host    string
		wantErr string // substring; "" means valid
	}{
		{host: "reviews"},
		{host: "reviews.default.svc.cluster.local"},
		{host: "example.com."},
		{host: "*"},
		{host: "*.example.com"},
		{host: "*-v2.example.com"},
		{host: "", wantErr: "must not be empty"},
		{host: "Reviews", wantErr: `label "Reviews"`},
		{host: "foo.*.com", wantErr: "only allowed as the first character"},
		{host: "**.example.com", wantErr: "wildcard label"},
		{host: "a..b", wantErr: `label ""`},
		{host: "1.2.3.4", wantErr: "must not be all digits"},
		{host: "-bad.example.com", wantErr: `label "-bad"`},
		{host: strings.Repeat("a", 64) + ".com", wantErr: "label"},
		{host: strings.Repeat("a.", 128) + "com", wantErr: "too long"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			err := checkWildcardHost(tc.host)
			checkErr(t, fmt.Sprintf("checkWildcardHost(%q)", tc.host), err, tc.wantErr)
		})
	}
}

func TestCheckFQDNRejectsWildcards(t *testing.T) {
	for _, h := range []string{"*", "*.example.com"} {
		if err := checkFQDN(h); err == nil {
			t.Errorf("checkFQDN(%q) = nil, want an error", h)
		}
	}
	if err := checkFQDN("db-1.example.com"); err != nil {
		t.Errorf("checkFQDN(db-1.example.com) = %v, want nil", err)
	}
}

func TestCheckLabel(t *testing.T) {
	tests := []struct {
		name, key, value string
		wantErr          string
	}{
		{name: "plain", key: "app", value: "reviews"},
		{name: "prefixed", key: "app.kubernetes.io/name", value: "reviews-v1.2_beta"},
		{name: "empty value", key: "app", value: ""},
		{name: "empty key", key: "", wantErr: "must not be empty"},
		{name: "bad prefix", key: "Example.com/app", wantErr: "prefix"},
		{name: "empty name", key: "example.com/", wantErr: "must not be empty"},
		{name: "leading dash", key: "-app", wantErr: "name part"},
		{name: "long name", key: strings.Repeat("a", 64), wantErr: "name part"},
		{name: "space in value", key: "app", value: "a b", wantErr: "at most 63"},
		{name: "long value", key: "app", value: strings.Repeat("v", 64), wantErr: "at most 63"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLabelKey(tc.key)
			if err == nil {
				err = checkLabelValue(tc.value)
			}
			checkErr(t, fmt.Sprintf("label %q=%q", tc.key, tc.value), err, tc.wantErr)
		})
	}
}

func TestCheckHeaderValue(t *testing.T) {
	tests := []struct {
		value   string
		wantErr string
	}{
		{value: "plain"},
		{value: "100%%"},
		{value: "%HOSTNAME%"},
		{value: "prefix %START_TIME% suffix"},
		{value: `%REQ(x-request-id)%`},
		{value: `%UPSTREAM_METADATA(["ns", "key"])%`},
		{value: "tab\tok"},
		{value: "100%", wantErr: "unterminated"},
		{value: "%START_TIME%%", wantErr: "unterminated"},
		{value: "%REQ(x", wantErr: "unterminated"},
		{value: "%REQ(x) y%", wantErr: "unterminated"},
		{value: "bell\a", wantErr: "control characters"},
		{value: "del\x7f", wantErr: "control characters"},
	}
	for _, tc := range tests {
		t.Run(tc.value, func(t *testing.T) {
			checkErr(t, fmt.Sprintf("checkHeaderValue(%q)", tc.value), checkHeaderValue(tc.value), tc.wantErr)
		})
	}
}

func TestCheckIPOrCIDR(t *testing.T) {
	for _, ok := range []string{"10.0.0.1", "10.0.0.0/8", "2001:db8::1", "2001:db8::/32", "0.0.0.0/0"} {
		if err := checkIPOrCIDR(ok); err != nil {
			t.Errorf("checkIPOrCIDR(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "10.0.0", "example.com", "10.0.0.1/8/8"} {
		if err := checkIPOrCIDR(bad); err == nil {
			t.Errorf("checkIPOrCIDR(%q) = nil, want an error", bad)
		}
	}
}

func TestCheckLocality(t *testing.T) {
	tests := []struct {
		locality string
		wantErr  string
	}{
		{locality: "us-west"},
		{locality: "us-west/zone1"},
		{locality: "us-west/zone1/rack1"},
		{locality: "*"},
		{locality: "us-west/*"},
		{locality: "us-west/zone1/*"},
		{locality: "", wantErr: "must not be empty"},
		{locality: "us-west//rack1", wantErr: "must not be empty"},
		{locality: "*/zone1", wantErr: "last part"},
		{locality: "us-west/zone*", wantErr: "whole part"},
		{locality: "a/b/c/d", wantErr: "region/zone/subzone"},
	}
	for _, tc := range tests {
		t.Run(tc.locality, func(t *testing.T) {
			checkErr(t, fmt.Sprintf("checkLocality(%q)", tc.locality), checkLocality(tc.locality), tc.wantErr)
		})
	}
}

func TestIsPrime(t *testing.T) {
	var got []uint64
	for n := uint64(0); n < 40; n++ {
		if isPrime(n) {
			got = append(got, n)
		}
	}
	want := []uint64{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("primes below 40 (-want +got):\n%s", diff)
	}
	for n, want := range map[uint64]bool{65537: true, 65539: true, 65536: false, 4999999: true, 5000011: true, 1000001: false} {
		if got := isPrime(n); got != want {
			t.Errorf("isPrime(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestIsJWTClaimKey(t *testing.T) {
	for k, want := range map[string]bool{
		"@request.auth.claims.group":    true,
		"@request.auth.claims[group]":   true,
		"@request.auth.claims.a.b":      true,
		"@request.auth.claims":          false,
		"@request.auth.claims.":         false,
		"@request.auth.claimsgroup":     false,
		"x-request.auth.claims.group":   false,
		"request.auth.claims.something": false,
	} {
		if got := isJWTClaimKey(k); got != want {
			t.Errorf("isJWTClaimKey(%q) = %v, want %v", k, got, want)
		}
	}
}

// TestValidateLimits covers the size limits that are impractical to write
// into the golden files: regex length and direct-response body size.
func TestValidateLimits(t *testing.T) {
	vs := func(match, body string) string {
		return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: limits
spec:
  hosts: [reviews]
  http:
  - match:
    - uri:
        regex: %q
    directResponse:
      status: 200
      body:
        string: %q
`, match, body)
	}
	tests := []struct {
		name, match, body string
		want              []string // "severity field" of each finding
	}{
		{name: "within limits", match: strings.Repeat("a", maxRegexLen), body: strings.Repeat("b", warnDirectResponseBody)},
		{name: "long regex", match: strings.Repeat("a", maxRegexLen+1), body: "ok",
			want: []string{"error spec.http[0].match[0].uri.regex"}},
		{name: "large body", match: "/x", body: strings.Repeat("b", warnDirectResponseBody+1),
			want: []string{"warning spec.http[0].directResponse.body.string"}},
		{name: "too large body", match: "/x", body: strings.Repeat("b", maxDirectResponseBody+1),
			want: []string{"error spec.http[0].directResponse.body.string"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, diags := LoadBytes("limits.yaml", []byte(vs(tc.match, tc.body)), LoadOptions{})
			if len(diags) > 0 {
				t.Fatalf("LoadBytes: %v", diags)
			}
			var got []string
			for _, d := range Validate(set, ValidateOptions{}) {
				got = append(got, string(d.Severity)+" "+d.Field)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate findings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadAcceptsGoDurations checks that durations decode the way Istio's
// decoder reads them (time.ParseDuration), not only protojson's "180s".
func TestLoadAcceptsGoDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"3m":     3 * time.Minute,
		"1h30m":  90 * time.Minute,
		"1500ms": 1500 * time.Millisecond,
		"0.5s":   500 * time.Millisecond,
		"180s":   180 * time.Second,
		"2h":     2 * time.Hour,
	} {
		t.Run(in, func(t *testing.T) {
			doc := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: d
spec:
  hosts: [reviews]
  http:
  - timeout: %s
    route:
    - destination:
        host: reviews
`, in)
			set, diags := LoadBytes("d.yaml", []byte(doc), LoadOptions{})
			if diags.HasErrors() || len(set.Resources) != 1 {
				t.Fatalf("LoadBytes(timeout: %s) = %d resources, %v", in, len(set.Resources), diags)
			}
			if got := set.Resources[0].VirtualService().Http[0].Timeout.AsDuration(); got != want {
				t.Errorf("timeout %s decoded as %v, want %v", in, got, want)
			}
		})
	}
}

// TestValidateCollectsEveryFinding checks that validation does not stop at
// the first problem, within one resource or across resources.
func TestValidateCollectsEveryFinding(t *testing.T) {
	doc := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: a
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
      weight: -1
    - destination:
        host: "*"
    retries:
      attempts: -2
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: b
spec:
  host: reviews
  subsets:
  - name: v1
  - name: v1
`
	set, diags := LoadBytes("many.yaml", []byte(doc), LoadOptions{})
	if len(diags) > 0 {
		t.Fatalf("LoadBytes: %v", diags)
	}
	got := Validate(set, ValidateOptions{})
	got.Sort()
	var fields []string
	for _, d := range got {
		fields = append(fields, d.Kind+" "+d.Field)
	}
	want := []string{
		"VirtualService spec.http[0].route[0].weight",
		"VirtualService spec.http[0].route[1].destination.host",
		"VirtualService spec.http[0].retries.attempts",
		"DestinationRule spec.subsets[1].name",
	}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("Validate findings (-want +got):\n%s", diff)
	}
	for _, d := range got {
		if d.Severity != Error || d.Message == "" || d.Line == 0 || d.File != "many.yaml" {
			t.Errorf("finding %+v: want an error with a message, file and line", d)
		}
	}
}

func checkErr(t *testing.T, call string, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("%s = %v, want nil", call, err)
	case wantErr != "" && err == nil:
		t.Errorf("%s = nil, want an error containing %q", call, wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Errorf("%s = %v, want an error containing %q", call, err, wantErr)
	}
}
