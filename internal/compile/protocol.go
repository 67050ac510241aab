package compile

import (
	"strings"

	"github.com/michi-mesh/michi/internal/registry"
)

// portProtocol is the protocol a service port is treated as: the declared
// one, else the one its name implies by Istio's port naming convention
// ("http-web" is HTTP, "tcp-db" TCP), else "" when Istio would sniff it.
func portProtocol(p registry.Port) string {
	if p.Protocol != "" {
		return strings.ToUpper(p.Protocol)
	}
	prefix, _, _ := strings.Cut(strings.ToLower(p.Name), "-")
	switch prefix {
	case "http", "http2", "https", "grpc", "tls", "tcp", "udp", "mongo", "mysql", "redis":
		return strings.ToUpper(prefix)
	}
	return ""
}

// isHTTPProtocol reports the protocols that get HTTP routes on sidecars:
// HTTP, HTTP2, gRPC, gRPC-Web, and unset (Istio sniffs those and routes
// HTTP traffic; istio protocol.IsHTTPOrSniffed).
func isHTTPProtocol(proto string) bool {
	switch proto {
	case "", "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
		return true
	}
	return false
}

// isTLSProtocol reports the protocols routed by SNI through a
// VirtualService's tls section.
func isTLSProtocol(proto string) bool {
	return proto == "HTTPS" || proto == "TLS"
}

// isTCPProtocol reports the protocols routed through a VirtualService's
// tcp section: everything that is neither HTTP nor TLS, except UDP, which
// Istio does not proxy.
func isTCPProtocol(proto string) bool {
	return !isHTTPProtocol(proto) && !isTLSProtocol(proto) && proto != "UDP"
}

// hasHTTPPort reports whether s serves HTTP on port.
func hasHTTPPort(s *registry.Service, port uint32) bool {
	p, ok := s.PortByNumber(port)
	return ok && isHTTPProtocol(portProtocol(p))
}
