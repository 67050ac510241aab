package explain

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// WriteText writes the explanation as plain aligned text, one section
// per step, in the order the proxy takes them.
func (r *Result) WriteText(w io.Writer) error {
	p := &printer{}
	r.writeRequest(p)
	p.blank()
	r.writeListener(p)
	p.blank()
	r.writeVirtualHost(p)
	if r.VirtualHost != "" && len(r.Rules) > 0 {
		p.blank()
		r.writeRules(p)
	}
	p.blank()
	r.writeAction(p)
	if r.Action == ActionRoute || r.Fault != nil || r.CORS != nil || r.Headers != nil {
		p.blank()
		r.writeHandling(p)
	}
	if len(r.Notes) > 0 {
		p.blank()
		p.line(0, "Notes")
		for _, n := range r.Notes {
			p.line(1, "- "+n)
		}
	}
	_, err := w.Write(p.buf.Bytes())
	return err
}

func (r *Result) writeRequest(p *printer) {
	q := &r.Request
	p.kv(0, "Request", q.Method+" "+q.URL)
	target := fmt.Sprintf("Host %s (host %s, port %d), path %s", q.Authority, q.Host, r.Port, q.Path)
	if q.Query != "" {
		target += ", query " + q.Query
	}
	p.kv(0, "", target)
	if len(q.Headers) > 0 {
		names := make([]string, 0, len(q.Headers))
		for n := range q.Headers {
			names = append(names, n)
		}
		sort.Strings(names)
		var hs []string
		for _, n := range names {
			for _, v := range q.Headers[n] {
				hs = append(hs, n+": "+v)
			}
		}
		p.kv(0, "", "headers "+strings.Join(hs, "; "))
	}
	if q.SourceIP != "" {
		p.kv(0, "", "source IP "+q.SourceIP)
	}
	x := &r.Proxy
	who := "sidecar"
	if x.Role == "gateway" {
		who = "gateway implementing " + strings.Join(x.Gateways, ", ")
	}
	desc := fmt.Sprintf("%s in namespace %s", who, x.Namespace)
	if len(x.Labels) > 0 {
		desc += ", labels " + labels(x.Labels)
	}
	p.kv(0, "Proxy", desc)
	if x.Role != "gateway" {
		p.kv(0, "", "outbound traffic policy "+x.OutboundPolicy)
	}
}

func (r *Result) writeListener(p *printer) {
	p.line(0, "1. Listener")
	switch {
	case r.RouteConfig != nil:
		p.line(1, fmt.Sprintf("port %d: HTTP routes with %s", r.Port, plural(r.RouteConfig.VirtualHosts, "virtual host")))
	default:
		p.line(1, fmt.Sprintf("port %d: no HTTP routes", r.Port))
	}
	for _, s := range r.Proxy.Servers {
		desc := fmt.Sprintf("%s server of %s", s.Protocol, s.Gateway)
		if s.Name != "" {
			desc += " (" + s.Name + ")"
		}
		desc += ", hosts " + strings.Join(s.Hosts, ", ")
		if s.TLSMode != "" {
			desc += ", TLS " + s.TLSMode
		}
		p.line(1, desc)
	}
}

func (r *Result) writeVirtualHost(p *printer) {
	p.line(0, "2. Virtual host")
	switch {
	case r.RouteConfig == nil:
		p.line(1, fmt.Sprintf("none: port %d has no HTTP routes", r.Port))
		return
	case r.VirtualHost == "":
		p.line(1, "none has a domain matching host "+strconv.Quote(r.Request.Host))
		return
	}
	how := "exactly"
	switch {
	case r.MatchedDomain == "*":
		how = "as the catch-all"
	case strings.HasPrefix(r.MatchedDomain, "*"):
		how = "by wildcard"
	}
	p.line(1, fmt.Sprintf("%s: domain %q matched %s", r.VirtualHost, r.MatchedDomain, how))
	p.kv(1, "domains", strings.Join(r.Domains, ", "))
	vs := strings.Join(r.VirtualServices, ", ")
	if vs == "" {
		vs = "none (the service's default route)"
	}
	p.kv(1, "VirtualService", vs)
}

func (r *Result) writeRules(p *printer) {
	p.line(0, "3. Rules, in order; the first match wins")
	for _, t := range r.Rules {
		head := fmt.Sprintf("#%d %s", t.Route, ruleName(t.VirtualService, t.RuleIndex, t.MatchIndex, t.Delegate, t.DelegateRuleIndex))
		if t.Name != "" {
			head += " " + strconv.Quote(t.Name)
		}
		if t.Matched {
			head += ": matched"
		} else {
			head += ": no match"
		}
		p.line(1, head)
		p.kv(2, "conditions", strings.Join(t.Conditions, "; "))
		if t.Reason != "" {
			p.kv(2, "failed", t.Reason)
		}
	}
}

// ruleName is "spec.http[i].match[j]" of a VirtualService, with the
// delegate's rule when the route was merged from one.
func ruleName(vs string, rule, match int, delegate string, delegateRule *int) string {
	if vs == "" {
		return "default route"
	}
	if delegate != "" && delegateRule != nil {
		s := fmt.Sprintf("%s spec.http[%d] → delegate %s spec.http[%d]", vs, rule, delegate, *delegateRule)
		if match >= 0 {
			s += fmt.Sprintf(".match[%d]", match)
		}
		return s
	}
	return vs + " " + ruleField(rule, match, true)
}

func (r *Result) writeAction(p *printer) {
	p.line(0, "4. Action: "+r.Action)
	p.line(1, r.Reason)
	switch {
	case r.Redirect != nil:
		p.kv(1, "status", strconv.Itoa(r.Redirect.Code))
		p.kv(1, "location", r.Redirect.Location)
	case r.DirectResponse != nil:
		p.kv(1, "status", strconv.Itoa(r.DirectResponse.Status))
		if r.DirectResponse.Body != "" {
			p.kv(1, "body", quoteBody(r.DirectResponse.Body))
		}
	}
	for i := range r.Destinations {
		r.writeDestination(p, i)
	}
}

func (r *Result) writeDestination(p *printer, i int) {
	d := &r.Destinations[i]
	head := d.Host
	if d.Subset != "" {
		head += " subset " + d.Subset
	}
	if d.Port != 0 {
		head += fmt.Sprintf(" port %d", d.Port)
	}
	if len(r.Destinations) > 1 {
		head = fmt.Sprintf("destination %d of %d: %s, weight %d (%s%%)", i+1, len(r.Destinations), head, d.Weight, strconv.FormatFloat(d.Percent, 'f', -1, 64))
	} else {
		head = "destination: " + head
	}
	p.line(1, head)
	cluster := d.Cluster
	var about []string
	if d.Discovery != "" {
		about = append(about, d.Discovery)
	}
	if d.Protocol != "" {
		about = append(about, d.Protocol)
	}
	if d.DestinationRule != "" {
		about = append(about, "DestinationRule "+d.DestinationRule)
	}
	if len(about) > 0 {
		cluster += " (" + strings.Join(about, ", ") + ")"
	}
	p.kv(2, "cluster", cluster)
	if d.Problem != "" {
		p.kv(2, "problem", d.Problem)
	}
	switch {
	case d.OriginalDestination != "":
		p.kv(2, "endpoints", "the original destination "+d.OriginalDestination)
	case d.ClusterFound && len(d.Endpoints) == 0:
		p.kv(2, "endpoints", "none")
	}
	for j, ep := range d.Endpoints {
		key := ""
		if j == 0 {
			key = "endpoints"
		}
		desc := ep.Address
		if len(ep.Labels) > 0 {
			desc += "  " + labels(ep.Labels)
		}
		if ep.Locality != "" {
			desc += "  locality " + ep.Locality
		}
		desc += fmt.Sprintf("  weight %d", ep.Weight)
		p.kv(2, key, desc)
	}
	if d.UpstreamAuthority != "" {
		p.kv(2, "upstream gets", "Host "+d.UpstreamAuthority+", path "+d.UpstreamPath)
	}
	if h := d.Hash; h != nil {
		desc := "hash on " + h.Source
		if h.Present {
			desc += " = " + strconv.Quote(h.Value)
		} else {
			desc += ": " + h.Effect
		}
		p.kv(2, "hash key", desc)
	}
	if d.Headers != nil {
		writeHeaders(p, 2, "headers", d.Headers)
	}
	if pol := d.Policy; pol != nil {
		writePolicy(p, pol)
	}
}

func writePolicy(p *printer, pol *Policy) {
	lb := pol.LoadBalancer
	desc := lb.Algorithm
	if lb.HashOn != "" {
		desc += " on " + lb.HashOn
	}
	if lb.MinRingSize != 0 {
		desc += fmt.Sprintf(", minimum ring size %d", lb.MinRingSize)
	}
	if lb.MaglevTableSize != 0 {
		desc += fmt.Sprintf(", table size %d", lb.MaglevTableSize)
	}
	p.kv(2, "load balancer", desc)
	if lb.Warmup != "" {
		p.kv(2, "", "warmup: "+lb.Warmup)
	}
	p.kv(2, "", "locality: "+lb.Locality)
	cp := pol.ConnectionPool
	p.kv(2, "circuit breakers", fmt.Sprintf("max_connections %s, max_pending_requests %s, max_requests %s, max_retries %s",
		cp.MaxConnections, cp.MaxPendingRequests, cp.MaxRequests, cp.MaxRetries))
	conn := fmt.Sprintf("connect_timeout %s, idle_timeout %s, max_requests_per_connection %s, max_connection_duration %s",
		cp.ConnectTimeout, cp.IdleTimeout, cp.MaxRequestsPerConnection, cp.MaxConnectionDuration)
	if cp.H2UpgradePolicy != "" {
		conn += ", h2_upgrade_policy " + cp.H2UpgradePolicy
	}
	if cp.UseClientProtocol {
		conn += ", use_client_protocol"
	}
	p.kv(2, "connections", conn)
	if o := pol.OutlierDetection; o != nil {
		var parts []string
		if o.Consecutive5xx > 0 {
			parts = append(parts, fmt.Sprintf("%d consecutive 5xx", o.Consecutive5xx))
		}
		if o.ConsecutiveGatewayErrors > 0 {
			parts = append(parts, fmt.Sprintf("%d consecutive gateway errors", o.ConsecutiveGatewayErrors))
		}
		if o.SplitExternalLocalOriginErrors {
			parts = append(parts, fmt.Sprintf("%d consecutive local-origin failures", o.ConsecutiveLocalOriginFailures))
		}
		if len(o.ErrorCodes) > 0 {
			parts = append(parts, "errors are "+ints(o.ErrorCodes))
		}
		desc := "eject after " + strings.Join(parts, " or ")
		if len(parts) == 0 {
			desc = "no ejection trigger"
		}
		desc += fmt.Sprintf("; interval %s; ejected for %s × times ejected, at most %s; at most %d%% ejected; panic threshold %d%%",
			o.Interval, o.BaseEjectionTime, o.MaxEjectionTime, o.MaxEjectionPercent, o.MinHealthPercent)
		p.kv(2, "outlier detection", desc)
	} else {
		p.kv(2, "outlier detection", "none")
	}
	if t := pol.TLS; t != nil {
		desc := t.Mode
		if t.Auto {
			desc += " (auto mTLS: every endpoint runs a mesh proxy)"
		}
		if t.SNI != "" {
			desc += ", SNI " + t.SNI
			if t.AutoSNI {
				desc += " (from the request's host)"
			}
		}
		p.kv(2, "tls", desc)
		p.kv(2, "", "server certificate: "+t.Verify)
		if t.ClientCertificate != "" {
			p.kv(2, "", "client certificate: "+t.ClientCertificate)
		}
		if t.CredentialName != "" {
			p.kv(2, "", "credentialName: "+t.CredentialName)
		}
	} else {
		p.kv(2, "tls", "none: plaintext")
	}
	if pol.Tunnel != "" {
		p.kv(2, "tunnel", pol.Tunnel)
	}
	if pol.ProxyProtocol != "" {
		p.kv(2, "proxy protocol", pol.ProxyProtocol)
	}
	if pol.RetryBudget != "" {
		p.kv(2, "retry budget", pol.RetryBudget)
	}
}

func (r *Result) writeHandling(p *printer) {
	p.line(0, "5. Filters and request handling")
	if r.Action == ActionRoute {
		p.kv(1, "timeout", r.Timeout)
		if rt := r.Retries; rt != nil {
			desc := fmt.Sprintf("%s (%s at most) on %s", plural(int(rt.Attempts), "retry"), plural(int(rt.Attempts)+1, "try"), strings.Join(rt.RetryOn, ","))
			if len(rt.RetriableStatusCodes) > 0 {
				desc += ", status " + ints(rt.RetriableStatusCodes)
			}
			p.kv(1, "retries", desc)
			more := fmt.Sprintf("per-try timeout %s, backoff %s to %s", rt.PerTryTimeout, rt.BackoffBase, rt.BackoffMax)
			if rt.RetryOtherHosts {
				more += fmt.Sprintf(", avoiding hosts already tried (%d attempts)", rt.HostSelectionAttempts)
			}
			if rt.RetryRemoteLocalities {
				more += ", retrying in other localities"
			}
			p.kv(1, "", more)
			if rt.IstioDefault {
				p.kv(1, "", "Istio's default policy: no VirtualService sets retries")
			}
		} else {
			p.kv(1, "retries", "disabled (attempts: 0)")
		}
	}
	if f := r.Fault; f != nil {
		var parts []string
		if f.Delay != nil {
			parts = append(parts, fmt.Sprintf("delay %s for %s%% of requests", f.Delay.Duration, pct(f.Delay.Percent)))
		}
		if a := f.Abort; a != nil {
			if a.GRPCStatus != nil {
				parts = append(parts, fmt.Sprintf("abort with grpc-status %d for %s%% of requests", *a.GRPCStatus, pct(a.Percent)))
			} else {
				parts = append(parts, fmt.Sprintf("abort with %d for %s%% of requests", a.HTTPStatus, pct(a.Percent)))
			}
		}
		p.kv(1, "fault", strings.Join(parts, "; "))
	} else {
		p.kv(1, "fault", "none")
	}
	if r.Action == ActionRoute {
		if len(r.Mirrors) == 0 {
			p.kv(1, "mirrors", "none")
		}
		for i, m := range r.Mirrors {
			key := ""
			if i == 0 {
				key = "mirrors"
			}
			desc := fmt.Sprintf("%s%% to %s", pct(m.Percent), m.Cluster)
			if !m.ClusterFound {
				desc += " (cluster not found: the copies are dropped)"
			}
			p.kv(1, key, desc)
		}
	}
	if c := r.CORS; c != nil {
		desc := "origins " + strings.Join(c.AllowOrigins, ", ")
		if c.AllowMethods != "" {
			desc += "; methods " + c.AllowMethods
		}
		if c.AllowHeaders != "" {
			desc += "; headers " + c.AllowHeaders
		}
		if c.ExposeHeaders != "" {
			desc += "; expose " + c.ExposeHeaders
		}
		if c.MaxAge != "" {
			desc += "; max age " + c.MaxAge + "s"
		}
		if c.AllowCredentials != nil {
			desc += "; credentials " + strconv.FormatBool(*c.AllowCredentials)
		}
		desc += "; unmatched preflights " + c.UnmatchedPreflights
		p.kv(1, "cors", desc)
		p.kv(1, "", c.Effect)
	} else {
		p.kv(1, "cors", "none")
	}
	if r.Headers != nil {
		writeHeaders(p, 1, "headers", r.Headers)
	} else {
		p.kv(1, "headers", "none")
	}
	if rw := r.Rewrite; rw != nil {
		var parts []string
		if rw.URIPrefix != nil {
			parts = append(parts, fmt.Sprintf("matched path prefix → %q", *rw.URIPrefix))
		}
		if rw.RegexMatch != "" {
			parts = append(parts, fmt.Sprintf("path regex %q → %q", rw.RegexMatch, rw.RegexRewrite))
		}
		if rw.Authority != "" {
			parts = append(parts, "authority → "+rw.Authority)
		}
		p.kv(1, "rewrite", strings.Join(parts, "; "))
	} else if r.Action == ActionRoute {
		p.kv(1, "rewrite", "none")
	}
}

func writeHeaders(p *printer, indent int, key string, h *Headers) {
	var lines []string
	add := func(what string, hs []Header) {
		for _, x := range hs {
			lines = append(lines, fmt.Sprintf("%s %s: %s", what, x.Name, x.Value))
		}
	}
	add("request set", h.RequestSet)
	add("request add", h.RequestAdd)
	for _, n := range h.RequestRemove {
		lines = append(lines, "request remove "+n)
	}
	add("response set", h.ResponseSet)
	add("response add", h.ResponseAdd)
	for _, n := range h.ResponseRemove {
		lines = append(lines, "response remove "+n)
	}
	if h.HostRewrite != "" {
		lines = append(lines, "host rewrite "+h.HostRewrite)
	}
	for i, l := range lines {
		if i > 0 {
			key = ""
		}
		p.kv(indent, key, l)
	}
}

// printer writes indented lines with values aligned after their keys.
type printer struct {
	buf bytes.Buffer
}

// keyWidth fits the longest key, "outlier detection".
const keyWidth = 19

func (p *printer) line(indent int, s string) {
	p.buf.WriteString(strings.Repeat("  ", indent))
	p.buf.WriteString(s)
	p.buf.WriteByte('\n')
}

func (p *printer) kv(indent int, key, value string) {
	p.buf.WriteString(strings.Repeat("  ", indent))
	p.buf.WriteString(key)
	p.buf.WriteString(strings.Repeat(" ", max(keyWidth-len(key), 1)))
	p.buf.WriteString(value)
	p.buf.WriteByte('\n')
}

func (p *printer) blank() { p.buf.WriteByte('\n') }

func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") && !strings.HasSuffix(noun, "ey") {
		return strconv.Itoa(n) + " " + noun[:len(noun)-1] + "ies"
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func ints(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

func pct(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// quoteBody quotes a direct-response body, cut to a readable length.
func quoteBody(b string) string {
	const maxBody = 200
	if len(b) > maxBody {
		return strconv.Quote(b[:maxBody]) + fmt.Sprintf(" … (%d bytes)", len(b))
	}
	return strconv.Quote(b)
}
