package compile

import (
	"errors"
	"fmt"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// defaultRouteName is the name Istio gives the route of a service without
// a VirtualService (route.go DefaultRouteName).
const defaultRouteName = "default"

// listener is what routes are compiled for: the port of the route
// configuration, the gateway the routes serve ("mesh" on sidecars, the
// server's "ns/name" on gateways), and whether the listener terminates TLS,
// which decides the scheme a redirect with a port defaults to.
type listener struct {
	port    uint32
	gateway string
	tls     bool
}

// httpRoutes compiles a VirtualService's HTTP rules for one listener
// (istio route.go BuildHTTPRoutesForVirtualService): each rule gives one
// route per match that survives the config-time conditions, or a single
// route without match; nothing after a catch-all is emitted, since it could
// never match.
func (c *compiler) httpRoutes(v *virtualService, l listener) []*routing.Route {
	var out []*routing.Route
	for _, hr := range v.http {
		if len(hr.rule.Match) == 0 {
			if r := c.translateRoute(v, hr, nil, -1, l); r != nil {
				out = append(out, r)
			}
			// A rule without match is a catch-all whether or not it
			// compiled, as in Istio.
			return out
		}
		for i, m := range hr.rule.Match {
			r := c.translateRoute(v, hr, m, i, l)
			if r == nil {
				continue
			}
			out = append(out, r)
			if r.Match.IsCatchAll() {
				return out
			}
		}
	}
	return out
}

// translateRoute compiles rule hr with its match number i (-1 for a rule
// without match) for listener l (istio route.go translateRoute). It
// returns nil when the match does not apply to this proxy and listener,
// or when the rule cannot be compiled (reported).
func (c *compiler) translateRoute(v *virtualService, hr *httpRule, m *networking.HTTPMatchRequest, i int, l listener) *routing.Route {
	rule := hr.rule
	matchIndex := -1
	if i >= 0 {
		matchIndex = hr.matchIndex[i]
	}
	if m != nil {
		if m.Port != 0 && m.Port != l.port {
			return nil
		}
		if !sourceMatches(m, hr.matchNS, l.gateway, c.opts.Proxy) {
			return nil
		}
	}
	match, err := compileMatch(m)
	if err != nil {
		field, msg := hr.field+".match", err.Error()
		var me *matchError
		if errors.As(err, &me) && matchIndex >= 0 {
			field, msg = fmt.Sprintf("%s.match[%d].%s", hr.field, matchIndex, me.field), me.msg
		}
		c.diags.errorf(hr.res, field, "%s; the route is dropped", msg)
		return nil
	}

	out := &routing.Route{
		Name:              rule.Name,
		VirtualService:    v.name(),
		RuleIndex:         hr.index,
		MatchIndex:        matchIndex,
		Delegate:          hr.delegate,
		DelegateRuleIndex: hr.delegateIndex,
		Match:             match,
		Headers:           headerOps(rule.Headers),
	}
	if m != nil {
		if m.Name != "" {
			// Istio joins with "." even when the rule has no name.
			out.Name = rule.Name + "." + m.Name
		}
		out.StatPrefix = m.StatPrefix
	}

	switch {
	case rule.Redirect != nil:
		rd, problem := redirect(rule.Redirect, l)
		if problem != nil {
			c.diags.warnf(hr.res, hr.field+".redirect."+problem.field, "%s", problem.msg)
			return nil
		}
		out.Redirect = rd
	case rule.DirectResponse != nil:
		out.DirectResponse = directResponse(rule.DirectResponse)
	case len(rule.Route) > 0:
		if !c.forward(out, v, hr, l) {
			return nil
		}
	default:
		c.diags.errorf(hr.res, hr.field, "rule has no route, redirect or directResponse; the route is dropped")
		return nil
	}

	f, problems := fault(rule.Fault)
	out.Fault = f
	c.reportProblems(hr, ".fault.", problems)
	cp, problems := cors(rule.CorsPolicy)
	out.CORS = cp
	c.reportProblems(hr, ".corsPolicy.", problems)
	return out
}

// fieldProblem is a finding about a field relative to the one being
// translated, which the caller reports with the full path.
type fieldProblem struct {
	field string
	msg   string
}

func (c *compiler) reportProblems(hr *httpRule, prefix string, problems []fieldProblem) {
	for _, p := range problems {
		c.diags.warnf(hr.res, hr.field+prefix+p.field, "%s", p.msg)
	}
}

// forward fills in the route action of out (istio route.go
// applyHTTPRouteDestination): destinations and weights, rewrite, host
// rewrite, mirrors, timeout and retries. It reports false when the rule
// has no usable destination.
func (c *compiler) forward(out *routing.Route, v *virtualService, hr *httpRule, l listener) bool {
	rule := hr.rule
	fw := &routing.Forward{}
	for _, rd := range rule.Route {
		if rd == nil || rd.Destination == nil {
			continue
		}
		weight := uint32(max(rd.Weight, 0))
		if len(rule.Route) == 1 {
			// A lone destination takes all traffic whatever its weight.
			if weight == 0 {
				weight = 100
			}
		} else if weight == 0 {
			// Istio drops weight-0 destinations when there are others.
			continue
		}
		d := c.destination(rd.Destination, hr.hostNS, v, l)
		d.Weight = weight
		d.Headers = headerOps(rd.Headers)
		fw.Destinations = append(fw.Destinations, d)
		fw.TotalWeight += weight
	}
	if len(fw.Destinations) == 0 {
		c.diags.errorf(hr.res, hr.field+".route", "no destination with a non-zero weight; the route is dropped")
		return false
	}
	out.Forward = fw

	if rw := rule.Rewrite; rw != nil {
		r := &routing.Rewrite{Authority: rw.Authority}
		if rr := rw.UriRegexRewrite; rr != nil {
			re, err := routing.NewRegexRewrite(rr.Match, rr.Rewrite)
			if err != nil {
				c.diags.errorf(hr.res, hr.field+".rewrite.uriRegexRewrite.match", "%v; the route is dropped", err)
				return false
			}
			r.Regex = re
		} else if rw.Uri != "" {
			r.URIPrefix, r.HasURIPrefix = rw.Uri, true
		}
		out.Rewrite = r
	}
	// A rewrite.authority wins over a Host set through headers (route.go
	// applyHTTPRouteDestination), so at most one of them is kept. With a
	// single destination its own Host header only applies when the route
	// sets none (route.go processDestination).
	if out.Rewrite != nil && out.Rewrite.Authority != "" {
		out.Headers.HostRewrite = ""
	}
	if len(fw.Destinations) == 1 && (out.Headers.HostRewrite != "" || out.Rewrite != nil && out.Rewrite.Authority != "") {
		fw.Destinations[0].Headers.HostRewrite = ""
	}

	out.Mirrors = c.mirrors(rule, hr, v, l)
	if rule.Timeout != nil {
		out.Timeout = rule.Timeout.AsDuration()
	}
	// Istio only relaxes the retry host predicate for consistent hashing
	// when the route has a single destination (route.go
	// applyHTTPRouteDestination).
	consistentHash := len(fw.Destinations) == 1 && fw.Destinations[0].Hash != nil
	retry, unknown := retryPolicy(rule.Retries, consistentHash)
	for _, tok := range unknown {
		c.diags.warnf(hr.res, hr.field+".retries.retryOn", "unknown retry condition %q is ignored", tok)
	}
	out.Retry = retry
	return true
}

// destination resolves a Destination written in namespace ns: its host, and
// the port of its cluster: the one given, else the service's only port,
// else the listener's (route.go GetDestinationCluster). An unknown host or
// subset still yields the destination; its cluster simply does not exist
// and the dataplane answers 503 NC, as Envoy does.
func (c *compiler) destination(d *networking.Destination, ns string, v *virtualService, l listener) *routing.Destination {
	host := config.ResolveHost(d.Host, ns, c.opts.ClusterDomain)
	svc := c.serviceFor(host, v)
	var explicit uint32
	port := l.port
	if p := d.GetPort().GetNumber(); p != 0 {
		explicit, port = p, p
	} else if svc != nil && len(svc.Ports) == 1 {
		port = svc.Ports[0].Number
	}
	svcNS := ""
	if svc != nil {
		svcNS = svc.Namespace
	}
	return &routing.Destination{
		Cluster: routing.ClusterName(port, d.Subset, host),
		Host:    host,
		Subset:  d.Subset,
		Port:    port,
		// Istio applies port-level hash settings only when the destination
		// names its port (route.go portLevelSettingsConsistentHash).
		Hash: c.drs.hashPolicy(host, svcNS, d.Subset, explicit),
	}
}

// serviceFor finds the service a destination host means. On sidecars that
// is the service visible to the proxy. On gateways Istio prefers the
// service in the VirtualService's namespace when the proxy may see it
// (gateway.go buildNameToServiceMapForHTTPRoutes).
func (c *compiler) serviceFor(host string, v *virtualService) *registry.Service {
	proxyNS := c.opts.Proxy.Namespace
	if c.opts.Proxy.Role == routing.RoleGateway && v != nil {
		if s := c.reg.Lookup(host, v.res.Namespace); s != nil && s.Namespace == v.res.Namespace &&
			config.ExportedTo(s.ExportTo, s.Namespace, proxyNS) {
			return s
		}
	}
	return c.reg.Lookup(host, proxyNS)
}

// mirrors translates mirror (with mirrorPercentage or the deprecated
// mirrorPercent) and mirrors[] (route.go MirrorPercent,
// MirrorPercentByPolicy): an absent percentage mirrors everything, an
// explicit 0 turns the mirror off.
func (c *compiler) mirrors(rule *networking.HTTPRoute, hr *httpRule, v *virtualService, l listener) []routing.Mirror {
	var out []routing.Mirror
	add := func(d *networking.Destination, ns string, per uint32) {
		dst := c.destination(d, ns, v, l)
		out = append(out, routing.Mirror{Cluster: dst.Cluster, Host: dst.Host, Subset: dst.Subset, Port: dst.Port, PerMillion: per})
	}
	if rule.Mirror != nil {
		per := uint32(routing.Million)
		switch {
		case rule.MirrorPercentage != nil:
			per = percentPerMillion(rule.MirrorPercentage)
		case rule.MirrorPercent != nil: // deprecated integer percent
			per = intPercentPerMillion(int64(rule.MirrorPercent.GetValue()))
		}
		if per > 0 {
			add(rule.Mirror, hr.mirrorNS, per)
		}
	}
	for _, m := range rule.Mirrors {
		if m == nil || m.Destination == nil {
			continue
		}
		per := uint32(routing.Million)
		if m.Percentage != nil {
			per = percentPerMillion(m.Percentage)
		}
		if per > 0 {
			add(m.Destination, hr.hostNS, per)
		}
	}
	return out
}

// redirect translates an HTTPRedirect (istio route.go ApplyRedirect). When
// a port is given or derived, an explicit :80 for http and :443 for https
// is left out. Redirect codes Envoy has no enum for make Istio drop the
// route; so does michi, with a warning.
func redirect(in *networking.HTTPRedirect, l listener) (*routing.Redirect, *fieldProblem) {
	out := &routing.Redirect{Path: in.Uri, Authority: in.Authority, Scheme: in.Scheme}
	if in.PrefixRewrite != "" {
		out.PrefixRewrite, out.HasPrefixRewrite = in.PrefixRewrite, true
	}
	if in.RedirectPort != nil {
		switch rp := in.RedirectPort.(type) {
		case *networking.HTTPRedirect_DerivePort:
			if rp.DerivePort == networking.HTTPRedirect_FROM_REQUEST_PORT {
				// Envoy cannot derive the port per request, but routes are
				// built per listener port, so that port is the request's.
				out.Port = l.port
			} else {
				out.DerivePort = routing.FromProtocolDefault
			}
		case *networking.HTTPRedirect_Port:
			out.Port = rp.Port
		}
		scheme := in.Scheme
		if scheme == "" {
			scheme = "http"
			if l.tls {
				scheme = "https"
			}
		}
		if out.Port == 80 && scheme == "http" || out.Port == 443 && scheme == "https" {
			out.Port = 0
		}
	}
	switch in.RedirectCode {
	case 0, 301:
		out.Code = 301
	case 302, 303, 307, 308:
		out.Code = int(in.RedirectCode)
	default:
		return nil, &fieldProblem{"redirectCode", fmt.Sprintf("redirect code %d is not supported by Envoy; Istio drops the route, and so does michi", in.RedirectCode)}
	}
	return out, nil
}

// directResponse translates an HTTPDirectResponse.
func directResponse(in *networking.HTTPDirectResponse) *routing.DirectResponse {
	out := &routing.DirectResponse{Status: int(in.Status)}
	switch b := in.GetBody().GetSpecifier().(type) {
	case *networking.HTTPBody_String_:
		out.Body = []byte(b.String_)
	case *networking.HTTPBody_Bytes:
		out.Body = b.Bytes
	}
	return out
}
