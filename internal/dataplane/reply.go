package dataplane

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/michi-mesh/michi/internal/routing"
)

// responseWriter records what was sent downstream, for logs and metrics.
type responseWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wroteHeader = true
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// grpcStatus is the grpc-status sent, from the trailers or a trailers-only
// response's headers.
func (w *responseWriter) grpcStatus() string {
	h := w.Header()
	if v := h.Get("Grpc-Status"); v != "" {
		return v
	}
	return h.Get(http.TrailerPrefix + "Grpc-Status")
}

// countingBody counts request body bytes for %BYTES_RECEIVED%.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// reply sends a response made by the proxy itself, with the route's
// response header operations, as Envoy applies them to local replies too.
func (ex *exchange) reply(status int, body []byte, details string) {
	ex.details = details
	h := ex.w.Header()
	if len(body) > 0 {
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "text/plain")
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	ex.decorateResponse(h)
	ex.w.WriteHeader(status)
	if len(body) > 0 && ex.r.Method != http.MethodHead {
		ex.w.Write(body)
	}
}

// localReply answers with an error made by the proxy. gRPC callers get a
// trailers-only response with the status mapped the way Envoy maps HTTP
// statuses to gRPC codes, because a gRPC client cannot read an HTTP error.
func (ex *exchange) localReply(status int, body, details string) {
	if ex.grpc {
		ex.grpcReply(httpToGRPC(status), body, details)
		return
	}
	ex.reply(status, []byte(body), details)
}

// grpcReply sends a trailers-only gRPC response.
func (ex *exchange) grpcReply(code int, message, details string) {
	ex.details = details
	h := ex.w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	if message != "" {
		h.Set("Grpc-Message", grpcEncodeMessage(message))
	}
	ex.decorateResponse(h)
	ex.w.WriteHeader(http.StatusOK)
}

// httpToGRPC maps an HTTP status to a gRPC code as Envoy does
// (Grpc::Utility::httpToGrpcStatus, after the gRPC HTTP mapping spec).
func httpToGRPC(status int) int {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// grpcEncodeMessage percent-encodes a grpc-message value (gRPC HTTP/2
// protocol: printable ASCII except '%' is sent as-is).
func grpcEncodeMessage(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
		}
	}
	return s
}

// decorateResponse applies what every response from the route gets:
// header operations, CORS headers and a generated hash cookie.
func (ex *exchange) decorateResponse(h http.Header) {
	for _, ops := range ex.respOps {
		applyResponseOps(h, ops)
	}
	if ex.cors != nil && ex.origin != "" {
		addCORSResponseHeaders(h, ex.cors, ex.origin)
	}
	if ex.setCookie != "" {
		h.Add("Set-Cookie", ex.setCookie)
	}
}

// redirect answers with the Location Envoy builds for the route's
// redirect. The mesh listener is plaintext, so the request's scheme is
// http.
func (s *Server) redirect(ex *exchange, rd *routing.Redirect) {
	r := ex.r
	ex.w.Header().Set("Location", RedirectLocation(ex.route, rd, "http", r.Host, ex.path, r.URL.RawQuery))
	code := rd.Code
	if code == 0 {
		code = http.StatusMovedPermanently
	}
	ex.reply(code, nil, "redirect")
}

// RedirectLocation is the Location Envoy builds for redirect rd of route
// rt (RouteEntryImplBase newUri), for a request that arrived with scheme
// reqScheme, Host header host, normalized path and raw query: the
// redirect's scheme or the request's; the redirect's authority as written,
// or the request's host, dropping its port when a new port is given or
// when the scheme changes and the port was the old scheme's default; the
// redirect port if any. No other port is removed, so FROM_PROTOCOL_DEFAULT
// keeps a non-default request port, as in Envoy. rt is read only for a
// prefix rewrite and may be nil otherwise. `michi explain` calls it too,
// so that it shows the Location the proxy sends.
func RedirectLocation(rt *routing.Route, rd *routing.Redirect, reqScheme, host, path, rawQuery string) string {
	scheme := reqScheme
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	if rd.Authority != "" {
		host = rd.Authority
	} else {
		h, port, _ := splitAuthority(host, 0)
		if port != 0 && (rd.Port != 0 || scheme != reqScheme && port == defaultPort(reqScheme)) {
			host = h
		}
	}
	query := rawQuery
	switch {
	case rd.Path != "":
		path = rd.Path
		if p, q, ok := strings.Cut(path, "?"); ok {
			path, query = p, q
		}
	case rd.HasPrefixRewrite:
		path = rewritePrefix(rt, path, rd.PrefixRewrite)
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if rd.Port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(rd.Port)))
	}
	if !strings.HasPrefix(path, "/") {
		b.WriteByte('/')
	}
	b.WriteString(path)
	if query != "" {
		b.WriteByte('?')
		b.WriteString(query)
	}
	return b.String()
}

func defaultPort(scheme string) uint32 {
	switch scheme {
	case "http":
		return 80
	case "https":
		return 443
	}
	return 0
}

// rewritePrefix swaps the part of path the route matched for repl, as
// Envoy's prefix_rewrite does: the matched prefix for a prefix match (a
// route without a uri match matched "/"), the whole path for exact and
// regex matches. It is a plain string swap, so prefix /foo with rewrite /
// turns /foo/bar into //bar, exactly like Envoy (istio/istio#26828).
func rewritePrefix(rt *routing.Route, path, repl string) string {
	switch rt.Match.PathKind {
	case routing.PathPrefix:
		n := len(rt.Match.Path.Value)
		if n > len(path) {
			n = len(path)
		}
		return repl + path[n:]
	case routing.PathAny:
		return repl + strings.TrimPrefix(path, "/")
	default:
		return repl
	}
}
