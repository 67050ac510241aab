package upstream

import (
	"net/http"
	"strings"

	"github.com/michi-mesh/michi/internal/routing"
)

// proto is the HTTP version spoken to the upstream.
type proto uint8

const (
	protoHTTP1 proto = iota
	protoHTTP2       // h2c in plaintext, h2 by ALPN over TLS
)

func (p proto) String() string {
	if p == protoHTTP2 {
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

// protoPolicy chooses the upstream protocol of a cluster the way Istio
// configures Envoy's cluster protocol options (cluster_builder.go):
//   - useClientProtocol: the downstream's protocol (Envoy
//     use_downstream_protocol_config); it overrides h2 upgrade;
//   - else HTTP/2 for HTTP2, GRPC and GRPC-WEB ports, and for HTTP ports
//     with h2UpgradePolicy UPGRADE;
//   - else HTTP/1.1.
type protoPolicy struct {
	h2        bool
	useClient bool
}

func newProtoPolicy(c *routing.Cluster) protoPolicy {
	pool := c.Policy.ConnectionPool
	if pool.UseClientProtocol {
		return protoPolicy{useClient: true}
	}
	switch strings.ToUpper(c.Protocol) {
	case "HTTP2", "GRPC", "GRPC-WEB":
		return protoPolicy{h2: true}
	}
	return protoPolicy{h2: pool.H2UpgradePolicy == "UPGRADE"}
}

// choose returns the protocol for one request. A request asking for a
// protocol upgrade (WebSocket) always goes over HTTP/1.1: an HTTP/1.1
// Upgrade cannot ride an HTTP/2 stream, and Envoy likewise sends upgrades
// on HTTP/1.1 connections unless extended CONNECT is configured.
func (pp protoPolicy) choose(req *http.Request, downstreamH2 bool) proto {
	if isUpgrade(req) {
		return protoHTTP1
	}
	if pp.h2 || pp.useClient && downstreamH2 {
		return protoHTTP2
	}
	return protoHTTP1
}

// isUpgrade reports whether req asks to switch protocols.
func isUpgrade(req *http.Request) bool {
	_, ok := req.Header["Upgrade"]
	return ok
}
