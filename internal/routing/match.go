package routing

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// MatchKind is the kind of a StringMatch.
type MatchKind string

// The StringMatch kinds. Present is Istio's `{}` / `regex: "*"`: the
// header or parameter exists, whatever its value.
const (
	MatchExact   MatchKind = "exact"
	MatchPrefix  MatchKind = "prefix"
	MatchRegex   MatchKind = "regex"
	MatchPresent MatchKind = "present"
)

// StringMatch is a compiled Istio StringMatch. Regexes are RE2 and must
// match the whole value, as Envoy's safe_regex does.
type StringMatch struct {
	Kind       MatchKind `json:"kind"`
	Value      string    `json:"value,omitempty"`
	IgnoreCase bool      `json:"ignoreCase,omitempty"`
	re         *regexp.Regexp
}

// NewStringMatch compiles a StringMatch. ignoreCase applies to exact and
// prefix only, like Envoy's case_sensitive=false (regexes use (?i)).
func NewStringMatch(kind MatchKind, value string, ignoreCase bool) (StringMatch, error) {
	m := StringMatch{Kind: kind, Value: value, IgnoreCase: ignoreCase && (kind == MatchExact || kind == MatchPrefix)}
	switch kind {
	case MatchRegex:
		re, err := regexp.Compile("^(?:" + value + ")$")
		if err != nil {
			return m, err
		}
		m.re = re
	case MatchExact, MatchPrefix, MatchPresent:
	default:
		return m, fmt.Errorf("unknown match kind %q", kind)
	}
	if m.IgnoreCase {
		m.Value = strings.ToLower(value)
	}
	return m, nil
}

// MustStringMatch is NewStringMatch for values known to be valid, such as
// constants in tests.
func MustStringMatch(kind MatchKind, value string, ignoreCase bool) StringMatch {
	m, err := NewStringMatch(kind, value, ignoreCase)
	if err != nil {
		panic(err)
	}
	return m
}

// Matches reports whether s satisfies the match.
func (m *StringMatch) Matches(s string) bool {
	switch m.Kind {
	case MatchExact:
		if m.IgnoreCase {
			return strings.EqualFold(s, m.Value)
		}
		return s == m.Value
	case MatchPrefix:
		if m.IgnoreCase {
			return len(s) >= len(m.Value) && strings.EqualFold(s[:len(m.Value)], m.Value)
		}
		return strings.HasPrefix(s, m.Value)
	case MatchRegex:
		return m.re.MatchString(s)
	case MatchPresent:
		return true
	}
	return false
}

// HeaderMatch matches one request header. Names are compared
// case-insensitively, values case-sensitively, as in Envoy. The pseudo
// headers ":method", ":scheme" and ":authority" match the request line.
type HeaderMatch struct {
	Name  string      `json:"name"`
	Match StringMatch `json:"match"`
	// Invert is Istio's withoutHeaders: the route matches when this does
	// not. A missing header is treated as empty unless Match is a presence
	// match (Envoy treat_missing_header_as_empty).
	Invert bool `json:"invert,omitempty"`
}

// QueryMatch matches one query parameter.
type QueryMatch struct {
	Name  string      `json:"name"`
	Match StringMatch `json:"match"`
}

// PathKind is how the URI path is matched.
type PathKind string

// Path match kinds. PathAny is a rule without a uri match, which Istio
// emits as prefix "/".
const (
	PathAny    PathKind = "any"
	PathExact  PathKind = "exact"
	PathPrefix PathKind = "prefix"
	PathRegex  PathKind = "regex"
)

// Match is one compiled HTTPMatchRequest. All conditions must hold.
// Config-time conditions (port, sourceLabels, sourceNamespace, gateways)
// were applied by the compiler and do not appear here.
type Match struct {
	PathKind    PathKind      `json:"pathKind"`
	Path        StringMatch   `json:"path,omitempty"`
	Headers     []HeaderMatch `json:"headers,omitempty"`
	QueryParams []QueryMatch  `json:"queryParams,omitempty"`
}

// NewPathMatch builds the path part of a Match.
func NewPathMatch(kind PathKind, value string, ignoreCase bool) (Match, error) {
	var m Match
	m.PathKind = kind
	var err error
	switch kind {
	case PathAny:
		m.Path = StringMatch{Kind: MatchPrefix, Value: "/"}
	case PathExact:
		m.Path, err = NewStringMatch(MatchExact, value, ignoreCase)
	case PathPrefix:
		m.Path, err = NewStringMatch(MatchPrefix, value, ignoreCase)
	case PathRegex:
		m.Path, err = NewStringMatch(MatchRegex, value, false)
	default:
		err = fmt.Errorf("unknown path kind %q", kind)
	}
	return m, err
}

// IsCatchAll reports whether the match accepts every request: any path (or
// prefix "/" or regex ".*") and no header or query conditions. Istio stops
// emitting routes after a catch-all (route.go catchAllMatch).
func (m *Match) IsCatchAll() bool {
	if len(m.Headers) > 0 || len(m.QueryParams) > 0 {
		return false
	}
	switch m.PathKind {
	case PathAny:
		return true
	case PathPrefix:
		return m.Path.Value == "/"
	case PathRegex:
		return m.Path.Value == ".*" || m.Path.Value == "*"
	}
	return false
}

// Request is the view of a request that routing decisions use. Path is
// the URL path without the query string, as Envoy matches it.
type Request struct {
	Method    string
	Scheme    string
	Authority string
	Path      string
	RawQuery  string
	Header    http.Header
}

// HeaderValue returns the value a header matcher sees: the pseudo headers
// from the request line, otherwise every value of the header joined with
// "," as Envoy does for repeated headers. ok is false when absent.
func (r *Request) HeaderValue(name string) (value string, ok bool) {
	switch name {
	case ":method":
		return r.Method, true
	case ":scheme":
		return r.Scheme, true
	case ":authority", "Host":
		return r.Authority, r.Authority != ""
	case ":path":
		if r.RawQuery != "" {
			return r.Path + "?" + r.RawQuery, true
		}
		return r.Path, true
	}
	vs, ok := r.Header[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	if len(vs) == 1 {
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// QueryValue returns the first value of the query parameter name.
// It scans the raw query without building a map.
func (r *Request) QueryValue(name string) (string, bool) {
	q := r.RawQuery
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			uk, err := url.QueryUnescape(k)
			if err != nil || uk != name {
				continue
			}
		}
		if strings.ContainsAny(v, "%+") {
			if uv, err := url.QueryUnescape(v); err == nil {
				return uv, true
			}
		}
		return v, true
	}
	return "", false
}

// Matches reports whether the request satisfies every condition.
func (m *Match) Matches(r *Request) bool {
	return m.MatchesPath(r.Path) && m.matchesRest(r)
}

// MatchesPath reports whether the path condition holds.
func (m *Match) MatchesPath(path string) bool {
	if m.PathKind == PathAny {
		return true
	}
	return m.Path.Matches(path)
}

func (m *Match) matchesRest(r *Request) bool {
	for i := range m.Headers {
		if !m.Headers[i].matches(r) {
			return false
		}
	}
	for i := range m.QueryParams {
		q := &m.QueryParams[i]
		v, ok := r.QueryValue(q.Name)
		if !ok || !q.Match.Matches(v) {
			return false
		}
	}
	return true
}

func (h *HeaderMatch) matches(r *Request) bool {
	v, ok := r.HeaderValue(h.Name)
	if h.Match.Kind == MatchPresent {
		return ok != h.Invert
	}
	if !ok {
		if !h.Invert {
			return false
		}
		v = "" // treat_missing_header_as_empty
	}
	return h.Match.Matches(v) != h.Invert
}

// Explain returns a human-readable reason the match fails, or "" when it
// matches. It exists for `michi explain` and uses the same predicates as
// Matches.
func (m *Match) Explain(r *Request) string {
	if !m.MatchesPath(r.Path) {
		if m.Path.IgnoreCase {
			// Value is stored lower-cased; say the comparison ignores case
			// so that the reason does not read as a case mismatch.
			return fmt.Sprintf("uri %s %q (ignoring case) does not match path %q", m.Path.Kind, m.Path.Value, r.Path)
		}
		return fmt.Sprintf("uri %s %q does not match path %q", m.Path.Kind, m.Path.Value, r.Path)
	}
	for i := range m.Headers {
		h := &m.Headers[i]
		if h.matches(r) {
			continue
		}
		v, ok := r.HeaderValue(h.Name)
		what := "header " + strings.ToLower(h.Name)
		if strings.HasPrefix(h.Name, ":") {
			what = strings.TrimPrefix(h.Name, ":")
		}
		switch {
		case h.Invert && h.Match.Kind == MatchPresent:
			return fmt.Sprintf("withoutHeaders: %s is present", what)
		case h.Invert:
			return fmt.Sprintf("withoutHeaders: %s %q matches %s %q", what, v, h.Match.Kind, h.Match.Value)
		case !ok:
			return fmt.Sprintf("%s is absent", what)
		default:
			return fmt.Sprintf("%s %q does not match %s %q", what, v, h.Match.Kind, h.Match.Value)
		}
	}
	for i := range m.QueryParams {
		q := &m.QueryParams[i]
		v, ok := r.QueryValue(q.Name)
		if !ok {
			return fmt.Sprintf("query parameter %s is absent", q.Name)
		}
		if !q.Match.Matches(v) {
			return fmt.Sprintf("query parameter %s %q does not match %s %q", q.Name, v, q.Match.Kind, q.Match.Value)
		}
	}
	return ""
}
