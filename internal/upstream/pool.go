package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// A pool holds the connections of one endpoint for one way of talking to
// it (transport profile, protocol and, with TLS, server name), like an
// Envoy host's connection pool. It implements Envoy's pool semantics
// (conn_pool_base.cc) on net/http ClientConns:
//
//   - A request takes a connection with spare capacity (HTTP/1.1: an idle
//     one, most recently used first; HTTP/2: one with a free stream).
//   - Otherwise it becomes pending, if max_pending_requests allows, and
//     the pool dials as many connections as the pending requests need,
//     if max_connections allows. Pending requests take whichever
//     connection frees up or comes up first, in arrival order.
//   - A connect failure fails every pending request (Envoy purges them so
//     the router can retry elsewhere rather than wait out a bad host).
//   - Connections close after max_requests_per_connection requests, after
//     max_connection_duration, and after idle_timeout without requests.
//
// The ClientConn state hook tells the pool when a connection becomes
// usable again (for HTTP/1.1, when the response has been read to the end)
// or dies. The hook may run synchronously inside ClientConn methods, so
// the pool never calls Reserve, Release, Close or RoundTrip with mu held.
type pool struct {
	ep     *endpoint
	c      *Cluster
	key    poolKey
	ctx    context.Context // cancelled by close; dials use it
	cancel context.CancelFunc

	mu         sync.Mutex
	conns      []*pconn
	ready      []*pconn // conns with spare capacity; the last is used first
	connecting int
	waiters    []*waiter // pending requests, oldest first
	draining   bool      // keep no idle connection
	closed     bool
}

// poolKey tells an endpoint's pools apart.
type poolKey struct {
	prof  *transportProfile
	proto proto
	sni   string // TLS server name; "" in plaintext
}

// pconn is a pooled connection. Its fields after cc are guarded by the
// pool's mu.
type pconn struct {
	cc *http.ClientConn
	mc *meteredConn
	h2 bool

	inUse    int // leases: requests holding or about to use a stream
	requests int // leases handed out over the connection's life
	inReady  bool
	full     bool // HTTP/2: the server had no free stream; wait for the hook
	draining bool // no new requests; close when inUse drops to 0
	// delivering is set while an HTTP/1.1 response is on its way to the
	// caller. net/http frees the connection of a response without a body
	// before handing the response over, and closing it then would lose
	// the response, so until then it is not closed.
	delivering bool
	dead       bool // the ClientConn failed or closed
	freed      bool // counted out of upstream_cx_active
	tunnel     bool // an upgrade request owns the connection
	cur        *attempt
	idle       *time.Timer
	age        *time.Timer
}

// waiter is a pending request.
type waiter struct {
	ch chan leaseResult // buffered: the pool never blocks handing over
}

type leaseResult struct {
	pc  *pconn
	err error
}

var errPoolClosed = errors.New("connection pool closed")

func newPool(ep *endpoint, key poolKey) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{ep: ep, c: ep.c, key: key, ctx: ctx, cancel: cancel}
}

// acquire returns a connection on which one request has been reserved.
func (p *pool) acquire(ctx context.Context, st *clusterState) (*pconn, error) {
	s := &p.c.stats
	pending := false
	defer func() {
		if pending {
			s.rqPendingActive.Add(-1)
		}
	}()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		pc := p.leaseLocked(st)
		var w *waiter
		if pc == nil {
			if !pending {
				if !tryAcquire(&s.rqPendingActive, st.limits.maxPending) {
					p.mu.Unlock()
					s.rqPendingOverflow.Add(1)
					return nil, overflow("max pending requests")
				}
				pending = true
				s.rqPendingTotal.Add(1)
			}
			w = &waiter{ch: make(chan leaseResult, 1)}
			p.waiters = append(p.waiters, w)
			p.connectLocked(st)
		}
		p.mu.Unlock()
		if w != nil {
			select {
			case r := <-w.ch:
				if r.err != nil {
					return nil, r.err
				}
				pc = r.pc
			case <-ctx.Done():
				p.abandon(w)
				return nil, ctx.Err()
			}
		}
		if err := pc.cc.Reserve(); err != nil {
			// The connection closed, or (HTTP/2) the server allows fewer
			// streams than we assumed: try again elsewhere. A connection
			// that died before serving anything is a connect failure (a
			// TLS 1.3 server rejects a client certificate only after the
			// client's handshake is done); retrying would dial forever.
			if p.reserveFailed(pc) {
				return nil, &Error{Flag: "UF", BeforeRequest: true, Err: fmt.Errorf("connection to %s closed before use: %w", p.ep.addr, err)}
			}
			continue
		}
		return pc, nil
	}
}

// spare is how many more requests pc can take now.
func (p *pool) spare(pc *pconn, st *clusterState) int {
	if pc.dead || pc.draining || pc.full {
		return 0
	}
	limit := 1
	if pc.h2 {
		limit = st.maxStreams
	}
	n := limit - pc.inUse
	if st.maxRqPerConn > 0 {
		n = min(n, st.maxRqPerConn-pc.requests)
	}
	return n
}

// leaseLocked takes a request slot on the most recently used connection
// with spare capacity.
func (p *pool) leaseLocked(st *clusterState) *pconn {
	for len(p.ready) > 0 {
		pc := p.ready[len(p.ready)-1]
		if p.spare(pc, st) <= 0 {
			p.unreadyLocked(pc)
			continue
		}
		pc.inUse++
		pc.requests++
		if pc.idle != nil {
			pc.idle.Stop()
		}
		if st.maxRqPerConn > 0 && pc.requests >= st.maxRqPerConn {
			// Envoy max_requests_per_connection: the connection closes
			// once this request is done.
			pc.draining = true
			p.c.stats.cxMaxRequests.Add(1)
		}
		if p.spare(pc, st) <= 0 {
			p.unreadyLocked(pc)
		}
		return pc
	}
	return nil
}

func (p *pool) unreadyLocked(pc *pconn) {
	if !pc.inReady {
		return
	}
	pc.inReady = false
	if i := slices.Index(p.ready, pc); i >= 0 {
		p.ready = slices.Delete(p.ready, i, i+1)
	}
}

func (p *pool) readyLocked(pc *pconn, st *clusterState) {
	if !pc.inReady && p.spare(pc, st) > 0 {
		pc.inReady = true
		p.ready = append(p.ready, pc)
	}
}

// dispatchLocked hands connections with spare capacity to pending
// requests, oldest first.
func (p *pool) dispatchLocked(st *clusterState) {
	for len(p.waiters) > 0 {
		pc := p.leaseLocked(st)
		if pc == nil {
			return
		}
		w := p.waiters[0]
		p.waiters = slices.Delete(p.waiters, 0, 1)
		w.ch <- leaseResult{pc: pc}
	}
}

// connectLocked dials connections for the pending requests the
// connections being established will not serve (Envoy
// tryCreateNewConnections). max_connections counts connections across the
// cluster, being established or open; when it is reached, a host with no
// connection at all still gets one, as Envoy does so that its pending
// requests are not stranded (envoyproxy/envoy#2927): upstream_cx_active may
// then exceed the limit, and upstream_cx_overflow still counts.
func (p *pool) connectLocked(st *clusterState) {
	if p.closed {
		return
	}
	s := &p.c.stats
	perConn := 1
	if p.key.proto == protoHTTP2 {
		perConn = st.maxStreams
		if st.maxRqPerConn > 0 {
			perConn = min(perConn, st.maxRqPerConn)
		}
	}
	for len(p.waiters) > p.connecting*perConn {
		if !tryAcquire(&s.cxActive, st.limits.maxConnections) {
			s.cxOverflow.Add(1)
			if len(p.conns) > 0 || p.connecting > 0 {
				return
			}
			s.cxActive.Add(1)
		}
		p.connecting++
		s.cxTotal.Add(1)
		go p.connect(st)
	}
}

// connect establishes one connection and offers it to the pending
// requests.
func (p *pool) connect(st *clusterState) {
	ctx, cancel := context.WithTimeout(p.ctx, st.connectTimeout)
	defer cancel()
	prof := p.key.prof
	d, err := prof.dial(ctx, p.ep.addr, p.key.sni, p.key.proto, &p.c.stats, p.c.m.now)
	var cc *http.ClientConn
	if err == nil {
		if cc, err = prof.clientConn(ctx, p.ep.addr, d); err != nil {
			d.conn.Close()
		}
	}
	if err != nil {
		timeout := isTimeout(ctx, err)
		if timeout {
			err = fmt.Errorf("connect timeout after %v: %w", st.connectTimeout, err)
		}
		p.connectFailed(err, timeout, true)
		return
	}
	pc := &pconn{cc: cc, mc: d.mc, h2: d.h2}
	cc.SetStateHook(func(*http.ClientConn) { p.onState(pc) })

	p.mu.Lock()
	p.connecting--
	if p.closed {
		p.mu.Unlock()
		cc.Close()
		return
	}
	if pc.dead {
		// It closed before we could use it: a connect failure for the
		// requests waiting (connDead has released its count).
		p.mu.Unlock()
		p.connectFailed(fmt.Errorf("connection closed before use: %w", cc.Err()), false, false)
		return
	}
	p.conns = append(p.conns, pc)
	if pc.h2 {
		p.c.stats.cxHTTP2Total.Add(1)
	} else {
		p.c.stats.cxHTTP1Total.Add(1)
	}
	if st.maxConnAge > 0 {
		pc.age = time.AfterFunc(st.maxConnAge, func() { p.expire(pc) })
	}
	st = p.c.state.Load()
	p.readyLocked(pc, st)
	p.dispatchLocked(st)
	closeNow := p.settleLocked(pc, st)
	p.mu.Unlock()
	if closeNow {
		cc.Close()
	}
}

// isTimeout reports whether a dial failed for lack of time. The dialer
// may report its own i/o timeout an instant before ctx's deadline shows.
func isTimeout(ctx context.Context, err error) bool {
	var ne net.Error
	return ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// connectFailed fails the pending requests after a connect failure.
// dialing is true when the failed connection still counts as being
// established.
func (p *pool) connectFailed(err error, timeout, dialing bool) {
	s := &p.c.stats
	s.cxConnectFail.Add(1)
	if timeout {
		s.cxConnectTimeout.Add(1)
	}
	ue := &Error{Flag: "UF", BeforeRequest: true, Err: fmt.Errorf("connect to %s: %w", p.ep.addr, err)}
	p.mu.Lock()
	if dialing {
		p.connecting--
		s.cxActive.Add(-1)
	}
	ws := p.waiters
	p.waiters = nil
	p.mu.Unlock()
	for _, w := range ws {
		s.rqPendingFailure.Add(1)
		w.ch <- leaseResult{err: ue}
	}
}

// settleLocked decides what becomes of a connection nobody is using
// right now: it closes in a draining pool with nothing pending, else it
// starts its idle timer. It reports whether the caller must close it.
func (p *pool) settleLocked(pc *pconn, st *clusterState) bool {
	if pc.dead || pc.inUse > 0 || pc.delivering {
		return false
	}
	if pc.draining || p.draining && len(p.waiters) == 0 {
		pc.draining = true
		p.unreadyLocked(pc)
		return true
	}
	if st.idleTimeout > 0 {
		if pc.idle == nil {
			pc.idle = time.AfterFunc(st.idleTimeout, func() { p.idleExpired(pc) })
		} else {
			pc.idle.Reset(st.idleTimeout)
		}
	}
	return false
}

// begin records that a's request is about to be sent on pc.
func (p *pool) begin(pc *pconn, a *attempt, upgrade bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !pc.h2 {
		pc.cur = a
		pc.delivering = true
	}
	if upgrade {
		// A switched protocol owns the connection until the tunnel
		// closes; it never goes back to the pool.
		pc.tunnel = true
		pc.draining = true
		p.unreadyLocked(pc)
	}
}

// delivered records that the caller has the response (or error) of the
// request sent on pc, and closes pc if it was only kept for that.
func (p *pool) delivered(pc *pconn) {
	if pc.h2 {
		return
	}
	p.mu.Lock()
	pc.delivering = false
	closeNow := p.settleLocked(pc, p.c.state.Load())
	p.mu.Unlock()
	if closeNow {
		pc.cc.Close()
	}
}

// end returns a's lease on pc when its request is over.
func (p *pool) end(pc *pconn, a *attempt) {
	p.mu.Lock()
	if pc.cur == a {
		pc.cur = nil
	}
	if pc.tunnel {
		pc.tunnel = false
		if pc.dead && !pc.freed {
			pc.freed = true
			p.c.stats.cxActive.Add(-1)
		}
	}
	closeNow := p.releaseLocked(pc)
	p.mu.Unlock()
	if closeNow {
		pc.cc.Close()
	}
}

// release returns a lease that carried no request.
func (p *pool) release(pc *pconn) {
	p.mu.Lock()
	closeNow := p.releaseLocked(pc)
	p.mu.Unlock()
	if closeNow {
		pc.cc.Close()
	}
}

func (p *pool) releaseLocked(pc *pconn) (closeNow bool) {
	pc.inUse--
	st := p.c.state.Load()
	if !pc.dead {
		p.readyLocked(pc, st)
	}
	p.dispatchLocked(st)
	return p.settleLocked(pc, st)
}

// reserveFailed undoes a lease whose Reserve failed. It reports whether
// the connection died without ever carrying a request.
func (p *pool) reserveFailed(pc *pconn) (diedUnused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc.inUse--
	pc.requests--
	p.unreadyLocked(pc)
	if pc.cc.Err() != nil {
		return pc.requests == 0
	}
	pc.full = true // the state hook clears it when a stream frees up
	return false
}

// abandon withdraws a pending request whose context ended. A connection
// being dialed for it carries on and serves the next request (Envoy's
// default cancel policy).
func (p *pool) abandon(w *waiter) {
	p.mu.Lock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	if r := <-w.ch; r.pc != nil {
		p.release(r.pc)
	}
}

// onState is the ClientConn state hook.
func (p *pool) onState(pc *pconn) {
	if pc.cc.Err() != nil {
		p.connDead(pc)
		return
	}
	p.mu.Lock()
	if !pc.h2 && pc.cur != nil {
		// HTTP/1.1: the connection is usable again once the response has
		// been read to the end, which ends the request. Finishing it here
		// rather than when the caller sees EOF frees the connection for
		// pending requests before anything else can run.
		if pc.cc.Available() == 0 {
			p.mu.Unlock()
			return
		}
		a := pc.cur
		pc.cur = nil
		p.mu.Unlock()
		a.finish()
		return
	}
	if pc.full && pc.cc.Available() > 0 {
		pc.full = false
		st := p.c.state.Load()
		p.readyLocked(pc, st)
		p.dispatchLocked(st)
	}
	p.mu.Unlock()
}

// connDead forgets a connection that failed or closed.
func (p *pool) connDead(pc *pconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc.dead {
		return
	}
	pc.dead = true
	p.unreadyLocked(pc)
	if i := slices.Index(p.conns, pc); i >= 0 {
		p.conns = slices.Delete(p.conns, i, i+1)
	}
	if pc.idle != nil {
		pc.idle.Stop()
	}
	if pc.age != nil {
		pc.age.Stop()
	}
	if !pc.tunnel {
		pc.freed = true
		p.c.stats.cxActive.Add(-1)
	}
	// Pending requests that were counting on this connection need
	// another one.
	p.connectLocked(p.c.state.Load())
}

// idleExpired closes a connection that stayed idle for idle_timeout.
func (p *pool) idleExpired(pc *pconn) {
	p.mu.Lock()
	if pc.dead || pc.draining || pc.inUse > 0 || pc.delivering {
		p.mu.Unlock()
		return
	}
	pc.draining = true
	p.unreadyLocked(pc)
	p.mu.Unlock()
	p.c.stats.cxIdleTimeout.Add(1)
	pc.cc.Close()
}

// expire drains a connection that reached max_connection_duration: it
// takes no new requests and closes when its requests are done.
func (p *pool) expire(pc *pconn) {
	p.mu.Lock()
	if pc.dead || pc.draining {
		p.mu.Unlock()
		return
	}
	pc.draining = true
	p.unreadyLocked(pc)
	closeNow := pc.inUse == 0 && !pc.delivering
	p.mu.Unlock()
	p.c.stats.cxMaxDuration.Add(1)
	if closeNow {
		pc.cc.Close()
	}
}

// drain stops keeping idle connections: they close now, busy ones once
// idle. Pending and new requests are still served.
func (p *pool) drain() {
	p.mu.Lock()
	p.draining = true
	var idle []*pconn
	for _, pc := range p.conns {
		if !pc.dead && pc.inUse == 0 && !pc.delivering && !pc.draining && len(p.waiters) == 0 {
			pc.draining = true
			p.unreadyLocked(pc)
			idle = append(idle, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range idle {
		pc.cc.Close()
	}
}

// close closes every connection now, failing requests in flight and
// pending.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	conns := slices.Clone(p.conns)
	ws := p.waiters
	p.waiters = nil
	p.mu.Unlock()
	for _, w := range ws {
		w.ch <- leaseResult{err: errPoolClosed}
	}
	for _, pc := range conns {
		pc.cc.Close()
	}
}

// empty reports whether the pool has no connection and nothing pending.
func (p *pool) empty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) == 0 && p.connecting == 0 && len(p.waiters) == 0
}

// overflow is the UO error of a circuit breaker.
func overflow(what string) *Error {
	return &Error{Flag: "UO", BeforeRequest: true, Err: fmt.Errorf("%w: %s", ErrOverflow, what)}
}
