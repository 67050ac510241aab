package dataplane

import (
	"net/http"
	"strings"

	"github.com/michi-mesh/michi/internal/routing"
)

// cors applies a route's CORS policy like Envoy's CORS filter. It returns
// true when it answered the request itself (a preflight).
func (s *Server) cors(ex *exchange, c *routing.CORS) bool {
	r := ex.r
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	allowed := c.OriginAllowed(origin)
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !preflight {
		if allowed {
			ex.cors, ex.origin = c, origin
		}
		return false
	}
	if !allowed {
		if c.ForwardNotMatchingPreflights {
			return false
		}
		// unmatchedPreflights: IGNORE answers the preflight without CORS
		// headers, so the browser blocks the request.
		ex.reply(http.StatusOK, nil, "cors_response")
		return true
	}
	h := ex.w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if c.AllowCredentials != nil && *c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.AllowMethods != "" {
		h.Set("Access-Control-Allow-Methods", c.AllowMethods)
	}
	if c.AllowHeaders != "" {
		h.Set("Access-Control-Allow-Headers", c.AllowHeaders)
	}
	if c.MaxAge != "" {
		h.Set("Access-Control-Max-Age", c.MaxAge)
	}
	ex.reply(http.StatusOK, nil, "cors_response")
	return true
}

// addCORSResponseHeaders marks an actual (non-preflight) response from an
// allowed origin.
func addCORSResponseHeaders(h http.Header, c *routing.CORS, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	if c.AllowCredentials != nil && *c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.ExposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", c.ExposeHeaders)
	}
}

// fault injects the route's delay and abort, each with its own chance, as
// Envoy's fault filter does. It returns false when it answered the
// request (an abort) or the client went away during the delay.
func (s *Server) fault(ex *exchange, f *routing.Fault) bool {
	if d := f.Delay; d != nil && s.chance(d.PerMillion) {
		ex.flags |= flagDI
		if err := s.opts.Sleep(ex.r.Context(), d.Duration); err != nil {
			ex.flags |= flagDC
			ex.details = "downstream_remote_disconnect"
			return false
		}
	}
	if a := f.Abort; a != nil && s.chance(a.PerMillion) {
		ex.flags |= flagFI
		ex.respOps = append(ex.respOps, &ex.route.Headers)
		if a.IsGRPC {
			ex.grpcReply(a.GRPCStatus, "fault filter abort", "fault_filter_abort")
			return false
		}
		ex.localReply(a.HTTPStatus, "fault filter abort", "fault_filter_abort")
		return false
	}
	return true
}

// chance reports true with probability perMillion/1e6.
func (s *Server) chance(perMillion uint32) bool {
	if perMillion == 0 {
		return false
	}
	if perMillion >= routing.Million {
		return true
	}
	return s.opts.Rand()%routing.Million < uint64(perMillion)
}

// applyRequestOps edits request headers: set overwrites, add appends,
// remove deletes (Envoy OVERWRITE_IF_EXISTS_OR_ADD, APPEND_IF_EXISTS_OR_ADD).
func applyRequestOps(h http.Header, ops *routing.HeaderOps) {
	for _, hd := range ops.RequestSet {
		h[hd.Name] = []string{hd.Value}
	}
	for _, hd := range ops.RequestAdd {
		h[hd.Name] = append(h[hd.Name], hd.Value)
	}
	for _, name := range ops.RequestRemove {
		delete(h, name)
	}
}

func applyResponseOps(h http.Header, ops *routing.HeaderOps) {
	for _, hd := range ops.ResponseSet {
		h[hd.Name] = []string{hd.Value}
	}
	for _, hd := range ops.ResponseAdd {
		h[hd.Name] = append(h[hd.Name], hd.Value)
	}
	for _, name := range ops.ResponseRemove {
		delete(h, name)
	}
}

// hopHeaders are removed when proxying (RFC 9110 §7.6.1), as
// httputil.ReverseProxy and Envoy do.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes hop-by-hop headers and those named in
// Connection. It keeps "TE: trailers" (gRPC needs it) and, for upgrade
// requests, Connection and Upgrade.
func removeHopHeaders(h http.Header, keepUpgrade bool) {
	if c := h["Connection"]; len(c) > 0 {
		for _, v := range c {
			for _, f := range strings.Split(v, ",") {
				if f = textprotoTrim(f); f != "" {
					name := http.CanonicalHeaderKey(f)
					if keepUpgrade && name == "Upgrade" {
						continue
					}
					delete(h, name)
				}
			}
		}
	}
	te := h.Get("Te")
	var upgrade string
	if keepUpgrade {
		upgrade = h.Get("Upgrade")
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
	if strings.EqualFold(strings.TrimSpace(te), "trailers") {
		h["Te"] = []string{"trailers"}
	}
	if upgrade != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upgrade}
	}
}

func textprotoTrim(s string) string { return strings.TrimSpace(s) }

// isUpgrade reports an HTTP/1.1 protocol upgrade request, like WebSocket.
func isUpgrade(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	return headerHasToken(r.Header, "Connection", "upgrade") && r.Header.Get("Upgrade") != ""
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}
