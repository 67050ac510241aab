package dataplane

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/michi-mesh/michi/internal/routing"
	"github.com/michi-mesh/michi/internal/upstream"
)

// mirrorTimeout bounds a mirror request; nobody waits for it, but it must
// not hold a connection forever.
const mirrorTimeout = 30 * time.Second

// mirror sends fire-and-forget copies of the request to the route's
// mirror destinations, each with its own chance, as Envoy's
// request_mirror_policies do. A mirror never delays or fails the primary:
// it starts once the primary has its response headers, only if the whole
// request body was read and kept, and is dropped when too many mirrors are
// already in flight.
func (s *Server) mirror(ex *exchange, snap *Snapshot, rt *routing.Route, a *attemptState) {
	var body []byte
	if a.body != nil {
		b, complete := a.body.complete()
		if !complete {
			return
		}
		body = b
	}
	for i := range rt.Mirrors {
		m := &rt.Mirrors[i]
		if !s.chance(m.PerMillion) {
			continue
		}
		c := snap.Clusters[m.Cluster]
		if c == nil {
			continue
		}
		select {
		case s.mirrors <- struct{}{}:
		default:
			continue // at the bound: drop rather than queue
		}
		req := s.mirrorRequest(ex, a, body)
		go func() {
			defer func() { <-s.mirrors }()
			ctx, cancel := context.WithTimeout(context.Background(), mirrorTimeout)
			defer cancel()
			resp, _, err := c.RoundTrip(ctx, req.WithContext(ctx), upstream.AttemptOptions{OriginalDst: a.opts.OriginalDst})
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
}

// mirrorRequest copies the outbound request. Istio 1.28+ keeps the Host
// as is; with ShadowHostSuffix (--compat 1.27) "-shadow" is appended to
// the host part, as Envoy does by default.
func (s *Server) mirrorRequest(ex *exchange, a *attemptState, body []byte) *http.Request {
	r := ex.r
	host := a.out.authority
	if s.opts.ShadowHostSuffix {
		h, port, _ := strings.Cut(host, ":")
		host = h + "-shadow"
		if port != "" {
			host += ":" + port
		}
	}
	u := &url.URL{Scheme: "http", Host: host, Path: ex.r.URL.Path, RawPath: ex.r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if a.out.path != ex.path {
		u.Path, u.RawPath = a.out.path, ""
	}
	out := http.Request{
		Method:     r.Method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     r.Header.Clone(),
		Host:       host,
	}
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
	}
	return &out
}
