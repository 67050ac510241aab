// Package explain answers "what would the proxy do with this request, and
// why": the virtual host, every rule tried with the reason it matched or
// not, the action, the cluster and its endpoints after subset selection,
// the traffic policy, and the timeout, retries, faults, mirrors, CORS and
// header edits that apply. It backs `michi explain`.
//
// explain never decides anything on its own. It compiles the
// configuration with the engine `michi run` uses (Load), looks the request
// up with the routing table's own Lookup and Match, and takes the request
// view, redirect Location, rewrite and hash key from the dataplane's
// exported functions, so that an explanation cannot drift from what the
// proxy does. It only adds words.
package explain

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/michi-mesh/michi/internal/dataplane"
	"github.com/michi-mesh/michi/internal/routing"
)

// ErrTLSOnMesh is returned for an https:// request to a sidecar: the
// sidecar sees TLS it does not terminate, which it routes by SNI with tls
// routes, not by HTTP route.
var ErrTLSOnMesh = errors.New("a sidecar does not terminate TLS: https:// traffic is routed by SNI, not by HTTP routes; " +
	"use http:// (what the application sends to the sidecar), or --gateway for a gateway's HTTPS server")

// configTimeNote says what the table no longer shows: Istio evaluates
// these match conditions when it builds a proxy's routes, not per request.
func configTimeNote(p routing.Proxy) string {
	who := "namespace " + p.Namespace
	if len(p.Labels) > 0 {
		who += ", labels " + labels(p.Labels)
	} else {
		who += ", no labels"
	}
	return "sourceLabels, sourceNamespace, gateways and port conditions were applied when compiling for this proxy (" + who +
		"): matches they exclude are not in the table and are not listed"
}

// Explain explains how table t routes req. It fails for an https://
// request to a sidecar (ErrTLSOnMesh), and for a request with a malformed
// port, which NewRequest does not build.
func Explain(t *routing.Table, req *Request) (*Result, error) {
	gateway := t.Proxy.Role == routing.RoleGateway
	if req.URL.Scheme == "https" && !gateway {
		return nil, ErrTLSOnMesh
	}
	hr := req.httpRequest()
	// A request without a port arrives on the scheme's port: 80 is also
	// the port the mesh listener assumes (Istio's outbound HTTP listener).
	defPort := uint32(80)
	if req.URL.Scheme == "https" {
		defPort = 443
	}
	view, host, port, ok := dataplane.RequestView(hr, defPort)
	if !ok {
		return nil, fmt.Errorf("host %q: invalid port", hr.Host)
	}
	// RequestView describes the plaintext mesh listener; a gateway's HTTPS
	// server terminates TLS, so its routes see https.
	view.Scheme = req.URL.Scheme

	e := &explainer{t: t, hr: hr, view: view, host: host, port: port, gateway: gateway}
	e.res = &Result{
		Request: RequestInfo{
			Method:    req.Method,
			URL:       req.URL.String(),
			Scheme:    view.Scheme,
			Authority: hr.Host,
			Host:      host,
			Path:      view.Path,
			Query:     view.RawQuery,
			Headers:   headerMap(req.Header),
		},
		Proxy: ProxyInfo{
			Role:           string(t.Proxy.Role),
			Namespace:      t.Proxy.Namespace,
			Labels:         t.Proxy.Labels,
			Gateways:       t.Proxy.Gateways,
			OutboundPolicy: string(t.OutboundPolicy),
		},
		Port:         port,
		RuleIndex:    -1,
		MatchIndex:   -1,
		Rules:        []RuleTrial{},
		Destinations: []Destination{},
		Mirrors:      []Mirror{},
		Timeout:      "none",
		Notes:        []string{configTimeNote(t.Proxy)},
	}
	if req.SourceIP.IsValid() {
		e.res.Request.SourceIP = req.SourceIP.String()
	}
	e.run()
	return e.res, nil
}

// explainer carries one explanation.
type explainer struct {
	t       *routing.Table
	hr      *http.Request
	view    routing.Request
	host    string
	port    uint32
	gateway bool
	res     *Result
}

func (e *explainer) note(format string, args ...any) {
	e.res.Notes = append(e.res.Notes, fmt.Sprintf(format, args...))
}

func (e *explainer) run() {
	res := e.res
	if e.gateway {
		res.Proxy.Servers = serversOn(e.t, e.port)
	}
	rc := e.t.HTTP[e.port]
	if rc != nil {
		res.RouteConfig = &RouteConfigInfo{Port: e.port, VirtualHosts: len(rc.VirtualHosts)}
	}
	if e.gateway {
		if rc == nil {
			e.noHTTPServer()
			return
		}
		e.checkServerTLS()
	} else if len(e.t.TCP[e.port]) > 0 || len(e.t.TLS[e.port]) > 0 {
		e.note("port %d also has TCP or TLS routes; HTTP requests on the mesh listener never use them", e.port)
	}

	var vh *routing.VirtualHost
	if rc != nil {
		vh = rc.Lookup(e.host)
	}
	if vh == nil {
		e.noVirtualHost(rc)
		return
	}
	e.virtualHost(vh)
	if vh.RequireTLS && e.view.Scheme == "http" {
		e.requireTLS()
		return
	}
	rt, index := vh.Match(&e.view)
	e.trials(vh, index)
	if rt == nil {
		res.Action, res.Status = ActionNotFound, http.StatusNotFound
		res.Reason = fmt.Sprintf("no route of virtual host %s matches: Envoy answers 404 (response flag NR)", vh.Name)
		return
	}
	e.route(rt)
}

// serversOn lists the gateway servers listening on port.
func serversOn(t *routing.Table, port uint32) []Server {
	var out []Server
	for _, s := range t.Gateways {
		if s.Port != port {
			continue
		}
		srv := Server{Gateway: s.Gateway, Name: s.Name, Protocol: s.Protocol, Hosts: s.Hosts}
		if s.TLS != nil {
			srv.TLSMode = s.TLS.Mode
		}
		out = append(out, srv)
	}
	return out
}

// noHTTPServer explains a gateway port without HTTP routes.
func (e *explainer) noHTTPServer() {
	res := e.res
	res.Action = ActionNotFound
	if len(res.Proxy.Servers) == 0 {
		res.Reason = fmt.Sprintf("no server of the gateways this proxy implements listens on port %d: the connection is refused", e.port)
		return
	}
	var kinds []string
	for _, s := range res.Proxy.Servers {
		kinds = append(kinds, s.Protocol+" server of "+s.Gateway)
	}
	res.Reason = fmt.Sprintf("port %d has no HTTP routes: its %s routes connections by SNI or as TCP, which explain does not cover",
		e.port, strings.Join(kinds, ", "))
}

// checkServerTLS notes a scheme that does not fit the servers on the port.
func (e *explainer) checkServerTLS() {
	for _, s := range e.res.Proxy.Servers {
		terminates := s.TLSMode != "" && s.Protocol != "HTTP"
		switch {
		case terminates && e.view.Scheme == "http":
			e.note("the %s server of %s on port %d terminates TLS (%s): a plaintext request fails the handshake; use https://",
				s.Protocol, s.Gateway, e.port, s.TLSMode)
		case !terminates && e.view.Scheme == "https":
			e.note("the %s server of %s on port %d is plaintext: a TLS client fails the handshake; use http://", s.Protocol, s.Gateway, e.port)
		}
	}
}

// noVirtualHost explains a host no virtual host of the port claims. A
// sidecar applies the outbound traffic policy, as the dataplane's
// outbound does; a gateway has no catch-all virtual host and answers 404.
func (e *explainer) noVirtualHost(rc *routing.RouteConfig) {
	res := e.res
	why := fmt.Sprintf("no virtual host on port %d has a domain matching %q", e.port, e.host)
	if rc == nil {
		why = fmt.Sprintf("port %d has no HTTP route configuration (no visible service has an HTTP port %d), so no virtual host matches %q",
			e.port, e.port, e.host)
	}
	if e.gateway {
		res.Action, res.Status = ActionNotFound, http.StatusNotFound
		res.Reason = why + ": the gateway answers 404 (response flag NR)"
		return
	}
	if e.t.OutboundPolicy == routing.RegistryOnly {
		res.Action, res.Status = ActionDirectResponse, http.StatusBadGateway
		res.DirectResponse = &DirectResponse{Status: http.StatusBadGateway}
		res.Reason = why + ": outbound traffic policy REGISTRY_ONLY sends unknown hosts to " + routing.BlackHoleCluster + ", which answers 502"
		return
	}
	res.Action = ActionRoute
	res.RuleName = "allow_any"
	res.Reason = why + ": outbound traffic policy ALLOW_ANY passes it through " + routing.PassthroughCluster + " to the address the client asked for"
	res.Retries = retries(routing.DefaultRetryPolicy())
	res.Destinations = append(res.Destinations, Destination{
		Host:                e.host,
		Port:                e.port,
		Weight:              100,
		Percent:             100,
		Cluster:             routing.PassthroughCluster,
		ClusterFound:        true,
		Endpoints:           []Endpoint{},
		OriginalDestination: e.originalDestination(),
		Discovery:           string(routing.DiscoveryOriginalDst),
		UpstreamAuthority:   e.hr.Host,
		UpstreamPath:        e.view.Path,
	})
}

// originalDestination is where an original-destination cluster connects:
// the Host header's host at the request's port.
func (e *explainer) originalDestination() string {
	return net.JoinHostPort(routing.StripPort(e.hr.Host), strconv.FormatUint(uint64(e.port), 10))
}

// virtualHost records the chosen virtual host and the domain that took
// the request.
func (e *explainer) virtualHost(vh *routing.VirtualHost) {
	e.res.VirtualHost = vh.Name
	e.res.Domains = vh.Domains
	e.res.MatchedDomain = matchedDomain(vh, e.host)
	e.res.VirtualServices = virtualServices(vh)
	if len(e.res.VirtualServices) == 0 {
		e.note("%s has no VirtualService: the service's default route applies", vh.Name)
	}
	e.missingRules(vh)
}

// virtualServices lists the VirtualServices whose rules vh holds, in
// route order: one on a sidecar, several merged on a gateway.
func virtualServices(vh *routing.VirtualHost) []string {
	var out []string
	seen := map[string]bool{}
	add := func(vs string) {
		if vs != "" && !seen[vs] {
			seen[vs] = true
			out = append(out, vs)
		}
	}
	for _, rt := range vh.Routes {
		add(rt.VirtualService)
	}
	add(vh.VirtualService)
	return out
}

// missingRules notes the rules of vh's VirtualServices that left no route
// although a later rule did: every match failed a config-time condition
// for this proxy, the rule's delegate is missing or conflicts, or the
// rule could not be compiled, which a warning then reports.
func (e *explainer) missingRules(vh *routing.VirtualHost) {
	present := map[string]map[int]bool{}
	var order []string
	for _, rt := range vh.Routes {
		if rt.VirtualService == "" || rt.RuleIndex < 0 {
			continue
		}
		if present[rt.VirtualService] == nil {
			present[rt.VirtualService] = map[int]bool{}
			order = append(order, rt.VirtualService)
		}
		present[rt.VirtualService][rt.RuleIndex] = true
	}
	for _, vs := range order {
		last := -1
		for i := range present[vs] {
			last = max(last, i)
		}
		var missing []string
		for i := 0; i < last; i++ {
			if !present[vs][i] {
				missing = append(missing, "spec.http["+strconv.Itoa(i)+"]")
			}
		}
		if len(missing) > 0 {
			e.note("VirtualService %s %s left no route on this proxy: config-time conditions excluded every match, "+
				"or the rule could not be used (see the warnings)", vs, strings.Join(missing, ", "))
		}
	}
}

// matchedDomain names the domain of vh that Lookup matched host against,
// in Envoy's order: exact, then the longest wildcard suffix, then "*".
// Lookup made the choice; this only finds which of vh's domains did.
func matchedDomain(vh *routing.VirtualHost, host string) string {
	h := strings.ToLower(routing.StripPort(host))
	best := ""
	for _, d := range vh.Domains {
		ld := strings.ToLower(d)
		switch {
		case ld == h:
			return d
		case ld != "*" && strings.HasPrefix(ld, "*") && len(h) > len(ld)-1 && strings.HasSuffix(h, ld[1:]) && len(d) > len(best):
			best = d
		}
	}
	if best != "" {
		return best
	}
	for _, d := range vh.Domains {
		if d == "*" {
			return d
		}
	}
	return ""
}

// requireTLS explains a gateway server with httpsRedirect: Envoy's
// require_tls answers every plaintext request with a 301 to https before
// any route is consulted.
func (e *explainer) requireTLS() {
	res := e.res
	rd := &routing.Redirect{Scheme: "https", Code: http.StatusMovedPermanently}
	res.Action, res.Status = ActionRedirect, rd.Code
	res.Redirect = &Redirect{Code: rd.Code, Location: dataplane.RedirectLocation(nil, rd, e.view.Scheme, e.hr.Host, e.view.Path, e.view.RawQuery)}
	res.Reason = fmt.Sprintf("the gateway server for %s sets tls.httpsRedirect: plaintext requests get a 301 to https before any route is consulted", e.res.VirtualHost)
}

// trials records the routes tried up to the one at index (all of them
// when index is -1), each with Match.Explain's reason. The decision is
// VirtualHost.Match's; Explain uses the same predicates, so the first
// route it finds no fault with is the one Match chose.
func (e *explainer) trials(vh *routing.VirtualHost, index int) {
	n := len(vh.Routes)
	if index >= 0 {
		n = index + 1
	}
	for i := 0; i < n; i++ {
		rt := vh.Routes[i]
		reason := rt.Match.Explain(&e.view)
		matched := i == index
		if !matched && reason == "" {
			// Cannot happen while Match and Explain share predicates; say
			// so rather than print a contradiction.
			reason = "matches by its conditions, but the route lookup skipped it (report this as a michi bug)"
		}
		e.res.Rules = append(e.res.Rules, RuleTrial{
			Route:             i,
			VirtualService:    rt.VirtualService,
			RuleIndex:         rt.RuleIndex,
			MatchIndex:        rt.MatchIndex,
			Name:              rt.Name,
			Delegate:          rt.Delegate,
			DelegateRuleIndex: delegateIndex(rt),
			Conditions:        conditions(&rt.Match),
			Matched:           matched,
			Reason:            reason,
		})
	}
}

func delegateIndex(rt *routing.Route) *int {
	if rt.Delegate == "" {
		return nil
	}
	i := rt.DelegateRuleIndex
	return &i
}

// route explains the matched route: its action and everything it
// applies.
func (e *explainer) route(rt *routing.Route) {
	res := e.res
	res.VirtualService = rt.VirtualService
	res.RuleIndex, res.MatchIndex = rt.RuleIndex, rt.MatchIndex
	res.RuleName = rt.Name
	res.Delegate, res.DelegateRuleIndex = rt.Delegate, delegateIndex(rt)
	res.Timeout = duration(rt.Timeout)
	res.Retries = retries(rt.Retry)
	res.Fault = fault(rt.Fault)
	res.Headers = headers(&rt.Headers)
	res.Rewrite = rewrite(rt.Rewrite)
	for _, m := range rt.Mirrors {
		res.Mirrors = append(res.Mirrors, Mirror{
			Host: m.Host, Subset: m.Subset, Port: m.Port, Cluster: m.Cluster,
			ClusterFound: e.t.Clusters[m.Cluster] != nil,
			Percent:      perMillion(m.PerMillion),
		})
	}
	if rt.CORS != nil {
		res.CORS = e.cors(rt.CORS)
	}
	if rt.Fault != nil && rt.Fault.Abort != nil && rt.Fault.Abort.PerMillion >= routing.Million {
		e.note("the fault filter aborts every request (100%%) before the action is taken")
	}

	who := ruleLabel(rt)
	switch {
	case rt.DirectResponse != nil:
		dr := rt.DirectResponse
		res.Action, res.Status = ActionDirectResponse, dr.Status
		res.DirectResponse = &DirectResponse{Status: dr.Status, Body: string(dr.Body)}
		res.Reason = fmt.Sprintf("%s answers directly with %d", who, dr.Status)
	case rt.Redirect != nil:
		rd := rt.Redirect
		code := rd.Code
		if code == 0 {
			code = http.StatusMovedPermanently
		}
		loc := dataplane.RedirectLocation(rt, rd, e.view.Scheme, e.hr.Host, e.view.Path, e.view.RawQuery)
		res.Action, res.Status = ActionRedirect, code
		res.Redirect = &Redirect{Code: code, Location: loc}
		res.Reason = fmt.Sprintf("%s redirects with %d to %s", who, code, loc)
	case rt.Forward != nil:
		res.Action = ActionRoute
		f := rt.Forward
		for _, d := range f.Destinations {
			res.Destinations = append(res.Destinations, e.destination(rt, d, f))
		}
		if len(f.Destinations) == 1 {
			res.Reason = fmt.Sprintf("%s forwards to %s", who, f.Destinations[0].Cluster)
		} else {
			res.Reason = fmt.Sprintf("%s splits traffic across %d destinations by weight", who, len(f.Destinations))
		}
	default:
		res.Action, res.Status = ActionDirectResponse, http.StatusInternalServerError
		res.Reason = who + " has no action: the proxy answers 500"
	}
}

// ruleLabel names a route for sentences: its VirtualService and rule.
func ruleLabel(rt *routing.Route) string {
	if rt.VirtualService == "" {
		return "the default route"
	}
	s := "VirtualService " + rt.VirtualService + " " + ruleField(rt.RuleIndex, rt.MatchIndex, rt.Delegate == "")
	if rt.Name != "" {
		s += " " + strconv.Quote(rt.Name)
	}
	if rt.Delegate != "" {
		s += fmt.Sprintf(" (delegate %s spec.http[%d])", rt.Delegate, rt.DelegateRuleIndex)
	}
	return s
}

// ruleField is "spec.http[i].match[j]", without the match for a rule
// without one; for a merged delegate rule the match index is the
// delegate's, so it is left out of the root's field.
func ruleField(rule, match int, withMatch bool) string {
	if rule < 0 {
		return "default route"
	}
	s := "spec.http[" + strconv.Itoa(rule) + "]"
	if withMatch && match >= 0 {
		s += ".match[" + strconv.Itoa(match) + "]"
	}
	return s
}

// destination explains one weighted destination and its cluster.
func (e *explainer) destination(rt *routing.Route, d *routing.Destination, f *routing.Forward) Destination {
	out := Destination{
		Host:      d.Host,
		Subset:    d.Subset,
		Port:      d.Port,
		Weight:    d.Weight,
		Percent:   share(d, f),
		Cluster:   d.Cluster,
		Endpoints: []Endpoint{},
		Headers:   headers(&d.Headers),
	}
	out.UpstreamAuthority, out.UpstreamPath = dataplane.RewriteTarget(rt, d, e.hr.Host, e.view.Path)
	if d.Hash != nil {
		out.Hash = e.hash(d.Hash)
	}
	c := e.t.Clusters[d.Cluster]
	if c == nil {
		out.Problem = e.missingCluster(d)
		return out
	}
	out.ClusterFound = true
	out.Discovery = string(c.Discovery)
	out.Protocol = c.Protocol
	out.DestinationRule = c.DestinationRule
	for _, ep := range c.Endpoints {
		out.Endpoints = append(out.Endpoints, Endpoint{
			Address: ep.Address, Labels: ep.Labels, Locality: ep.Locality, Weight: ep.Weight,
			TLSMode: ep.TLSMode, ServiceAccount: ep.ServiceAccount,
		})
	}
	out.Policy = policy(c, routing.StripPort(out.UpstreamAuthority))
	switch {
	case c.Discovery == routing.DiscoveryOriginalDst:
		out.OriginalDestination = e.originalDestination()
	case len(c.Endpoints) == 0:
		out.Problem = "503 UH: the cluster has no endpoints (no healthy upstream)"
		if d.Subset != "" {
			out.Problem += fmt.Sprintf("; subset %q selects none of %s's endpoints", d.Subset, d.Host)
		}
	}
	return out
}

// share is the destination's percentage of traffic. A lone destination
// takes everything whatever its weight, as the dataplane's forward does.
func share(d *routing.Destination, f *routing.Forward) float64 {
	if len(f.Destinations) == 1 || f.TotalWeight == 0 {
		return 100
	}
	return math.Round(float64(d.Weight)*10000/float64(f.TotalWeight)) / 100
}

// missingCluster says why a destination's cluster may be missing; Envoy
// answers 503 NC.
func (e *explainer) missingCluster(d *routing.Destination) string {
	ns := e.t.Proxy.Namespace
	if d.Subset != "" && e.t.Clusters[routing.ClusterName(d.Port, "", d.Host)] != nil {
		return fmt.Sprintf("503 NC: cluster %s not found (subset %q not defined by any DestinationRule visible to namespace %s?)", d.Cluster, d.Subset, ns)
	}
	return fmt.Sprintf("503 NC: cluster %s not found (no service %s with port %d visible to namespace %s?)", d.Cluster, d.Host, d.Port, ns)
}

// hash explains a consistent-hash key with the dataplane's HashInput.
func (e *explainer) hash(hp *routing.HashPolicy) *Hash {
	h := &Hash{Source: hashSource(hp)}
	h.Value, h.Present = dataplane.HashInput(e.hr, e.view.Path, hp)
	if h.Present {
		return h
	}
	switch {
	case hp.Cookie != nil && hp.Cookie.HasTTL:
		h.Effect = "the request has no cookie " + hp.Cookie.Name + ": the proxy generates one, hashes it and returns it in Set-Cookie"
	case hp.SourceIP:
		h.Effect = "the client's address is hashed; pass --source-ip to see the key"
	default:
		h.Effect = "the request has no value to hash: Envoy picks an endpoint at random"
	}
	return h
}

// hashSource names what a hash policy hashes.
func hashSource(hp *routing.HashPolicy) string {
	switch {
	case hp == nil:
		return ""
	case hp.Header != "":
		return "header " + strings.ToLower(hp.Header)
	case hp.Cookie != nil:
		s := "cookie " + hp.Cookie.Name
		if hp.Cookie.HasTTL {
			s += " (generated with ttl " + hp.Cookie.TTL.String() + " when absent)"
		}
		return s
	case hp.SourceIP:
		return "source IP"
	case hp.QueryParam != "":
		return "query parameter " + hp.QueryParam
	}
	return ""
}

// cors explains the route's CORS policy for this request, following the
// dataplane's CORS filter.
func (e *explainer) cors(c *routing.CORS) *CORS {
	out := &CORS{
		AllowMethods:        c.AllowMethods,
		AllowHeaders:        c.AllowHeaders,
		ExposeHeaders:       c.ExposeHeaders,
		MaxAge:              c.MaxAge,
		AllowCredentials:    c.AllowCredentials,
		UnmatchedPreflights: "ignore",
		AllowOrigins:        []string{},
	}
	if c.ForwardNotMatchingPreflights {
		out.UnmatchedPreflights = "forward"
	}
	for i := range c.AllowOrigins {
		out.AllowOrigins = append(out.AllowOrigins, stringMatch(&c.AllowOrigins[i]))
	}
	origin := e.hr.Header.Get("Origin")
	preflight := e.hr.Method == http.MethodOptions && e.hr.Header.Get("Access-Control-Request-Method") != ""
	allowed := origin != "" && c.OriginAllowed(origin)
	switch {
	case origin == "":
		out.Effect = "no Origin header: CORS does not apply"
	case preflight && allowed:
		out.Effect = "preflight from an allowed origin: the proxy answers 200 with the Access-Control-Allow-* headers itself"
		e.note("the CORS filter answers this preflight itself; the route's action is not taken")
	case preflight && c.ForwardNotMatchingPreflights:
		out.Effect = "preflight from an origin not allowed: forwarded like any request (unmatchedPreflights FORWARD)"
	case preflight:
		out.Effect = "preflight from an origin not allowed: the proxy answers 200 without CORS headers (unmatchedPreflights IGNORE)"
		e.note("the CORS filter answers this preflight itself; the route's action is not taken")
	case allowed:
		out.Effect = "origin allowed: the response gets Access-Control-Allow-Origin: " + origin
	default:
		out.Effect = "origin not allowed: no CORS headers are added, so a browser withholds the response"
	}
	return out
}

// conditions lists a match's request-time conditions, readable.
func conditions(m *routing.Match) []string {
	var out []string
	if m.PathKind != routing.PathAny {
		s := "uri " + stringMatch(&m.Path)
		if m.Path.IgnoreCase {
			s += " ignoring case"
		}
		out = append(out, s)
	}
	for i := range m.Headers {
		h := &m.Headers[i]
		what := "header " + strings.ToLower(h.Name)
		if strings.HasPrefix(h.Name, ":") {
			what = strings.TrimPrefix(h.Name, ":")
		}
		s := what + " " + stringMatch(&h.Match)
		if h.Invert {
			s = "withoutHeaders " + s
		}
		out = append(out, s)
	}
	for i := range m.QueryParams {
		q := &m.QueryParams[i]
		out = append(out, "query "+q.Name+" "+stringMatch(&q.Match))
	}
	if len(out) == 0 {
		out = append(out, "any request")
	}
	return out
}

// stringMatch renders a StringMatch: `exact "v"`, `present`.
func stringMatch(m *routing.StringMatch) string {
	if m.Kind == routing.MatchPresent {
		return "present"
	}
	return string(m.Kind) + " " + strconv.Quote(m.Value)
}

// duration renders a duration, "none" for zero as Istio's unset timeouts.
func duration(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

// perMillion renders a per-million fraction as a percentage.
func perMillion(v uint32) float64 {
	return float64(v) / (routing.Million / 100)
}

func headerMap(h http.Header) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	return h
}
