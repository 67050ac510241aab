package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// attempt is one try in flight. It holds the request's share of every
// counter (the host's active requests, the cluster's active requests and
// retries, the connection lease) and gives them back exactly once, when
// the response body reaches its end or is closed, or when the try fails.
// It is the response body the caller reads.
type attempt struct {
	c        *Cluster
	m        *member
	p        *pool
	pc       *pconn
	body     io.ReadCloser
	retry    bool
	attached bool // counted in upstream_rq_active
	done     atomic.Bool
}

func (a *attempt) finish() {
	if a.done.Swap(true) {
		return
	}
	a.m.host.Active.Add(-1)
	a.m.ep.active.Add(-1)
	s := &a.c.stats
	if a.attached {
		s.rqActive.Add(-1)
	}
	if a.retry {
		s.rqRetryActive.Add(-1)
	}
	if a.pc != nil {
		a.p.end(a.pc, a)
	}
}

// Read reads the response body; its end ends the request.
func (a *attempt) Read(b []byte) (int, error) {
	n, err := a.body.Read(b)
	if err != nil {
		a.finish()
	}
	return n, err
}

// Close closes the response body and ends the request.
func (a *attempt) Close() error {
	err := a.body.Close()
	a.finish()
	return err
}

// tunnel is the body of a 101 Switching Protocols response: the
// connection itself, both ways. The exchange ends when it is closed.
type tunnel struct {
	a   *attempt
	rwc io.ReadWriteCloser
}

func (t *tunnel) Read(b []byte) (int, error)  { return t.rwc.Read(b) }
func (t *tunnel) Write(b []byte) (int, error) { return t.rwc.Write(b) }
func (t *tunnel) Close() error {
	err := t.rwc.Close()
	t.a.finish()
	return err
}

// ReserveRetry takes a slot of the cluster's max_retries (or of its retry
// budget) for a retry about to be scheduled. Envoy checks its retry
// circuit breaker when it decides to retry, and on overflow it does not
// retry but forwards the response it has, counting
// upstream_rq_retry_overflow; a false return asks the caller to do the
// same. The slot is freed by the RoundTrip it is passed to
// (AttemptOptions.RetryReserved) or, if the retry is abandoned, by
// ReleaseRetry.
func (c *Cluster) ReserveRetry() bool {
	st := c.state.Load()
	s := &c.stats
	if !tryAcquire(&s.rqRetryActive, st.retryLimit(s)) {
		s.rqRetryOverflow.Add(1)
		return false
	}
	return true
}

// ReleaseRetry frees a slot taken with ReserveRetry that no RoundTrip
// used.
func (c *Cluster) ReleaseRetry() { c.stats.rqRetryActive.Add(-1) }

func (c *Cluster) roundTrip(ctx context.Context, req *http.Request, opts AttemptOptions) (*http.Response, Attempt, error) {
	st := c.state.Load()
	s := &c.stats
	if st.err != nil {
		if opts.Retry && opts.RetryReserved {
			s.rqRetryActive.Add(-1)
		}
		return nil, Attempt{}, configError(c, st.err)
	}
	if opts.Retry {
		if !opts.RetryReserved && !tryAcquire(&s.rqRetryActive, st.retryLimit(s)) {
			s.rqRetryOverflow.Add(1)
			return nil, Attempt{}, overflow("max retries")
		}
		s.rqRetry.Add(1)
	}
	m := c.pick(st, &opts)
	if m == nil {
		if opts.Retry {
			s.rqRetryActive.Add(-1)
		}
		s.cxNoneHealthy.Add(1)
		err := ErrNoHealthyUpstream
		if st.originalDst && opts.OriginalDst == "" {
			err = fmt.Errorf("%w: %w", ErrNoHealthyUpstream, errNoOriginalDst)
		}
		return nil, Attempt{}, &Error{Flag: "UH", BeforeRequest: true, Err: err}
	}
	a := &attempt{c: c, m: m, retry: opts.Retry}
	m.host.Active.Add(1)
	m.ep.active.Add(1)
	att := m.attempt()

	key := poolKey{prof: m.prof, proto: st.proto.choose(req, opts.DownstreamHTTP2)}
	if t := m.prof.tls; t != nil {
		key.sni = t.sni
		if key.sni == "" {
			key.sni = hostOnly(requestHost(req))
		}
	}
	a.p = m.ep.pool(key)
	pc, err := a.p.acquire(ctx, st)
	if err != nil {
		a.finish()
		return nil, att, c.acquireError(st, m, err)
	}
	// max_requests is checked when the request is given a connection, as
	// Envoy does when it attaches a stream; its overflow is counted as a
	// pending overflow (Envoy upstream_rq_pending_overflow covers both).
	if !tryAcquire(&s.rqActive, st.limits.maxRequests) {
		pc.cc.Release()
		a.p.release(pc)
		a.finish()
		s.rqPendingOverflow.Add(1)
		return nil, att, overflow("max requests")
	}
	a.attached, a.pc = true, pc
	s.rqTotal.Add(1)
	m.ep.total.Add(1)
	c.reportLocal(st, m.ep, localConnectSuccess)

	a.p.begin(pc, a, isUpgrade(req))
	written := pc.mc.written.Load()
	resp, err := pc.cc.RoundTrip(req)
	a.p.delivered(pc)
	if err != nil {
		e := c.requestError(st, m, ctx, pc, written, err)
		a.finish()
		return nil, att, e
	}
	s.recordStatus(resp.StatusCode)
	if resp.StatusCode >= 500 {
		m.ep.errors.Add(1)
	}
	c.reportStatus(st, m.ep, resp.StatusCode)
	a.body = resp.Body
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &tunnel{a: a, rwc: rwc}
	} else {
		resp.Body = a
	}
	return resp, att, nil
}

// requestHost is the Host the request is for, which auto SNI uses.
func requestHost(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	return req.URL.Host
}

// acquireError classifies a failure to get a connection.
func (c *Cluster) acquireError(st *clusterState, m *member, err error) error {
	s := &c.stats
	var ue *Error
	switch {
	case errors.As(err, &ue):
		if ue.Flag == "UF" {
			m.ep.errors.Add(1)
			c.reportLocal(st, m.ep, localConnectFailed)
		}
		return ue
	case errors.Is(err, context.DeadlineExceeded):
		// The try's time ran out while it waited for a connection; no
		// connection failed, so outlier detection is not told (Envoy
		// reports a timeout only for a request that reached a host).
		s.rqTimeout.Add(1)
		return &Error{Flag: "UT", BeforeRequest: true, Err: fmt.Errorf("waiting for a connection to %s: %w", m.ep.addr, err)}
	case errors.Is(err, context.Canceled):
		s.rqCancelled.Add(1)
		return &Error{Flag: "DC", BeforeRequest: true, Err: fmt.Errorf("waiting for a connection to %s: %w", m.ep.addr, err)}
	default:
		return &Error{Flag: "UF", BeforeRequest: true, Err: fmt.Errorf("%s: %w", m.ep.addr, err)}
	}
}

// h2StreamError has the shape of net/http's HTTP/2 stream error, which
// converts itself to any struct with the same fields (the bundled
// http2StreamError's As method), so the code can be read without
// importing golang.org/x/net/http2.
type h2StreamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

func (e h2StreamError) Error() string {
	return fmt.Sprintf("stream %d reset with code %d", e.StreamID, e.Code)
}

const h2RefusedStream = 0x7

// requestError classifies a failure after the request was given a
// connection:
//   - the try's deadline: UT, a local-origin timeout for outlier detection;
//   - the caller cancelling: DC, not the upstream's fault;
//   - an HTTP/2 RST_STREAM: UR (REFUSED_STREAM marked, for Envoy's
//     refused-stream retry condition);
//   - any other error: the connection went away, UC.
//
// For HTTP/1.1, BeforeRequest tells whether any byte of the request had
// been written when it failed; for HTTP/2 whether the server announced it
// would not process it (GOAWAY).
func (c *Cluster) requestError(st *clusterState, m *member, ctx context.Context, pc *pconn, written int64, err error) error {
	s := &c.stats
	addr := m.ep.addr
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		s.rqTimeout.Add(1)
		m.ep.errors.Add(1)
		c.reportLocal(st, m.ep, localTimeout)
		return &Error{Flag: "UT", Err: fmt.Errorf("upstream %s: %w", addr, context.DeadlineExceeded)}
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		s.rqCancelled.Add(1)
		return &Error{Flag: "DC", Err: fmt.Errorf("upstream %s: %w", addr, context.Canceled)}
	}
	m.ep.errors.Add(1)
	c.reportLocal(st, m.ep, localConnectFailed)
	var se h2StreamError
	if errors.As(err, &se) {
		s.rqReset.Add(1)
		return &Error{Flag: "UR", RefusedStream: se.Code == h2RefusedStream, Err: fmt.Errorf("upstream %s: %w", addr, err)}
	}
	before := false
	if pc.h2 {
		// net/http reports these for streams the server never saw: those
		// above a GOAWAY's last stream ID, and those started on a
		// connection that had become unusable.
		msg := err.Error()
		before = strings.Contains(msg, "graceful shutdown GOAWAY") || strings.Contains(msg, "client conn not usable")
	} else {
		before = pc.mc.written.Load() == written
	}
	return &Error{Flag: "UC", BeforeRequest: before, Err: fmt.Errorf("upstream %s: %w", addr, err)}
}
