package compile

import (
	"fmt"
	"net/textproto"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// Pseudo headers the request-line conditions of a match become (istio
// route.go TranslateRouteMatch).
const (
	headerMethod    = ":method"
	headerAuthority = ":authority"
	headerScheme    = ":scheme"
)

// jwtClaimPrefix marks header matches on JWT claims, which Istio turns
// into dynamic-metadata matchers fed by its RequestAuthentication filter.
const jwtClaimPrefix = "@request.auth.claims"

// matchError is a match that cannot be compiled; field is relative to the
// match ("uri", "headers[x-id]").
type matchError struct {
	field string
	msg   string
}

func (e *matchError) Error() string { return e.field + ": " + e.msg }

// sourceMatches applies the config-time conditions of an HTTP match for
// the proxy (istio route.go sourceMatchHTTP). A match that lists gateways
// applies only on those gateways ("mesh" for sidecars) and, as in Istio,
// its sourceLabels and sourceNamespace are then not consulted. Otherwise
// the proxy's labels must include sourceLabels and its namespace must equal
// sourceNamespace when one is given. Short gateway names resolve in ns.
func sourceMatches(m *networking.HTTPMatchRequest, ns, gateway string, proxy routing.Proxy) bool {
	if m == nil {
		return true
	}
	if len(m.Gateways) > 0 {
		for _, g := range m.Gateways {
			if resolveGatewayName(g, ns) == gateway {
				return true
			}
		}
		return false
	}
	if !registry.LabelsMatch(m.SourceLabels, proxy.Labels) {
		return false
	}
	return m.SourceNamespace == "" || m.SourceNamespace == proxy.Namespace
}

// compileMatch translates the per-request conditions of an
// HTTPMatchRequest; nil matches every request. Headers and withoutHeaders
// are sorted by name, then the method, authority and scheme conditions
// follow, in the order Istio emits them.
func compileMatch(m *networking.HTTPMatchRequest) (routing.Match, error) {
	if m == nil {
		return routing.NewPathMatch(routing.PathAny, "", false)
	}
	kind, value := routing.PathAny, ""
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		kind, value = routing.PathExact, u.Exact
	case *networking.StringMatch_Prefix:
		kind, value = routing.PathPrefix, u.Prefix
	case *networking.StringMatch_Regex:
		kind, value = routing.PathRegex, u.Regex
	}
	out, err := routing.NewPathMatch(kind, value, m.IgnoreUriCase)
	if err != nil {
		return out, &matchError{field: "uri", msg: err.Error()}
	}

	headers, err := headerMatches("headers", m.Headers, false)
	if err != nil {
		return out, err
	}
	without, err := headerMatches("withoutHeaders", m.WithoutHeaders, true)
	if err != nil {
		return out, err
	}
	headers = append(headers, without...)
	sort.SliceStable(headers, func(i, j int) bool { return headers[i].Name < headers[j].Name })
	for _, pseudo := range []struct {
		name, field string
		sm          *networking.StringMatch
	}{
		{headerMethod, "method", m.Method},
		{headerAuthority, "authority", m.Authority},
		{headerScheme, "scheme", m.Scheme},
	} {
		if pseudo.sm == nil {
			continue
		}
		sm, err := stringMatch(pseudo.sm)
		if err != nil {
			return out, &matchError{field: pseudo.field, msg: err.Error()}
		}
		headers = append(headers, routing.HeaderMatch{Name: pseudo.name, Match: sm})
	}
	out.Headers = headers

	for _, name := range sortedKeys(m.QueryParams) {
		sm, err := stringMatch(m.QueryParams[name])
		if err != nil {
			return out, &matchError{field: fmt.Sprintf("queryParams[%s]", name), msg: err.Error()}
		}
		out.QueryParams = append(out.QueryParams, routing.QueryMatch{Name: name, Match: sm})
	}
	return out, nil
}

// headerMatches compiles a headers or withoutHeaders map, sorted by name.
// The keys uri, scheme, method and authority are not headers in Istio's
// API and are skipped. JWT claim conditions cannot be evaluated by michi,
// so a match using one is refused rather than silently widened.
func headerMatches(field string, in map[string]*networking.StringMatch, invert bool) ([]routing.HeaderMatch, error) {
	var out []routing.HeaderMatch
	for _, name := range sortedKeys(in) {
		switch strings.ToLower(name) {
		case "uri", "scheme", "method", "authority":
			continue
		}
		if strings.HasPrefix(name, jwtClaimPrefix) {
			return nil, &matchError{field: fmt.Sprintf("%s[%s]", field, name),
				msg: "JWT claim matching needs Istio's RequestAuthentication, which michi does not implement; the match is dropped"}
		}
		sm, err := stringMatch(in[name])
		if err != nil {
			return nil, &matchError{field: fmt.Sprintf("%s[%s]", field, name), msg: err.Error()}
		}
		out = append(out, routing.HeaderMatch{Name: textproto.CanonicalMIMEHeaderKey(name), Match: sm, Invert: invert})
	}
	return out, nil
}

// stringMatch compiles a header or query StringMatch. An empty match ({})
// and regex "*" test presence (istio route.go canBeConvertedToPresentMatch).
func stringMatch(sm *networking.StringMatch) (routing.StringMatch, error) {
	switch m := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return routing.NewStringMatch(routing.MatchExact, m.Exact, false)
	case *networking.StringMatch_Prefix:
		return routing.NewStringMatch(routing.MatchPrefix, m.Prefix, false)
	case *networking.StringMatch_Regex:
		if m.Regex == "*" {
			return routing.NewStringMatch(routing.MatchPresent, "", false)
		}
		return routing.NewStringMatch(routing.MatchRegex, m.Regex, false)
	}
	return routing.NewStringMatch(routing.MatchPresent, "", false)
}
