package routing

import (
	"fmt"
	"net/http"
	"testing"
)

func mustPath(t testing.TB, kind PathKind, v string, ci bool) Match {
	t.Helper()
	m, err := NewPathMatch(kind, v, ci)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStringMatch(t *testing.T) {
	tests := []struct {
		name  string
		m     StringMatch
		in    string
		match bool
	}{
		{"exact hit", MustStringMatch(MatchExact, "jason", false), "jason", true},
		{"exact is case sensitive", MustStringMatch(MatchExact, "jason", false), "Jason", false},
		{"exact ignore case", MustStringMatch(MatchExact, "Jason", true), "jASON", true},
		{"prefix hit", MustStringMatch(MatchPrefix, "/api", false), "/api/v1", true},
		{"prefix is not segment aware", MustStringMatch(MatchPrefix, "/api", false), "/apiary", true},
		{"prefix miss", MustStringMatch(MatchPrefix, "/api", false), "/ap", false},
		{"prefix ignore case", MustStringMatch(MatchPrefix, "/API", true), "/api/x", true},
		{"regex is a full match", MustStringMatch(MatchRegex, `\d+`, false), "a123", false},
		{"regex full match hit", MustStringMatch(MatchRegex, `\d+`, false), "123", true},
		{"regex alternation anchored", MustStringMatch(MatchRegex, `a|b`, false), "ab", false},
		{"regex (?i)", MustStringMatch(MatchRegex, `(?i)jason`, false), "JASON", true},
		{"present", StringMatch{Kind: MatchPresent}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.Matches(tc.in); got != tc.match {
				t.Errorf("Matches(%q) = %v, want %v", tc.in, got, tc.match)
			}
		})
	}
}

func TestMatchHeadersAndQuery(t *testing.T) {
	m := mustPath(t, PathPrefix, "/", false)
	m.Headers = []HeaderMatch{
		{Name: "End-User", Match: MustStringMatch(MatchExact, "jason", false)},
		{Name: "X-Canary", Match: StringMatch{Kind: MatchPresent}, Invert: true},
		{Name: "X-Env", Match: MustStringMatch(MatchExact, "prod", false), Invert: true},
		{Name: ":method", Match: MustStringMatch(MatchExact, "GET", false)},
	}
	m.QueryParams = []QueryMatch{{Name: "v", Match: MustStringMatch(MatchRegex, `\d+`, false)}}
	base := func() *Request {
		return &Request{Method: "GET", Path: "/x", RawQuery: "a=1&v=42", Header: http.Header{"End-User": {"jason"}}}
	}
	tests := []struct {
		name   string
		mutate func(r *Request)
		match  bool
	}{
		{"all hold", func(r *Request) {}, true},
		{"header value differs", func(r *Request) { r.Header.Set("End-User", "bob") }, false},
		{"header missing", func(r *Request) { r.Header.Del("End-User") }, false},
		{"withoutHeaders presence violated", func(r *Request) { r.Header.Set("X-Canary", "1") }, false},
		{"withoutHeaders value violated", func(r *Request) { r.Header.Set("X-Env", "prod") }, false},
		{"withoutHeaders other value ok", func(r *Request) { r.Header.Set("X-Env", "dev") }, true},
		{"method differs", func(r *Request) { r.Method = "POST" }, false},
		{"query regex fails", func(r *Request) { r.RawQuery = "v=4x" }, false},
		{"query missing", func(r *Request) { r.RawQuery = "" }, false},
		{"query escaped", func(r *Request) { r.RawQuery = "%76=7" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.mutate(r)
			if got := m.Matches(r); got != tc.match {
				t.Errorf("Matches = %v, want %v (explain: %q)", got, tc.match, m.Explain(r))
			}
			if (m.Explain(r) == "") != tc.match {
				t.Errorf("Explain = %q disagrees with Matches = %v", m.Explain(r), tc.match)
			}
		})
	}
}

func TestExplainIgnoreCase(t *testing.T) {
	m := mustPath(t, PathPrefix, "/API", true)
	got := m.Explain(&Request{Path: "/other"})
	want := `uri prefix "/api" (ignoring case) does not match path "/other"`
	if got != want {
		t.Errorf("Explain = %q, want %q", got, want)
	}
	if got := m.Explain(&Request{Path: "/Api/x"}); got != "" {
		t.Errorf("Explain(/Api/x) = %q, want a match", got)
	}
}

func TestWithoutHeadersMissingTreatedAsEmpty(t *testing.T) {
	m := Match{PathKind: PathAny, Headers: []HeaderMatch{
		{Name: "X-Env", Match: MustStringMatch(MatchExact, "", false), Invert: true},
	}}
	if m.Matches(&Request{Path: "/", Header: http.Header{}}) {
		t.Error("withoutHeaders exact \"\" matched a request without the header; Envoy treats it as empty")
	}
	if !m.Matches(&Request{Path: "/", Header: http.Header{"X-Env": {"a"}}}) {
		t.Error("withoutHeaders exact \"\" did not match a non-empty header")
	}
}

// TestIndexFirstMatchWins checks that the index returns exactly what a
// linear first-match scan returns, for mixes of every path kind.
func TestIndexFirstMatchWins(t *testing.T) {
	var routes []*Route
	add := func(m Match) { routes = append(routes, &Route{Match: m}) }
	add(mustPath(t, PathExact, "/a/b", false))
	add(mustPath(t, PathPrefix, "/a", false))
	add(mustPath(t, PathPrefix, "/a/b", false))
	add(mustPath(t, PathRegex, "/a/.*", false))
	add(mustPath(t, PathExact, "/A/B", true))
	add(mustPath(t, PathPrefix, "/CI", true))
	hm := mustPath(t, PathPrefix, "/h", false)
	hm.Headers = []HeaderMatch{{Name: "X", Match: MustStringMatch(MatchExact, "1", false)}}
	add(hm)
	add(mustPath(t, PathPrefix, "/h", false))
	add(mustPath(t, PathPrefix, "/", false))
	vh := NewVirtualHost("v", []string{"v"}, "", routes)
	paths := []string{"/a/b", "/a", "/a/bc", "/a/x", "/a/B", "/ci/x", "/CIx", "/h", "/hx", "/", "/zzz", "/A/b", ""}
	for _, p := range paths {
		for _, hdr := range []string{"", "1"} {
			r := &Request{Path: p, Header: http.Header{}}
			if hdr != "" {
				r.Header.Set("X", hdr)
			}
			want := -1
			for i, rt := range routes {
				if rt.Match.Matches(r) {
					want = i
					break
				}
			}
			_, got := vh.Match(r)
			if got != want {
				t.Errorf("Match(path %q, X=%q) = route %d, want %d", p, hdr, got, want)
			}
		}
	}
}

func TestRouteConfigLookup(t *testing.T) {
	reviews := &VirtualHost{Name: "reviews", Domains: []string{"reviews.default.svc.cluster.local", "reviews", "10.0.0.1"}}
	wild := &VirtualHost{Name: "wild", Domains: []string{"*.example.com"}}
	narrow := &VirtualHost{Name: "narrow", Domains: []string{"*.api.example.com"}}
	any := &VirtualHost{Name: "any", Domains: []string{"*"}}
	rc := NewRouteConfig(80, []*VirtualHost{reviews, wild, narrow, any})
	tests := []struct{ host, want string }{
		{"reviews", "reviews"},
		{"Reviews:9080", "reviews"},
		{"reviews.default.svc.cluster.local:80", "reviews"},
		{"10.0.0.1:80", "reviews"},
		{"a.example.com", "wild"},
		{"x.api.example.com", "narrow"},
		{"example.com", "any"},
		{"other", "any"},
		{"[::1]:80", "any"},
	}
	for _, tc := range tests {
		got := rc.Lookup(tc.host)
		if got == nil || got.Name != tc.want {
			t.Errorf("Lookup(%q) = %v, want %s", tc.host, got, tc.want)
		}
	}
}

func TestRegexRewrite(t *testing.T) {
	rw, err := NewRegexRewrite(`^/service/([^/]+)(/.*)$`, `\2/instance/\1`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rw.Apply("/service/foo/v1/api"), "/v1/api/instance/foo"; got != want {
		t.Errorf("Apply = %q, want %q", got, want)
	}
}

func BenchmarkVirtualHostLookup(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		var vhosts []*VirtualHost
		for i := 0; i < n; i++ {
			h := fmt.Sprintf("svc-%d.ns.svc.cluster.local", i)
			vhosts = append(vhosts, &VirtualHost{Name: h, Domains: []string{h, fmt.Sprintf("svc-%d", i)}})
		}
		rc := NewRouteConfig(80, vhosts)
		host := fmt.Sprintf("svc-%d:80", n/2)
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if rc.Lookup(host) == nil {
					b.Fatal("no vhost")
				}
			}
		})
	}
}

func BenchmarkRouteMatch(b *testing.B) {
	for _, n := range []int{1, 1000} {
		var routes []*Route
		for i := 0; i < n; i++ {
			m := mustPath(b, PathPrefix, fmt.Sprintf("/api/svc%d/", i), false)
			routes = append(routes, &Route{Match: m})
		}
		vh := NewVirtualHost("v", []string{"v"}, "", routes)
		for _, which := range []string{"first", "last"} {
			k := 0
			if which == "last" {
				k = n - 1
			}
			r := &Request{Method: "GET", Path: fmt.Sprintf("/api/svc%d/items/42", k), Header: http.Header{}}
			b.Run(fmt.Sprintf("rules=%d/%s", n, which), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, idx := vh.Match(r); idx != k {
						b.Fatalf("matched %d, want %d", idx, k)
					}
				}
			})
		}
	}
}
