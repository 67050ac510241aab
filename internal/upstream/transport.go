package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/michi-mesh/michi/internal/meshca"
	"github.com/michi-mesh/michi/internal/routing"
)

// transportProfile is how a pool makes connections: plaintext or with a
// TLS origination profile, with the cluster's socket and HTTP/2 options.
// Pools are keyed by profile, so a configuration change that alters how
// connections are made drains the old pools, while any other change keeps
// them: profiles are reused across updates when their fingerprint is the
// same.
type transportProfile struct {
	fingerprint string
	tls         *tlsProfile // nil: plaintext
	keepalive   net.KeepAliveConfig
	keepaliveOn bool

	// The transports only turn a connection we dialed into an HTTP/1.1
	// or HTTP/2 client connection (net/http Transport.NewClientConn);
	// they dial nothing themselves and pool nothing.
	h1, h2c, overTLS *http.Transport
}

// maxResponseHeaderBytes is Envoy's default limit on upstream response
// headers (max_response_headers_kb, 60 KiB).
const maxResponseHeaderBytes = 60 << 10

func newTransportProfile(pol routing.ConnectionPool, tp *tlsProfile) *transportProfile {
	p := &transportProfile{tls: tp}
	if k := pol.TCPKeepalive; k != nil {
		// Istio emits an empty tcp_keepalive (SO_KEEPALIVE with the OS
		// defaults) and sets only the fields given; net.Dialer leaves
		// negative values to the OS.
		p.keepaliveOn = true
		p.keepalive = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
		if k.Time > 0 {
			p.keepalive.Idle = k.Time
		}
		if k.Interval > 0 {
			p.keepalive.Interval = k.Interval
		}
		if k.Probes > 0 {
			p.keepalive.Count = int(k.Probes)
		}
	}
	var h2 *http.HTTP2Config
	if pol.HTTP2KeepaliveInterval > 0 {
		// Istio http2KeepAlive: Envoy connection_keepalive pings the
		// connection every interval and closes it if no ack comes within
		// the timeout.
		h2 = &http.HTTP2Config{SendPingTimeout: pol.HTTP2KeepaliveInterval, PingTimeout: pol.HTTP2KeepaliveTimeout}
	}
	newTransport := func(protos func(*http.Protocols)) *http.Transport {
		var pr http.Protocols
		protos(&pr)
		t := &http.Transport{
			Protocols: &pr,
			// A proxy forwards bodies as they are: no transparent gzip.
			DisableCompression:     true,
			MaxResponseHeaderBytes: maxResponseHeaderBytes,
			HTTP2:                  h2,
		}
		if tp != nil {
			t.DialTLSContext = preDialed
		} else {
			t.DialContext = preDialed
		}
		return t
	}
	if tp != nil {
		p.overTLS = newTransport(func(pr *http.Protocols) { pr.SetHTTP1(true); pr.SetHTTP2(true) })
	} else {
		p.h1 = newTransport(func(pr *http.Protocols) { pr.SetHTTP1(true) })
		p.h2c = newTransport(func(pr *http.Protocols) { pr.SetUnencryptedHTTP2(true) })
	}
	p.fingerprint = fmt.Sprintf("%v|%+v|%v|%v", p.keepaliveOn, p.keepalive, pol.HTTP2KeepaliveInterval, pol.HTTP2KeepaliveTimeout)
	if tp != nil {
		p.fingerprint += "|" + tp.fingerprint
	}
	return p
}

// plainProfile returns the plaintext profile for pol, shared by every
// cluster with the same settings: its http.Transports hold no
// connections (the pools do), so one pair serves thousands of clusters
// instead of each cluster carrying its own.
func (m *Manager) plainProfile(pol routing.ConnectionPool) *transportProfile {
	key := plainProfileKey{h2Interval: pol.HTTP2KeepaliveInterval, h2Timeout: pol.HTTP2KeepaliveTimeout}
	if k := pol.TCPKeepalive; k != nil {
		key.keepalive, key.ka = true, *k
	}
	if p, ok := m.plain.Load(key); ok {
		return p.(*transportProfile)
	}
	p, _ := m.plain.LoadOrStore(key, newTransportProfile(pol, nil))
	return p.(*transportProfile)
}

// plainProfileKey is what a plaintext profile depends on.
type plainProfileKey struct {
	h2Interval, h2Timeout time.Duration
	keepalive             bool
	ka                    routing.TCPKeepalive
}

// preDialedKey carries a connection we dialed to preDialed.
type preDialedKey struct{}

// preDialed hands the Transport the connection dialed by the pool, so
// that connect timeouts, TLS origination and error classification stay
// ours.
func preDialed(ctx context.Context, _, _ string) (net.Conn, error) {
	if c, ok := ctx.Value(preDialedKey{}).(net.Conn); ok {
		return c, nil
	}
	return nil, errors.New("upstream: transport dialed without a connection")
}

// dialResult is a connection ready for the HTTP client.
type dialResult struct {
	conn  net.Conn
	mc    *meteredConn
	h2    bool
	alpn  string
	isTLS bool
}

// dial connects to addr and, with TLS, completes the handshake, all
// within ctx (the connect timeout, as Envoy's connect_timeout also covers
// the TLS handshake).
func (p *transportProfile) dial(ctx context.Context, addr, sni string, pr proto, stats *clusterStats, now func() time.Time) (dialResult, error) {
	d := net.Dialer{KeepAlive: -1}
	if p.keepaliveOn {
		d.KeepAliveConfig = p.keepalive
	}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return dialResult{}, err
	}
	mc := &meteredConn{Conn: raw, stats: stats}
	if p.tls == nil {
		return dialResult{conn: mc, mc: mc, h2: pr == protoHTTP2}, nil
	}
	tc := tls.Client(mc, p.tls.clientConfig(sni, pr, now))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return dialResult{}, fmt.Errorf("TLS handshake: %w", err)
	}
	alpn := tc.ConnectionState().NegotiatedProtocol
	return dialResult{conn: tc, mc: mc, h2: alpn == "h2", alpn: alpn, isTLS: true}, nil
}

// clientConn wraps a dialed connection in an HTTP/1.1 or HTTP/2 client.
func (p *transportProfile) clientConn(ctx context.Context, addr string, d dialResult) (*http.ClientConn, error) {
	t, scheme := p.h1, "http"
	switch {
	case d.isTLS:
		// HTTP/2 when ALPN chose it, else HTTP/1.1.
		t, scheme = p.overTLS, "https"
	case d.h2:
		t = p.h2c
	}
	return t.NewClientConn(context.WithValue(ctx, preDialedKey{}, d.conn), scheme, addr)
}

// meteredConn counts the bytes of an upstream connection, for the
// cluster's rx/tx stats and to tell whether a failed HTTP/1.1 request
// reached the wire.
type meteredConn struct {
	net.Conn
	stats   *clusterStats
	written atomic.Int64
}

func (c *meteredConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.stats.cxRxBytes.Add(int64(n))
	return n, err
}

func (c *meteredConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	c.stats.cxTxBytes.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the TCP connection.
func (c *meteredConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("connection cannot half-close")
}

// meshIdentity is the loaded Options.MeshTLS.
type meshIdentity struct {
	id  *meshca.Identity
	err error // why it could not be loaded
}

// loadIdentity (re)reads Options.MeshTLS. An unchanged identity keeps its
// pointer so that TLS profiles, and the connections made with them, are
// kept.
func (m *Manager) loadIdentity() {
	mt := m.opts.MeshTLS
	if mt == nil {
		return
	}
	id, err := meshca.LoadIdentity(mt.CertFile, mt.KeyFile, mt.RootsFile)
	cur := m.identity.Load()
	switch {
	case err != nil && cur != nil && cur.id != nil:
		// Keep serving with the identity we have (a rotation may be
		// half-written); the error is logged.
		m.log.Warn("mesh identity reload failed; keeping the previous one", "err", err)
	case err != nil:
		m.log.Error("mesh identity cannot be loaded; ISTIO_MUTUAL clusters fail", "err", err)
		m.identity.Store(&meshIdentity{err: err})
	case cur != nil && cur.id.Equal(id):
	default:
		m.identity.Store(&meshIdentity{id: id})
	}
}

// meshID returns the proxy's mesh identity, or nil with the reason.
func (m *Manager) meshID() (*meshca.Identity, error) {
	mi := m.identity.Load()
	if mi == nil {
		return nil, nil
	}
	return mi.id, mi.err
}

// identityChanged reports whether st, a cluster using the mesh identity,
// was built with another one than the current.
func (m *Manager) identityChanged(st *clusterState) bool {
	t := st.cfg.Policy.TLS
	if t == nil || t.Mode != routing.TLSIstioMutual {
		return false
	}
	id, _ := m.meshID()
	return st.identity != id
}

// profiles builds the transport profiles of cfg, reusing old's when they
// are unchanged. It returns the plaintext profile, the TLS profile (nil
// for none), whether TLS is auto mTLS (only to endpoints labelled for it),
// and a configuration error.
func (m *Manager) profiles(cfg *routing.Cluster, old *clusterState) (plain, mtls *transportProfile, auto bool, err error) {
	pol := cfg.Policy.ConnectionPool
	plain = m.plainProfile(pol)
	t := cfg.Policy.TLS
	if t == nil || t.Mode == routing.TLSDisable || t.Mode == "" {
		return plain, nil, false, nil
	}
	id, idErr := m.meshID()
	if t.Mode == routing.TLSIstioMutual && id == nil {
		if t.Auto {
			// Auto mTLS without an identity: plaintext, as Istio sends
			// plaintext to workloads it cannot do mTLS with.
			return plain, nil, false, nil
		}
		if idErr != nil {
			return plain, nil, false, fmt.Errorf("tls mode ISTIO_MUTUAL: %w", idErr)
		}
	}
	tp, err := newTLSProfile(cfg, t, id)
	if err != nil {
		return plain, nil, false, err
	}
	mtls = newTransportProfile(pol, tp)
	if old != nil && old.mtls != nil && old.mtls.fingerprint == mtls.fingerprint {
		mtls = old.mtls
	}
	return plain, mtls, t.Auto, nil
}

// hostOnly strips the port from a Host header value for SNI.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	if len(hostport) > 1 && hostport[0] == '[' && hostport[len(hostport)-1] == ']' {
		return hostport[1 : len(hostport)-1]
	}
	return hostport
}
