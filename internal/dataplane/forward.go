package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/upstream"
)

// pickDestination chooses one of the weighted destinations and notes its
// cluster for telemetry.
func (s *Server) pickDestination(ex *exchange, snap *Snapshot, f *routing.Forward) {
	dst := f.Destinations[0]
	if len(f.Destinations) > 1 && f.TotalWeight > 0 {
		dst = f.Pick(uint32(s.opts.Rand() % uint64(f.TotalWeight)))
	}
	ex.dest = dst
	ex.upCluster = dst.Cluster
	if c := snap.Clusters[dst.Cluster]; c != nil {
		ex.cluster = c.Config()
	}
}

// forward sends the request to the destination the route picked.
func (s *Server) forward(ex *exchange, snap *Snapshot, rt *routing.Route, dst *routing.Destination) {
	c := snap.Clusters[dst.Cluster]
	if c == nil {
		// A destination whose cluster does not exist (unknown host, or a
		// subset no DestinationRule defines): Envoy answers 503 NC.
		ex.flags |= flagNC
		ex.respOps = append(ex.respOps, &dst.Headers, &rt.Headers)
		ex.localReply(http.StatusServiceUnavailable, "", "cluster_not_found")
		return
	}
	s.forwardTo(ex, snap, rt, dst, c)
}

// forwardTo proxies the request to cluster c: header edits and rewrites,
// then tries with Envoy's retry semantics within the route timeout, then
// the response.
func (s *Server) forwardTo(ex *exchange, snap *Snapshot, rt *routing.Route, dst *routing.Destination, c *upstream.Cluster) {
	r := ex.r
	ex.dest = dst
	ex.upCluster = c.Name()
	ex.cluster = c.Config()
	ex.respOps = append(ex.respOps, &dst.Headers, &rt.Headers)

	// Request headers. Destination-level operations apply before
	// route-level ones, as Envoy applies the most specific level first.
	upgrade := isUpgrade(r)
	h := r.Header
	removeHopHeaders(h, upgrade)
	applyRequestOps(h, &dst.Headers)
	applyRequestOps(h, &rt.Headers)
	addForwardedHeaders(ex, h)

	authority, path := RewriteTarget(rt, dst, r.Host, ex.path)
	if path != ex.path {
		ex.rewritten = r.URL.RequestURI()
		h.Set("X-Envoy-Original-Path", ex.rewritten)
	}

	var hash uint64
	var hasHash bool
	if dst.Hash != nil {
		hash, hasHash = s.hashKey(ex, dst.Hash)
	}

	timeout := rt.Timeout
	if ex.grpc {
		if gt, ok := grpcTimeout(h.Get("Grpc-Timeout")); ok && (timeout == 0 || gt < timeout) {
			// Istio sets max_grpc_timeout to the route timeout (0 = no
			// cap), so a client's grpc-timeout is honoured up to it.
			timeout = gt
		}
	}
	ctx := r.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	var body *replayBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = newReplayBody(r.Body, s.opts.RetryBufferBytes)
	}
	attempt := &ex.attempt
	*attempt = attemptState{
		ex: ex, c: c, rt: rt, ctx: ctx, body: body, upgrade: upgrade,
		out: outbound{authority: authority, path: path},
		opts: upstream.AttemptOptions{
			Hash: hash, HasHash: hasHash,
			OriginalDst:     originalDst(r.Host, ex.port),
			DownstreamHTTP2: r.ProtoMajor == 2,
		},
	}
	resp := s.tries(attempt)
	if resp == nil {
		return
	}
	if len(rt.Mirrors) > 0 {
		s.mirror(ex, snap, rt, attempt)
	}
	s.respond(ex, resp, attempt)
}

// RewriteTarget returns the authority and path a request forwarded by
// route rt to destination dst carries, given its Host header and
// normalized path: the route's rewrite.authority, else a host rewrite in
// the route's headers, else in the destination's (a destination's
// authority applies only when the route sets none, istio route.go
// processDestination); the path after rewrite.uri (a prefix swap) or
// uriRegexRewrite. `michi explain` calls it too, to show what the
// upstream receives.
func RewriteTarget(rt *routing.Route, dst *routing.Destination, authority, path string) (string, string) {
	switch {
	case rt.Rewrite != nil && rt.Rewrite.Authority != "":
		authority = rt.Rewrite.Authority
	case rt.Headers.HostRewrite != "":
		authority = rt.Headers.HostRewrite
	case dst.Headers.HostRewrite != "":
		authority = dst.Headers.HostRewrite
	}
	if rw := rt.Rewrite; rw != nil {
		switch {
		case rw.HasURIPrefix:
			path = rewritePrefix(rt, path, rw.URIPrefix)
		case rw.Regex != nil:
			path = rw.Regex.Apply(path)
		}
	}
	return authority, path
}

// outbound is what every try sends.
type outbound struct {
	authority string
	path      string
}

// attemptState carries a request through its tries.
type attemptState struct {
	ex      *exchange
	c       *upstream.Cluster
	rt      *routing.Route
	ctx     context.Context
	body    *replayBody
	upgrade bool
	out     outbound
	opts    upstream.AttemptOptions
	tried   []string
	start   time.Time // of the try that produced the response
}

// tries runs the request with the route's retry policy and returns the
// response to forward, or nil when a local reply was already sent.
// Envoy's rules: the route timeout covers every try and backoff; a try is
// retried only when the retry policy names its outcome, the body can be
// replayed and the cluster's max_retries allows; backoff is fully jittered
// exponential from the base, capped.
func (s *Server) tries(a *attemptState) *http.Response {
	ex := a.ex
	policy := a.rt.Retry
	if a.upgrade {
		policy = nil // an upgraded connection cannot be replayed
	}
	for n := 0; ; n++ {
		a.opts.Retry = n > 0
		a.opts.Exclude = nil
		if policy != nil && policy.RetryOtherHosts && len(a.tried) > 0 {
			a.opts.Exclude = a.tried
			a.opts.HostSelectionAttempts = policy.HostSelectionAttempts
		}
		req, ok := a.request(n + 1)
		if !ok {
			// The previous try still holds the body (or it overflowed the
			// buffer); nothing more can be sent.
			ex.localReply(http.StatusServiceUnavailable, "upstream reset before headers: request body not replayable", "upstream_reset_before_response_started")
			return nil
		}
		tryCtx := a.ctx
		var cancel context.CancelFunc
		if policy != nil && policy.PerTryTimeout > 0 {
			tryCtx, cancel = context.WithTimeout(a.ctx, policy.PerTryTimeout)
		}
		a.start = time.Now()
		resp, att, err := a.c.RoundTrip(tryCtx, req.WithContext(tryCtx), a.opts)
		if att.Endpoint != "" {
			ex.upstream = att.Endpoint
			ex.upLabels = att.Labels
			a.tried = append(a.tried, att.Endpoint)
		}
		if err == nil {
			if cancel != nil {
				// The per-try timeout covers the time to response headers
				// (Envoy); the body may take longer, bounded by the route
				// timeout.
				resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
			}
			if policy == nil || !retryOnResponse(policy, resp) {
				return resp
			}
			if n >= int(policy.NumRetries) {
				if n > 0 {
					ex.flags |= flagURX
				}
				return resp
			}
			if !s.reserveRetry(a) {
				return resp
			}
			drain(resp)
		} else {
			if cancel != nil {
				cancel()
			}
			kind := classify(a, err)
			retriable := !kind.final && policy != nil && retryOnError(policy, kind)
			if retriable && n >= int(policy.NumRetries) && n > 0 {
				ex.flags |= flagURX
			}
			if !retriable || n >= int(policy.NumRetries) || !s.reserveRetry(a) {
				s.failTry(ex, kind)
				return nil
			}
		}
		if err := s.opts.Sleep(a.ctx, backoff(policy, n+1, s.opts.Rand)); err != nil {
			a.c.ReleaseRetry()
			s.failTry(ex, classify(a, err))
			return nil
		}
	}
}

// reserveRetry decides whether the next try may go: the body must be
// replayable, the route timeout not expired, and the cluster's retry
// circuit breaker (max_retries or the retry budget) must have room. On
// retry overflow Envoy forwards what it has rather than failing.
func (s *Server) reserveRetry(a *attemptState) bool {
	if !s.canRetry(a) || !a.c.ReserveRetry() {
		return false
	}
	a.opts.RetryReserved = true
	return true
}

// canRetry reports whether the body can be replayed and the route timeout
// has not expired.
func (s *Server) canRetry(a *attemptState) bool {
	if a.ctx.Err() != nil {
		return false
	}
	return a.body == nil || a.body.replayable()
}

// request builds the outbound request for try number n (1-based).
func (a *attemptState) request(n int) (*http.Request, bool) {
	r := a.ex.r
	var body io.ReadCloser
	if a.body != nil {
		t, ok := a.body.newTry(func(closed <-chan struct{}) bool {
			select {
			case <-closed:
				return true
			case <-time.After(time.Second):
				return false
			}
		})
		if !ok {
			return nil, false
		}
		body = t
	}
	h := r.Header
	// Istio enables x-envoy-attempt-count on every virtual host.
	if n < len(attemptCounts) {
		h["X-Envoy-Attempt-Count"] = attemptCounts[n]
	} else {
		h["X-Envoy-Attempt-Count"] = []string{strconv.Itoa(n)}
	}
	u := &url.URL{Scheme: "http", Host: a.out.authority, RawQuery: r.URL.RawQuery}
	if p, err := url.PathUnescape(a.out.path); err == nil {
		u.Path = p
		if u.EscapedPath() != a.out.path {
			u.RawPath = a.out.path
		}
	} else {
		u.Path = a.out.path
	}
	req := &http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          body,
		ContentLength: r.ContentLength,
		Host:          a.out.authority,
	}
	if body == nil {
		req.ContentLength = 0
	}
	return req, true
}

// Shared header values for the common cases, so that setting them does not
// allocate. They are never modified in place; appending to a header copies.
var (
	valueHTTP     = []string{"http"}
	valueEnvoy    = []string{"envoy"}
	attemptCounts = func() [][]string {
		v := make([][]string, 11)
		for i := range v {
			v[i] = []string{strconv.Itoa(i)}
		}
		return v
	}()
)

// outcome classifies a failed try.
type outcome struct {
	flag          flags
	status        int
	body, details string
	timeout       bool // the per-try timeout fired
	reset         bool // no response: connection failure, reset or termination
	beforeRequest bool
	refused       bool
	final         bool // never retried: overflow, no healthy host, route timeout, client gone
}

func classify(a *attemptState, err error) outcome {
	if a.ex.r.Context().Err() != nil {
		return outcome{flag: flagDC, final: true, details: "downstream_remote_disconnect"}
	}
	if a.ctx.Err() != nil {
		// The route timeout (or grpc-timeout) expired: 504 UT, never retried.
		return outcome{flag: flagUT, status: 504, body: "upstream request timeout", details: "upstream_response_timeout", final: true}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return outcome{flag: flagUT, status: 504, body: "upstream request timeout", details: "upstream_per_try_timeout", timeout: true}
	}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		switch ue.Flag {
		case "UO":
			return outcome{flag: flagUO, status: 503, body: "upstream connect error or disconnect/reset before headers. reset reason: overflow", details: "upstream_reset_before_response_started{overflow}", final: true}
		case "UH":
			return outcome{flag: flagUH, status: 503, body: "no healthy upstream", details: "no_healthy_upstream", final: true}
		case "UF":
			return outcome{flag: flagUF, status: 503, reset: true, beforeRequest: true,
				body:    "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
				details: "upstream_reset_before_response_started{connection_failure}"}
		case "UT":
			return outcome{flag: flagUT, status: 504, body: "upstream request timeout", details: "upstream_per_try_timeout", timeout: true}
		}
		o := outcome{flag: flagFromUpstream(ue.Flag), status: 503, reset: true, beforeRequest: ue.BeforeRequest, refused: ue.RefusedStream,
			body:    "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
			details: "upstream_reset_before_response_started{connection_termination}"}
		if o.flag == 0 {
			o.flag = flagUC
		}
		if ue.RefusedStream {
			o.body = "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset"
			o.details = "upstream_reset_before_response_started{remote_refused_stream_reset}"
		}
		return o
	}
	return outcome{flag: flagUC, status: 503, reset: true,
		body:    "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
		details: "upstream_reset_before_response_started{connection_termination}"}
}

// failTry sends the local reply for a try that got no response.
func (s *Server) failTry(ex *exchange, o outcome) {
	ex.flags |= o.flag
	if o.flag == flagDC {
		ex.details = o.details
		return // nobody to answer
	}
	if o.flag == flagUO {
		// Envoy marks circuit-breaker rejections so that clients can
		// tell local overload from an upstream 503.
		ex.w.Header().Set("X-Envoy-Overloaded", "true")
	}
	ex.localReply(o.status, o.body, o.details)
}

// retryOnError reports whether the policy retries a try that got no
// response (Envoy router_filter.rst x-envoy-retry-on).
func retryOnError(p *routing.RetryPolicy, o outcome) bool {
	on := p.RetryOn
	switch {
	case o.timeout:
		// A per-try timeout is a "read timeout": 5xx, gateway-error and
		// reset cover it.
		return on&(routing.Retry5xx|routing.RetryGatewayError|routing.RetryReset) != 0
	case o.refused && on.Has(routing.RetryRefusedStream):
		return true
	case o.beforeRequest && on&(routing.RetryConnectFailure|routing.RetryResetBeforeRequest) != 0:
		return true
	case o.reset:
		return on&(routing.Retry5xx|routing.RetryGatewayError|routing.RetryReset) != 0
	}
	return false
}

// retryOnResponse reports whether the policy retries a response.
func retryOnResponse(p *routing.RetryPolicy, resp *http.Response) bool {
	on := p.RetryOn
	code := resp.StatusCode
	switch {
	case code >= 500 && on.Has(routing.Retry5xx):
		return true
	case (code == 502 || code == 503 || code == 504) && on.Has(routing.RetryGatewayError):
		return true
	case code == 409 && on.Has(routing.RetryRetriable4xx):
		return true
	case on.Has(routing.RetryRetriableStatusCodes) && (p.RetriableStatus(code) || headerListsCode(resp.Request, code)):
		return true
	case on.Has(routing.RetryEnvoyRateLimited) && resp.Header.Get("X-Envoy-Ratelimited") != "":
		return true
	}
	if on&grpcRetryMask != 0 {
		// gRPC conditions look at grpc-status in the response headers
		// only (a trailers-only response), as Envoy does.
		if v := resp.Header.Get("Grpc-Status"); v != "" {
			switch v {
			case "1":
				return on.Has(routing.RetryGRPCCancelled)
			case "4":
				return on.Has(routing.RetryGRPCDeadlineExceeded)
			case "8":
				return on.Has(routing.RetryGRPCResourceExhausted)
			case "13":
				return on.Has(routing.RetryGRPCInternal)
			case "14":
				return on.Has(routing.RetryGRPCUnavailable)
			}
		}
	}
	return false
}

const grpcRetryMask = routing.RetryGRPCCancelled | routing.RetryGRPCDeadlineExceeded |
	routing.RetryGRPCResourceExhausted | routing.RetryGRPCInternal | routing.RetryGRPCUnavailable

// headerListsCode checks x-envoy-retriable-status-codes on the request.
func headerListsCode(req *http.Request, code int) bool {
	if req == nil {
		return false
	}
	v := req.Header.Get("X-Envoy-Retriable-Status-Codes")
	if v == "" {
		return false
	}
	for _, f := range strings.Split(v, ",") {
		if c, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && c == code {
			return true
		}
	}
	return false
}

// backoff returns the wait before retry n (1-based): uniformly random in
// [0, (2^n-1)*base), capped at max (Envoy: fully jittered, base 25ms, max
// 10x base).
func backoff(p *routing.RetryPolicy, n int, rnd func() uint64) time.Duration {
	base := p.BackoffBase
	if base <= 0 {
		base = 25 * time.Millisecond
	}
	max := p.BackoffMax
	if max <= 0 {
		max = 10 * base
	}
	limit := max
	if n < 30 {
		if l := time.Duration((uint64(1)<<uint(n))-1) * base; l < limit {
			limit = l
		}
	}
	if limit <= 0 {
		return 0
	}
	return time.Duration(rnd() % uint64(limit))
}

// drain discards a response that will be retried, so that its connection
// can be reused.
func drain(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// addForwardedHeaders sets x-forwarded-for, x-forwarded-proto and
// x-request-id (generated when absent, as Envoy does).
func addForwardedHeaders(ex *exchange, h http.Header) {
	if ip, _, err := net.SplitHostPort(ex.r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
		} else {
			h["X-Forwarded-For"] = []string{ip}
		}
	}
	if len(h["X-Forwarded-Proto"]) == 0 {
		h["X-Forwarded-Proto"] = valueHTTP
	}
	if len(h["X-Request-Id"]) == 0 {
		h["X-Request-Id"] = []string{newRequestID(ex.s.opts.Rand)}
	}
}

// originalDst is where a passthrough request goes: the Host, with the
// request's port.
func originalDst(authority string, port uint32) string {
	host := routing.StripPort(authority)
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// grpcTimeout parses a grpc-timeout header ("100m", "2S").
func grpcTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}
