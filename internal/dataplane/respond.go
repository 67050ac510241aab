package dataplane

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// respond streams the upstream response to the client: headers with the
// route's edits, then the body (flushed as it arrives when its length is
// unknown, for gRPC and server-sent events), then trailers.
func (s *Server) respond(ex *exchange, resp *http.Response, a *attemptState) {
	defer resp.Body.Close()
	ex.upDuration = time.Since(a.start)
	ex.hasUpTime = true
	ex.details = "via_upstream"

	if resp.StatusCode == http.StatusSwitchingProtocols {
		s.upgrade(ex, resp)
		return
	}

	h := ex.w.Header()
	removeHopHeaders(resp.Header, false)
	for k, vv := range resp.Header {
		h[k] = vv
	}
	// Envoy overwrites Server (server_header_transformation OVERWRITE) and
	// reports how long the upstream took.
	h["Server"] = valueEnvoy
	h["X-Envoy-Upstream-Service-Time"] = []string{strconv.FormatInt(ex.upDuration.Milliseconds(), 10)}
	ex.decorateResponse(h)
	announceTrailers(h, resp)
	ex.w.WriteHeader(resp.StatusCode)

	streaming := resp.ContentLength < 0 || ex.grpc
	if err := s.copyBody(ex.w, resp.Body, streaming); err != nil {
		if ex.r.Context().Err() != nil {
			ex.flags |= flagDC
			ex.details = "downstream_remote_disconnect"
		} else {
			// The upstream went away mid-body: Envoy resets the stream;
			// net/http does the same when the handler panics with
			// ErrAbortHandler.
			ex.flags |= flagUC
			ex.details = "upstream_reset_after_response_started{connection_termination}"
			ex.finish() // the panic skips nothing else, but log before it
			panic(http.ErrAbortHandler)
		}
		return
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

// announceTrailers declares the trailers the upstream said it will send,
// so HTTP/1.1 clients see a Trailer header as they would from the origin.
func announceTrailers(h http.Header, resp *http.Response) {
	if len(resp.Trailer) == 0 {
		return
	}
	names := make([]string, 0, len(resp.Trailer))
	for k := range resp.Trailer {
		names = append(names, k)
	}
	h["Trailer"] = []string{strings.Join(names, ", ")}
}

// copyBody copies with a pooled buffer. With streaming, every chunk is
// flushed as soon as it arrives.
func (s *Server) copyBody(w *responseWriter, body io.Reader, streaming bool) error {
	bp := s.bufPool.Get().(*[]byte)
	defer s.bufPool.Put(bp)
	buf := *bp
	var flusher http.Flusher
	if streaming {
		flusher, _ = w.ResponseWriter.(http.Flusher)
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// upgrade completes a protocol upgrade (WebSocket and others): it answers
// the client with the upstream's 101, then copies bytes both ways until
// either side closes, half-closing the other like Envoy's upgrade filter.
func (s *Server) upgrade(ex *exchange, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		ex.localReply(http.StatusBadGateway, "upstream upgrade response has no connection", "upgrade_failed")
		return
	}
	conn, brw, err := http.NewResponseController(ex.w.ResponseWriter).Hijack()
	if err != nil {
		up.Close()
		ex.localReply(http.StatusInternalServerError, "cannot upgrade this connection", "upgrade_failed")
		return
	}
	defer conn.Close()
	ex.w.status, ex.w.wroteHeader = http.StatusSwitchingProtocols, true

	// Write the 101 exactly as the upstream sent it, with our edits.
	resp.Header["Server"] = []string{"envoy"}
	ex.decorateResponse(resp.Header)
	bw := brw.Writer
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	resp.Header.Write(bw)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		up.Close()
		return
	}
	done := make(chan int64, 2)
	go func() { done <- upgradeCopy(up, brw.Reader) }()
	go func() { done <- upgradeCopy(conn, up) }()
	ex.w.bytes += <-done
	// One direction ended; let the other finish what is in flight.
	select {
	case n := <-done:
		ex.w.bytes += n
	case <-time.After(5 * time.Second):
	}
	up.Close()
}

// upgradeCopy copies one direction of an upgraded connection and then
// half-closes the destination when it can.
func upgradeCopy(dst io.Writer, src io.Reader) int64 {
	n, _ := io.Copy(dst, src)
	switch c := dst.(type) {
	case *net.TCPConn:
		c.CloseWrite()
	case interface{ CloseWrite() error }:
		c.CloseWrite()
	}
	return n
}
