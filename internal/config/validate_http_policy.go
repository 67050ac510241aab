package config

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// headerOperations checks request and response header operations (Istio
// ValidateHTTPHeaderWithAuthorityOperationName,
// ValidateHTTPHeaderOperationName, ValidateHTTPHeaderValue). Envoy cannot
// change pseudo-headers or Host, except that setting :authority or host on
// the request is Istio's spelling of a host rewrite.
func (v *validator) headerOperations(p string, h *networking.Headers) {
	if h == nil {
		return
	}
	if req := h.Request; req != nil {
		rp := p + ".request"
		v.headerSets(rp+".set", req.Set, true)
		v.headerSets(rp+".add", req.Add, true)
		v.headerRemoves(rp+".remove", req.Remove)
	}
	if resp := h.Response; resp != nil {
		rp := p + ".response"
		v.headerSets(rp+".set", resp.Set, false)
		v.headerSets(rp+".add", resp.Add, false)
		v.headerRemoves(rp+".remove", resp.Remove)
	}
}

func (v *validator) headerSets(p string, m map[string]string, request bool) {
	for _, k := range sortedKeys(m) {
		kp := mapKey(p, k)
		// Setting the request authority is a host rewrite, which
		// authorityRewrite checks.
		if !request || !isAuthorityHeader(k) {
			v.headerOperationName(kp, k)
		}
		if err := checkHeaderValue(m[k]); err != nil {
			v.errorf(kp, "invalid header value %q: %v", m[k], err)
		}
	}
}

func (v *validator) headerRemoves(p string, names []string) {
	for i, n := range names {
		v.headerOperationName(index(p, i), n)
	}
}

func (v *validator) headerOperationName(p, name string) {
	switch {
	case name == "":
		v.errorf(p, "header name must not be empty")
	case strings.EqualFold(name, "host"):
		v.errorf(p, "the Host header cannot be changed here; rewrite the host with rewrite.authority or request.set[\":authority\"]")
	case strings.HasPrefix(name, ":"):
		v.errorf(p, "pseudo-header %q cannot be changed", name)
	case !isHeaderToken(name):
		v.errorf(p, "invalid header name %q: must be an RFC 7230 token", name)
	}
}

func isAuthorityHeader(k string) bool {
	return strings.EqualFold(k, ":authority") || strings.EqualFold(k, "host")
}

// checkHeaderValue checks a header value the way Envoy parses it: control
// characters are not allowed, and "%" starts a %VARIABLE% or
// %VARIABLE(args)% expression unless it is doubled (Envoy header_parser.cc,
// ported by Istio as validateHeaderValue).
func checkHeaderValue(val string) error {
	for i := 0; i < len(val); i++ {
		if c := val[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return errors.New("control characters are not allowed")
		}
	}
	for i := 0; i < len(val); i++ {
		if val[i] != '%' {
			continue
		}
		if i+1 < len(val) && val[i+1] == '%' {
			i++ // "%%" is a literal "%"
			continue
		}
		end, err := scanHeaderVariable(val, i+1)
		if err != nil {
			return err
		}
		i = end
	}
	return nil
}

var errUnterminatedVariable = errors.New(`unterminated %VARIABLE% expression; write "%%" for a literal "%"`)

// scanHeaderVariable scans the expression after an opening "%" and returns
// the index of its closing "%".
func scanHeaderVariable(val string, i int) (int, error) {
	for ; i < len(val); i++ {
		switch val[i] {
		case '%':
			return i, nil
		case '(':
			close, err := scanHeaderArgs(val, i+1)
			if err != nil {
				return 0, err
			}
			for i = close + 1; i < len(val) && val[i] == ' '; i++ {
			}
			if i == len(val) || val[i] != '%' {
				return 0, errUnterminatedVariable
			}
			return i, nil
		}
	}
	return 0, errUnterminatedVariable
}

// scanHeaderArgs returns the index of the ")" that closes a variable's
// arguments, skipping JSON strings.
func scanHeaderArgs(val string, i int) (int, error) {
	inString := false
	for ; i < len(val); i++ {
		switch c := val[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && c == ')':
			return i, nil
		}
	}
	return 0, errUnterminatedVariable
}

// authorityRewrite checks that the rule rewrites the authority in at most
// one place (Istio validateAuthorityRewrite) and warns about per-destination
// authority headers that the rule-level rewrite overrides (route.go
// processDestination applies them only when the rule sets none).
func (v *validator) authorityRewrite(p string, r *networking.HTTPRoute) {
	var first string // field path of the first authority rewrite
	if r.Rewrite.GetAuthority() != "" {
		first = p + ".rewrite.authority"
	}
	for _, op := range []string{"set", "add"} {
		m := r.Headers.GetRequest().GetSet()
		if op == "add" {
			m = r.Headers.GetRequest().GetAdd()
		}
		for _, k := range sortedKeys(m) {
			if !isAuthorityHeader(k) {
				continue
			}
			kp := mapKey(p+".headers.request."+op, k)
			if first != "" {
				v.errorf(kp, "the authority is already rewritten by %s; set it in one place", first)
				continue
			}
			first = kp
		}
	}
	if first == "" {
		return
	}
	for i, d := range r.Route {
		for _, op := range []string{"set", "add"} {
			m := d.Headers.GetRequest().GetSet()
			if op == "add" {
				m = d.Headers.GetRequest().GetAdd()
			}
			for _, k := range sortedKeys(m) {
				if isAuthorityHeader(k) {
					v.warnf(mapKey(index(p+".route", i)+".headers.request."+op, k), "ignored: %s already rewrites the authority for the whole rule", first)
				}
			}
		}
	}
}

// mirrors checks mirror, mirrors and the mirror percentages.
func (v *validator) mirrors(p string, r *networking.HTTPRoute) {
	v.destination(p+".mirror", r.Mirror, false)
	if r.Mirror != nil && len(r.Mirrors) > 0 {
		v.errorf(p+".mirrors", "cannot be combined with mirror; move the mirror into mirrors")
	}
	for i, m := range r.Mirrors {
		mp := index(p+".mirrors", i)
		v.destination(mp+".destination", m.Destination, true)
		v.percent(mp+".percentage", m.Percentage)
	}
	if r.MirrorPercent != nil {
		v.warnf(p+".mirrorPercent", "deprecated; use mirrorPercentage")
		if n := r.MirrorPercent.GetValue(); n > 100 {
			v.errorf(p+".mirrorPercent", "must be between 0 and 100, found %d", n)
		}
	}
	v.percent(p+".mirrorPercentage", r.MirrorPercentage)
	if r.Mirror == nil && (r.MirrorPercentage != nil || r.MirrorPercent != nil) {
		field := p + ".mirrorPercentage"
		if r.MirrorPercentage == nil {
			field = p + ".mirrorPercent"
		}
		if len(r.Mirrors) > 0 {
			v.warnf(field, "has no effect on mirrors; set percentage on each mirrors entry")
		} else {
			v.warnf(field, "has no effect without mirror")
		}
	}
}

// redirect checks an HTTP redirect (Istio validateHTTPRedirect, route.go
// ApplyRedirect).
func (v *validator) redirect(p string, r *networking.HTTPRoute) {
	rd := r.Redirect
	if rd == nil {
		return
	}
	rp := p + ".redirect"
	if rd.Uri == "" && rd.PrefixRewrite == "" && rd.Authority == "" && rd.Scheme == "" && rd.RedirectPort == nil {
		v.errorf(rp, "a redirect must change something: set uri, prefixRewrite, authority, scheme, port or derivePort")
	}
	if rd.Uri != "" && rd.PrefixRewrite != "" {
		v.errorf(rp+".prefixRewrite", "cannot be combined with uri: uri replaces the whole path, prefixRewrite only the matched prefix")
	}
	if rd.PrefixRewrite != "" {
		// Envoy's redirect prefix_rewrite needs a prefix route match.
		for i, m := range r.Match {
			switch m.GetUri().GetMatchType().(type) {
			case *networking.StringMatch_Exact:
				v.errorf(index(p+".match", i)+".uri", "redirect.prefixRewrite needs prefix uri matches, but this match is exact; use redirect.uri")
			case *networking.StringMatch_Regex:
				v.errorf(index(p+".match", i)+".uri", "redirect.prefixRewrite needs prefix uri matches, but this match is a regex")
			}
		}
	}
	switch c := rd.RedirectCode; {
	case c == 0, c == 301, c == 302, c == 303, c == 307, c == 308:
	case c >= 300 && c <= 399:
		v.errorf(rp+".redirectCode", "redirect code %d is not supported: use 301, 302, 303, 307 or 308 (Istio accepts other 3xx codes but silently drops the whole route)", c)
	default:
		v.errorf(rp+".redirectCode", "%d is not a redirect code: use 301, 302, 303, 307 or 308", c)
	}
	if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
		v.errorf(rp+".scheme", `must be "http" or "https", found %q`, rd.Scheme)
	}
	if port, ok := rd.RedirectPort.(*networking.HTTPRedirect_Port); ok {
		if port.Port == 0 {
			v.warnf(rp+".port", "has no effect: port 0 keeps the request's port; omit it")
		} else {
			v.port(rp+".port", port.Port)
		}
	}
}

// Direct-response body limits: Istio raises Envoy's 4KB limit to 1MB and
// warns above 100KB, because every body is pushed to every proxy
// (validateHTTPDirectResponse).
const (
	maxDirectResponseBody  = 1 << 20
	warnDirectResponseBody = 100 << 10
)

func (v *validator) directResponse(p string, dr *networking.HTTPDirectResponse) {
	if dr == nil {
		return
	}
	switch {
	case dr.Status == 0:
		v.errorf(p+".status", "required: the HTTP status to answer with")
	case dr.Status < 200 || dr.Status > 599:
		v.errorf(p+".status", "must be between 200 and 599, found %d", dr.Status)
	}
	var size int
	field := p + ".body"
	switch b := dr.GetBody().GetSpecifier().(type) {
	case *networking.HTTPBody_String_:
		size, field = len(b.String_), field+".string"
	case *networking.HTTPBody_Bytes:
		size, field = len(b.Bytes), field+".bytes"
	}
	switch {
	case size > maxDirectResponseBody:
		v.errorf(field, "body is %d bytes: at most 1MB (%d bytes) is allowed", size, maxDirectResponseBody)
	case size > warnDirectResponseBody:
		v.warnf(field, "body is %d bytes: bodies over 100KB are sent to every proxy with each configuration push", size)
	}
}

// rewrite checks a URI/authority rewrite (Istio validateHTTPRewrite).
func (v *validator) rewrite(p string, r *networking.HTTPRoute) {
	rw := r.Rewrite
	if rw == nil {
		return
	}
	rp := p + ".rewrite"
	if rw.Uri == "" && rw.UriRegexRewrite == nil && rw.Authority == "" {
		v.errorf(rp, "a rewrite must change something: set uri, uriRegexRewrite or authority")
	}
	if rw.Uri != "" && rw.UriRegexRewrite != nil {
		v.errorf(rp+".uriRegexRewrite", "cannot be combined with uri")
	}
	if rr := rw.UriRegexRewrite; rr != nil {
		if rr.Match == "" {
			v.errorf(rp+".uriRegexRewrite.match", "required: the regex to replace")
		} else {
			v.regex(rp+".uriRegexRewrite.match", rr.Match)
		}
		if rr.Rewrite == "" {
			v.errorf(rp+".uriRegexRewrite.rewrite", "required: the replacement, which may use \\1 for capture groups")
		}
	}
	if rw.Uri == "/" {
		// Envoy's prefix_rewrite replaces exactly the matched prefix, so
		// "/foo" -> "/" turns "/foo/bar" into "//bar" (istio/istio#26828).
		for i, m := range r.Match {
			pre := m.GetUri().GetPrefix()
			if pre != "" && pre != "/" && !strings.HasSuffix(pre, "/") {
				v.warnf(rp+".uri", "match[%d] prefix %q rewritten to \"/\" turns %q into %q; match prefix %q instead (plus exact %q if needed)",
					i, pre, pre+"/x", "//x", pre+"/", pre)
			}
		}
	}
}

// retryOnPolicies are the retry conditions Envoy accepts in
// x-envoy-retry-on and x-envoy-retry-grpc-on (Istio
// supportedRetryOnPolicies).
var retryOnPolicies = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true,
	"connect-failure": true, "retriable-4xx": true, "refused-stream": true,
	"retriable-status-codes": true, "retriable-headers": true, "envoy-ratelimited": true,
	"http3-post-connect-failure": true,
	// gRPC
	"cancelled": true, "deadline-exceeded": true, "internal": true,
	"resource-exhausted": true, "unavailable": true,
}

// retries checks a retry policy (Istio validateHTTPRetry).
func (v *validator) retries(p string, r *networking.HTTPRetry) {
	if r == nil {
		return
	}
	if r.Attempts < 0 {
		v.errorf(p+".attempts", "must not be negative, found %d", r.Attempts)
	}
	if r.Attempts == 0 {
		var set []string
		if r.PerTryTimeout != nil {
			set = append(set, "perTryTimeout")
		}
		if r.RetryOn != "" {
			set = append(set, "retryOn")
		}
		if r.RetryRemoteLocalities != nil {
			set = append(set, "retryRemoteLocalities")
		}
		if len(set) > 0 {
			verb := "is"
			if len(set) > 1 {
				verb = "are"
			}
			list := strings.Join(set, " and ")
			v.errorf(p+".attempts", "attempts is 0, which disables retries, but %s %s set: set attempts above 0, or remove %s", list, verb, list)
		}
	}
	v.duration(p+".perTryTimeout", r.PerTryTimeout)
	v.duration(p+".backoff", r.Backoff)
	if r.RetryOn == "" {
		return
	}
	for _, tok := range strings.Split(r.RetryOn, ",") {
		if retryOnPolicies[tok] {
			continue
		}
		// A number is a status code to retry on, which Istio moves into
		// retriable_status_codes.
		if code, err := strconv.Atoi(tok); err == nil && code >= 100 && code <= 599 {
			continue
		}
		switch {
		case tok == "":
			v.errorf(p+".retryOn", "empty condition in %q: remove the extra comma", r.RetryOn)
		case strings.TrimSpace(tok) != tok:
			v.errorf(p+".retryOn", "condition %q has spaces: write the list without spaces, like \"5xx,reset\"", tok)
		default:
			var names []string
			for n := range retryOnPolicies {
				names = append(names, n)
			}
			v.errorf(p+".retryOn", "unknown retry condition %q: use Envoy's retry-on names or an HTTP status code%s", tok, suggest(tok, names))
		}
	}
}

// grpcStatusCodes are the gRPC status names an abort may use (Istio
// grpc.SupportedGRPCStatus).
var grpcStatusCodes = []string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// fault checks fault injection (Istio validateHTTPFaultInjection,
// route.go TranslateFault).
func (v *validator) fault(p string, f *networking.HTTPFaultInjection) {
	if f == nil {
		return
	}
	if f.Delay == nil && f.Abort == nil {
		v.errorf(p, "a fault needs delay, abort or both")
	}
	if d := f.Delay; d != nil {
		dp := p + ".delay"
		switch t := d.HttpDelayType.(type) {
		case nil:
			v.errorf(dp+".fixedDelay", "required: how long to delay requests")
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			v.duration(dp+".fixedDelay", t.FixedDelay)
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			v.errorf(dp+".exponentialDelay", "not supported (Istio rejects it as not supported yet); use fixedDelay")
		}
		v.faultPercent(dp+".percentage", d.Percentage)
		v.deprecatedDelayPercent(dp, d.Percent, d.Percentage != nil)
	}
	if a := f.Abort; a != nil {
		ap := p + ".abort"
		switch t := a.ErrorType.(type) {
		case nil:
			v.errorf(ap, "an abort needs an error: set httpStatus or grpcStatus")
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if t.HttpStatus < 200 || t.HttpStatus > 599 {
				v.errorf(ap+".httpStatus", "must be between 200 and 599, found %d", t.HttpStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			v.grpcStatus(ap+".grpcStatus", t.GrpcStatus)
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			v.errorf(ap+".http2Error", "not supported (Istio rejects HTTP/2 abort faults); use httpStatus or grpcStatus")
		}
		v.faultPercent(ap+".percentage", a.Percentage)
		if a.Percentage == nil {
			v.warnf(ap+".percentage", "not set, so no requests are aborted; set percentage.value (100 aborts every request)")
		}
	}
}

// deprecatedDelayPercent handles the deprecated integer delay.percent:
// Istio uses it only when percentage is absent, and its default of 0
// delays nothing.
func (v *validator) deprecatedDelayPercent(p string, pct int32, hasPercentage bool) {
	switch {
	case pct != 0 && hasPercentage:
		v.warnf(p+".percent", "deprecated and ignored because percentage is set")
	case pct != 0:
		v.warnf(p+".percent", "deprecated; use percentage.value")
		if pct < 0 || pct > 100 {
			v.errorf(p+".percent", "must be between 0 and 100, found %d", pct)
		}
	case !hasPercentage:
		v.warnf(p+".percentage", "not set, so no requests are delayed; set percentage.value (100 delays every request)")
	}
}

func (v *validator) grpcStatus(p, s string) {
	for _, c := range grpcStatusCodes {
		if s == c {
			return
		}
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(grpcStatusCodes) {
		v.errorf(p, "gRPC status must be a code name, not a number: write %q for %d", grpcStatusCodes[n], n)
		return
	}
	v.errorf(p, "unknown gRPC status %q: use a code name such as UNAVAILABLE or NOT_FOUND%s", s, suggest(s, grpcStatusCodes))
}

// corsMethods are the methods CORS allowMethods may name (Istio
// supportedCORSMethods).
var corsMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodConnect: true,
	http.MethodOptions: true, http.MethodTrace: true, "*": true,
}

// cors checks a CORS policy (Istio validateCORSPolicy).
func (v *validator) cors(p string, c *networking.CorsPolicy) {
	if c == nil {
		return
	}
	for i, o := range c.AllowOrigins {
		v.stringMatch(index(p+".allowOrigins", i), o, matchOrigin)
	}
	if len(c.AllowOrigin) > 0 {
		if len(c.AllowOrigins) > 0 {
			v.warnf(p+".allowOrigin", "deprecated and ignored because allowOrigins is set")
		} else {
			v.warnf(p+".allowOrigin", "deprecated; use allowOrigins with exact matches")
		}
	}
	for i, m := range c.AllowMethods {
		if !corsMethods[m] {
			v.errorf(index(p+".allowMethods", i), "%q is not an HTTP method: use GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE or *", m)
		}
	}
	for _, f := range []struct {
		name  string
		names []string
	}{{"allowHeaders", c.AllowHeaders}, {"exposeHeaders", c.ExposeHeaders}} {
		for i, h := range f.names {
			if h != "*" && !isHeaderToken(h) {
				v.errorf(index(p+"."+f.name, i), "invalid header name %q: must be an RFC 7230 token or *", h)
			}
		}
	}
	if c.MaxAge != nil {
		v.duration(p+".maxAge", c.MaxAge)
		if c.MaxAge.GetNanos() != 0 && c.MaxAge.AsDuration() >= time.Millisecond {
			v.errorf(p+".maxAge", "must be a whole number of seconds, found %s: Access-Control-Max-Age is sent in seconds", c.MaxAge.AsDuration())
		}
	}
}
