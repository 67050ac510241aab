package config

import (
	"regexp"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// httpRoute checks one HTTP rule of a VirtualService (Istio
// validateHTTPRoute).
func (v *validator) httpRoute(p string, r *networking.HTTPRoute, c *vsContext) {
	v.httpAction(p, r, c)
	for i, m := range r.Match {
		v.httpMatch(index(p+".match", i), m, c)
	}
	v.headerOperations(p+".headers", r.Headers)
	v.authorityRewrite(p, r)
	v.httpDestinations(p+".route", r.Route)
	v.mirrors(p, r)
	v.redirect(p, r)
	v.directResponse(p+".directResponse", r.DirectResponse)
	v.rewrite(p, r)
	v.retries(p+".retries", r.Retries)
	v.fault(p+".fault", r.Fault)
	v.cors(p+".corsPolicy", r.CorsPolicy)
	if r.Timeout != nil && r.Timeout.AsDuration() == 0 {
		v.errorf(p+".timeout", "0s is not allowed (Istio requires at least 1ms); omit timeout to leave requests without one, which is Istio's default")
	} else {
		v.duration(p+".timeout", r.Timeout)
	}
}

// httpAction checks that the rule does exactly one thing: forward
// (route), redirect, answer (directResponse) or hand over to a delegate
// VirtualService (Istio validateHTTPRouteConflict). It also warns about
// settings that only apply to forwarded requests on a rule that does not
// forward: Istio translates such a rule without them.
func (v *validator) httpAction(p string, r *networking.HTTPRoute, c *vsContext) {
	hasRoute := len(r.Route) > 0
	switch {
	case r.Delegate != nil:
		if c.delegate {
			v.errorf(p+".delegate", "a delegate VirtualService cannot delegate again: delegation is one level deep")
		}
		for _, f := range []struct {
			set  bool
			name string
		}{{hasRoute, "route"}, {r.Redirect != nil, "redirect"}, {r.DirectResponse != nil, "directResponse"}} {
			if f.set {
				v.errorf(p+"."+f.name, "cannot be combined with delegate: a delegating rule takes its action from the delegate VirtualService")
			}
		}
		d := r.Delegate
		switch {
		case d.Name == "":
			v.errorf(p+".delegate.name", "required: name the delegate VirtualService")
		case !isDNS1123Subdomain(d.Name):
			v.errorf(p+".delegate.name", "invalid name %q: %s", d.Name, dns1123SubdomainRule)
		}
		if d.Namespace != "" && !isDNS1123Label(d.Namespace) {
			v.errorf(p+".delegate.namespace", "invalid namespace %q: %s", d.Namespace, dns1123LabelRule)
		}
		return
	case r.Redirect != nil:
		v.exclusive(p, "redirect", []bool{hasRoute, r.DirectResponse != nil, r.Fault != nil, r.Rewrite != nil},
			[]string{"route", "directResponse", "fault", "rewrite"})
		v.notForwarded(p, r, "a redirect")
	case r.DirectResponse != nil:
		v.exclusive(p, "directResponse", []bool{hasRoute, r.Fault != nil, r.Rewrite != nil},
			[]string{"route", "fault", "rewrite"})
		v.notForwarded(p, r, "a direct response")
	case !hasRoute:
		v.errorf(p, "the rule has no action: set route, redirect, directResponse or delegate")
	}
}

func (v *validator) exclusive(p, action string, set []bool, names []string) {
	for i, s := range set {
		if s {
			v.errorf(p+"."+names[i], "cannot be combined with %s", action)
		}
	}
}

// notForwarded warns about forwarding settings on a rule that answers
// by itself: Istio builds a redirect or direct-response route action,
// which has no timeout, retry or mirror policy.
func (v *validator) notForwarded(p string, r *networking.HTTPRoute, what string) {
	for _, f := range []struct {
		set  bool
		name string
	}{
		{r.Timeout != nil, "timeout"},
		{r.Retries != nil, "retries"},
		{r.Mirror != nil, "mirror"},
		{len(r.Mirrors) > 0, "mirrors"},
	} {
		if f.set {
			v.warnf(p+"."+f.name, "has no effect: the rule answers with %s and never forwards the request", what)
		}
	}
}

// httpDestinations checks the weighted destinations of an HTTP rule.
// Weights are relative: each destination gets weight/sum. With more than
// one destination, zero-weight ones are dropped and a zero total is an
// error (Istio validateHTTPRouteDestinations, route.go).
func (v *validator) httpDestinations(p string, ds []*networking.HTTPRouteDestination) {
	weights := make([]int32, len(ds))
	for i, d := range ds {
		dp := index(p, i)
		v.destination(dp+".destination", d.Destination, true)
		v.headerOperations(dp+".headers", d.Headers)
		weights[i] = d.Weight
	}
	v.weights(p, weights)
}

// httpMatch checks one match condition of an HTTP rule.
func (v *validator) httpMatch(p string, m *networking.HTTPMatchRequest, c *vsContext) {
	v.stringMatch(p+".uri", m.Uri, matchURI)
	v.stringMatch(p+".scheme", m.Scheme, matchPseudoHeader)
	v.stringMatch(p+".method", m.Method, matchPseudoHeader)
	v.stringMatch(p+".authority", m.Authority, matchPseudoHeader)
	v.headerMatches(p+".headers", m.Headers, c)
	v.headerMatches(p+".withoutHeaders", m.WithoutHeaders, c)
	for _, k := range sortedKeys(m.QueryParams) {
		kp := mapKey(p+".queryParams", k)
		if k == "" {
			v.errorf(kp, "query parameter name must not be empty")
		}
		v.stringMatch(kp, m.QueryParams[k], matchPresence)
	}
	if m.IgnoreUriCase && m.Uri.GetRegex() != "" {
		// Envoy's case_sensitive flag applies to path and prefix matches
		// only; a regex is matched as written.
		v.warnf(p+".ignoreUriCase", "has no effect on a regex uri match; use (?i) in the regex")
	}
	v.optionalPort(p+".port", m.Port)
	v.selectors(p, m.SourceLabels, m.Gateways, m.SourceNamespace, c.spec.Gateways)
}

// pseudoHeaderKeys are header names Istio ignores in match.headers: the
// match has dedicated fields for them (virtual_service.proto, headers).
var pseudoHeaderKeys = map[string]string{"uri": "uri", "scheme": "scheme", "method": "method", "authority": "authority"}

// headerMatches checks match.headers or match.withoutHeaders.
func (v *validator) headerMatches(p string, hs map[string]*networking.StringMatch, c *vsContext) {
	for _, k := range sortedKeys(hs) {
		kp := mapKey(p, k)
		switch {
		case k == "":
			v.errorf(kp, "header name must not be empty")
			continue
		case isJWTClaimKey(k):
			// Matched against the validated JWT's claims, which only
			// gateways see (Istio ValidateVirtualService).
			if !c.gatewayOnly {
				v.errorf(kp, "JWT claim routing (%s) is only supported on gateways: list gateways without \"mesh\"", k)
			}
		case pseudoHeaderKeys[k] != "":
			v.warnf(kp, "ignored: Istio does not match a header named %q; use the match's %s field", k, pseudoHeaderKeys[k])
		case strings.HasPrefix(k, ":"):
			switch k {
			case ":method", ":scheme", ":authority", ":path":
			case ":status":
				v.warnf(kp, "never matches: :status is a response pseudo-header and requests do not carry it")
			default:
				v.errorf(kp, "unknown pseudo-header %q: requests carry :method, :scheme, :authority and :path", k)
			}
		case !isHeaderToken(k):
			v.errorf(kp, "invalid header name %q: must be an RFC 7230 token (letters, digits and !#$%%&'*+-.^_`|~)", k)
		}
		v.stringMatch(kp, hs[k], matchPresence)
	}
}

// isJWTClaimKey reports "@request.auth.claims.x" and
// "@request.auth.claims[x]" keys.
func isJWTClaimKey(k string) bool {
	rest, ok := strings.CutPrefix(k, "@request.auth.claims")
	return ok && len(rest) > 1 && (rest[0] == '.' || rest[0] == '[')
}

// matchKind says what a StringMatch is used for, which decides what an
// empty one means and whether an empty prefix is allowed.
type matchKind int

const (
	// matchURI is match.uri: an empty prefix is Envoy's catch-all.
	matchURI matchKind = iota
	// matchPseudoHeader is match.scheme, method or authority.
	matchPseudoHeader
	// matchPresence is a header or query parameter: {} or regex "*"
	// means "present".
	matchPresence
	// matchOrigin is a CORS allowOrigins entry, which must say something.
	matchOrigin
)

// maxRegexLen is Istio's limit on regex length. Envoy limits the compiled
// RE2 program size; the length is Istio's stand-in (validateStringRegexp).
const maxRegexLen = 1024

// stringMatch checks a StringMatch (Istio validateStringMatch).
func (v *validator) stringMatch(p string, sm *networking.StringMatch, kind matchKind) {
	if sm == nil {
		return
	}
	switch t := sm.MatchType.(type) {
	case nil:
		switch kind {
		case matchURI, matchPseudoHeader:
			v.warnf(p, "an empty match matches every request; set exact, prefix or regex")
		case matchOrigin:
			v.errorf(p, "set exact, prefix or regex: an empty origin match is not allowed")
		}
	case *networking.StringMatch_Exact:
		if t.Exact == "" && kind == matchOrigin {
			v.errorf(p+".exact", "must not be empty")
		}
	case *networking.StringMatch_Prefix:
		// Envoy's route prefix may be empty; header and other string
		// matchers reject an empty prefix (Istio validateStringMatch).
		if t.Prefix == "" && kind != matchURI {
			v.errorf(p+".prefix", "must not be empty; omit the match, or use {} to match any value")
		}
	case *networking.StringMatch_Regex:
		if t.Regex == "*" && kind == matchPresence {
			return // Istio's spelling of "present"
		}
		v.regex(p+".regex", t.Regex)
	}
}

// regex checks an RE2 regular expression. Go's regexp implements RE2
// syntax, which is what Envoy's safe_regex uses.
func (v *validator) regex(p, re string) {
	switch {
	case re == "":
		v.errorf(p, "must not be empty")
	case len(re) > maxRegexLen:
		v.errorf(p, "regex is %d characters long: at most %d are allowed", len(re), maxRegexLen)
	default:
		if _, err := regexp.Compile(re); err != nil {
			v.errorf(p, "invalid RE2 regex %q: %s (see https://github.com/google/re2/wiki/Syntax)", re, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
	}
}
