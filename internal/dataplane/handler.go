package dataplane

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/telemetry"
)

// exchange is one request's state as it moves through the pipeline.
type exchange struct {
	s      *Server
	w      *responseWriter
	r      *http.Request
	start  time.Time
	flags  flags
	grpc   bool
	port   uint32
	path   string // normalized path without query
	origin string // the Origin header, when CORS applies

	route      *routing.Route
	dest       *routing.Destination
	cluster    *routing.Cluster
	respOps    []*routing.HeaderOps // response header operations to apply, in order
	setCookie  string               // a generated hash cookie
	details    string               // Envoy %RESPONSE_CODE_DETAILS%
	rewritten  string               // original :path when a rewrite changed it
	upstream   string               // endpoint address
	upCluster  string
	upLabels   map[string]string
	upDuration time.Duration
	hasUpTime  bool
	cors       *routing.CORS
	finished   bool

	// Held by value so that one allocation serves the whole exchange.
	rw      responseWriter
	attempt attemptState
}

// ServeHTTP is the pipeline: route lookup, filters, action, telemetry.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	ex := &exchange{s: s, r: r, start: time.Now()}
	ex.rw.ResponseWriter = rw
	ex.w = &ex.rw
	defer ex.finish()
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body}
	}
	ex.grpc = isGRPC(r)

	snap := s.snap.Load()
	if snap == nil {
		ex.localReply(http.StatusServiceUnavailable, "no configuration loaded", "no_configuration")
		return
	}
	t := snap.Table

	req, host, port, ok := RequestView(r, s.opts.DefaultPort)
	if !ok {
		ex.localReply(http.StatusBadRequest, "invalid :authority", "invalid_authority")
		return
	}
	ex.port = port
	ex.path = req.Path

	var vh *routing.VirtualHost
	rc := t.HTTP[port]
	if rc == nil {
		rc = t.Default
	}
	if rc != nil {
		vh = rc.Lookup(host)
	}
	if vh == nil {
		s.outbound(ex, snap, host, port)
		return
	}
	rt, _ := vh.Match(&req)
	if rt == nil {
		// Envoy answers 404 with no body and flag NR.
		ex.flags |= flagNR
		ex.localReply(http.StatusNotFound, "", "route_not_found")
		return
	}
	ex.route = rt
	if rt.Forward != nil {
		// Envoy picks the weighted cluster when it resolves the route,
		// before the filters run, so a request a fault aborts is still
		// reported against its destination service.
		s.pickDestination(ex, snap, rt.Forward)
	}
	if rt.CORS != nil && s.cors(ex, rt.CORS) {
		return
	}
	if rt.Fault != nil && !s.fault(ex, rt.Fault) {
		return
	}
	switch {
	case rt.DirectResponse != nil:
		ex.respOps = append(ex.respOps, &rt.Headers)
		ex.reply(rt.DirectResponse.Status, rt.DirectResponse.Body, "direct_response")
	case rt.Redirect != nil:
		ex.respOps = append(ex.respOps, &rt.Headers)
		s.redirect(ex, rt.Redirect)
	case rt.Forward != nil:
		s.forward(ex, snap, rt, ex.dest)
	default:
		ex.localReply(http.StatusInternalServerError, "route has no action", "no_action")
	}
}

// RequestView is what routing sees of r on the mesh listener: the host
// and port of its Host header, the port defaulting to defaultPort (the
// listener stands in for every outbound port, as Istio's outbound HTTP
// listener on port 80 does), and the routing.Request with the path
// normalized. The listener is plaintext, so the scheme is http. ok is
// false for a malformed port. `michi explain` calls it too, so that it
// routes exactly what the proxy would.
func RequestView(r *http.Request, defaultPort uint32) (req routing.Request, host string, port uint32, ok bool) {
	host, port, ok = splitAuthority(r.Host, defaultPort)
	if !ok {
		return routing.Request{}, "", 0, false
	}
	req = routing.Request{
		Method:    r.Method,
		Scheme:    "http",
		Authority: r.Host,
		Path:      normalizePath(requestPath(r)),
		RawQuery:  r.URL.RawQuery,
		Header:    r.Header,
	}
	return req, host, port, true
}

// outbound handles a host no route configuration knows, following the
// outbound traffic policy: ALLOW_ANY passes it through to the host's own
// address, REGISTRY_ONLY answers 502 as Istio's BlackHoleCluster does.
func (s *Server) outbound(ex *exchange, snap *Snapshot, host string, port uint32) {
	if snap.Table.OutboundPolicy == routing.RegistryOnly || s.opts.Passthrough == nil {
		ex.upCluster = routing.BlackHoleCluster
		ex.localReply(http.StatusBadGateway, "", "direct_response")
		return
	}
	ex.route = passthroughRoute
	s.forwardTo(ex, snap, passthroughRoute, passthroughDest, s.opts.Passthrough)
}

// passthroughRoute is Istio's "allow_any" route: everything, to the
// PassthroughCluster, with the default retry policy.
var (
	passthroughDest  = &routing.Destination{Cluster: routing.PassthroughCluster, Weight: 100}
	passthroughRoute = &routing.Route{
		Name:       "allow_any",
		MatchIndex: -1,
		Match:      routing.Match{PathKind: routing.PathAny},
		Forward:    &routing.Forward{Destinations: []*routing.Destination{passthroughDest}, TotalWeight: 100},
		Retry:      routing.DefaultRetryPolicy(),
	}
)

// splitAuthority returns the host and port of a Host header; the port
// defaults to def. ok is false for a malformed port.
func splitAuthority(authority string, def uint32) (host string, port uint32, ok bool) {
	host = authority
	i := strings.LastIndexByte(authority, ':')
	if i < 0 || strings.IndexByte(authority[i:], ']') >= 0 {
		return host, def, true
	}
	if strings.IndexByte(authority[:i], ':') >= 0 && !strings.HasPrefix(authority, "[") {
		return host, def, true // bare IPv6 literal
	}
	p, err := strconv.ParseUint(authority[i+1:], 10, 16)
	if err != nil || p == 0 {
		return "", 0, false
	}
	return authority[:i], uint32(p), true
}

func requestPath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

// normalizePath removes dot segments (RFC 3986 §5.2.4), as Envoy's
// normalize_path does for Istio (PATH_NORMALIZATION BASE). Paths without
// dot segments are returned unchanged without allocating.
func normalizePath(p string) string {
	if !strings.Contains(p, "/.") {
		return p
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		switch s {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	res := strings.Join(out, "/")
	if !strings.HasPrefix(res, "/") {
		res = "/" + res
	}
	return res
}

func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// finish writes the access log and metrics for the exchange, once.
func (ex *exchange) finish() {
	if ex.finished {
		return
	}
	ex.finished = true
	s := ex.s
	if s.opts.AccessLog == nil && s.opts.Metrics == nil {
		return
	}
	r := ex.r
	if r.Context().Err() != nil && !ex.w.wroteHeader {
		ex.flags |= flagDC
	}
	rec := telemetry.Record{
		StartTime:               ex.start,
		Method:                  r.Method,
		Path:                    r.URL.RequestURI(),
		Protocol:                r.Proto,
		ResponseCode:            ex.w.status,
		ResponseFlags:           ex.flags.String(),
		ResponseCodeDetails:     ex.details,
		BytesReceived:           ex.bytesReceived(),
		BytesSent:               ex.w.bytes,
		Duration:                time.Since(ex.start),
		UpstreamServiceTime:     ex.upDuration,
		HasUpstreamServiceTime:  ex.hasUpTime,
		XForwardedFor:           r.Header.Get("X-Forwarded-For"),
		UserAgent:               r.Header.Get("User-Agent"),
		RequestID:               r.Header.Get("X-Request-Id"),
		Authority:               r.Host,
		UpstreamHost:            ex.upstream,
		UpstreamCluster:         ex.upCluster,
		DownstreamRemoteAddress: r.RemoteAddr,
		RequestProtocol:         "http",
	}
	if ex.rewritten != "" {
		rec.Path = ex.rewritten
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		rec.DownstreamLocalAddress = la.String()
	}
	if ex.route != nil {
		rec.RouteName = ex.route.Name
	}
	switch c := ex.cluster; {
	case c != nil && c.Host != "":
		rec.DestinationService = c.Host
		rec.DestinationName, _, _ = strings.Cut(c.Host, ".")
		rec.DestinationNamespace = c.Namespace
		rec.DestinationSubset = c.Subset
	case ex.upCluster == routing.PassthroughCluster || ex.upCluster == routing.BlackHoleCluster:
		// Istio reports traffic to unknown hosts by address, with the
		// pseudo-cluster as the service name.
		rec.DestinationService = originalDst(r.Host, ex.port)
		rec.DestinationName = ex.upCluster
	}
	rec.SetEndpointLabels(ex.upLabels)
	if ex.grpc {
		rec.RequestProtocol = "grpc"
		rec.GRPCStatus = ex.w.grpcStatus()
	}
	if s.opts.AccessLog != nil {
		s.opts.AccessLog.Log(&rec)
	}
	if s.opts.Metrics != nil {
		s.opts.Metrics.Observe(&rec)
	}
}

func (ex *exchange) bytesReceived() int64 {
	if b, ok := ex.r.Body.(*countingBody); ok {
		return b.n
	}
	return 0
}
