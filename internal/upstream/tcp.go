package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
)

// DialTCP opens a connection to one endpoint of the cluster for a TCP
// proxy, as Envoy's tcp_proxy takes one from the cluster's TCP pool:
//   - the endpoint is picked like a request's (opts.Hash, opts.Exclude,
//     opts.OriginalDst for ORIGINAL_DST and passthrough clusters);
//   - max_connections caps the cluster's connections (UO), with Envoy's
//     floor of one connection to a host that has none, and
//     max_pending_requests caps the connections being established;
//   - the connect timeout and TLS origination (for auto mTLS to mesh
//     workloads) apply as for HTTP;
//   - for outlier detection a connect failure is an error and a
//     connection a success (Envoy maps them to 503 and 200 without the
//     local-origin split).
//
// Closing the returned connection releases its accounting. Errors are
// *Error values: UH, UO or UF.
func (c *Cluster) DialTCP(ctx context.Context, opts AttemptOptions) (net.Conn, Attempt, error) {
	st := c.state.Load()
	s := &c.stats
	if st.err != nil {
		return nil, Attempt{}, configError(c, st.err)
	}
	m := c.pick(st, &opts)
	if m == nil {
		s.cxNoneHealthy.Add(1)
		return nil, Attempt{}, &Error{Flag: "UH", BeforeRequest: true, Err: ErrNoHealthyUpstream}
	}
	att := m.attempt()
	if !tryAcquire(&s.rqPendingActive, st.limits.maxPending) {
		s.rqPendingOverflow.Add(1)
		return nil, att, overflow("max pending requests")
	}
	defer s.rqPendingActive.Add(-1)
	if !tryAcquire(&s.cxActive, st.limits.maxConnections) {
		s.cxOverflow.Add(1)
		if m.ep.tcpConns.Load() > 0 {
			return nil, att, overflow("max connections")
		}
		s.cxActive.Add(1) // the connection floor
	}
	s.cxTotal.Add(1)
	m.host.Active.Add(1)
	m.ep.active.Add(1)
	m.ep.tcpConns.Add(1)
	release := func() {
		s.cxActive.Add(-1)
		m.host.Active.Add(-1)
		m.ep.active.Add(-1)
		m.ep.tcpConns.Add(-1)
	}

	dctx, cancel := context.WithTimeout(ctx, st.connectTimeout)
	defer cancel()
	var sni string
	if t := m.prof.tls; t != nil {
		sni = t.sni // no request host to derive one from
	}
	d, err := m.prof.dial(dctx, m.ep.addr, sni, protoHTTP1, s, c.m.now)
	if err != nil {
		release()
		m.ep.errors.Add(1)
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			s.rqCancelled.Add(1)
			return nil, att, &Error{Flag: "DC", BeforeRequest: true, Err: fmt.Errorf("connect to %s: %w", m.ep.addr, ctx.Err())}
		}
		s.cxConnectFail.Add(1)
		if isTimeout(dctx, err) {
			s.cxConnectTimeout.Add(1)
		}
		c.reportLocal(st, m.ep, localConnectFailed)
		return nil, att, &Error{Flag: "UF", BeforeRequest: true, Err: fmt.Errorf("connect to %s: %w", m.ep.addr, err)}
	}
	m.ep.total.Add(1)
	c.reportTCPConnected(st, m.ep)
	return &tcpConn{Conn: d.conn, release: release}, att, nil
}

// reportTCPConnected is Envoy's LocalOriginConnectSuccessFinal: for a TCP
// proxy a connection is the whole transaction, so it counts as a success
// (a 200 without the split, a local-origin success with it).
func (c *Cluster) reportTCPConnected(st *clusterState, ep *endpoint) {
	if cfg := st.outlier; cfg != nil {
		if cfg.split {
			ep.od.consecLocal.Store(0)
		} else {
			c.putHTTPCode(cfg, ep, 200)
		}
	}
}

// tcpConn is an upstream TCP connection; Close gives back its share of
// the cluster's accounting, once.
type tcpConn struct {
	net.Conn
	release func()
	closed  atomic.Bool
}

func (c *tcpConn) Close() error {
	err := c.Conn.Close()
	if !c.closed.Swap(true) {
		c.release()
	}
	return err
}

// CloseWrite half-closes the connection when it supports it, which a
// TCP proxy needs to pass an EOF on.
func (c *tcpConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("upstream connection cannot half-close")
}
