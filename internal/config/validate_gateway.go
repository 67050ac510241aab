package config

import (
	"crypto/tls"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// gateway checks a Gateway (Istio ValidateGateway, validateServer).
func (v *validator) gateway(gw *networking.Gateway) {
	if len(gw.Servers) == 0 {
		v.errorf("spec.servers", "required: a Gateway needs at least one server")
	}
	portNames := map[string]int{}
	serverNames := map[string]int{}
	for i, s := range gw.Servers {
		p := index("spec.servers", i)
		v.server(p, s)
		if s.Port != nil && s.Port.Name != "" {
			if j, dup := portNames[s.Port.Name]; dup {
				v.errorf(p+".port.name", "duplicate port name %q (first at spec.servers[%d]); port names must be unique across servers", s.Port.Name, j)
			} else {
				portNames[s.Port.Name] = i
			}
		}
		if s.Name != "" {
			if j, dup := serverNames[s.Name]; dup {
				v.errorf(p+".name", "duplicate server name %q (first at spec.servers[%d])", s.Name, j)
			} else {
				serverNames[s.Name] = i
			}
		}
	}
	v.labels("spec.selector", gw.Selector)
}

func (v *validator) server(p string, s *networking.Server) {
	if len(s.Hosts) == 0 {
		v.errorf(p+".hosts", "required: at least one host, such as \"*\" or \"example.com\"")
	}
	for i, h := range s.Hosts {
		v.serverHost(index(p+".hosts", i), h)
	}
	unix := strings.HasPrefix(s.Bind, unixPrefix)
	portOK := v.serverPort(p+".port", s.Port, unix)
	switch {
	case unix:
		if err := checkUnixPath(strings.TrimPrefix(s.Bind, unixPrefix)); err != nil {
			v.errorf(p+".bind", "%v", err)
		}
		if s.Port.GetNumber() != 0 {
			v.errorf(p+".port.number", "must be 0 when bind is a unix socket, found %d", s.Port.GetNumber())
		}
	case s.Bind != "" && !isIP(s.Bind):
		v.errorf(p+".bind", "%q is not an IP address or unix:// socket", s.Bind)
	}
	if s.DefaultEndpoint != "" {
		v.warnf(p+".defaultEndpoint", "ignored: Istio does not implement defaultEndpoint for gateways")
	}
	if !portOK {
		v.serverTLS(p+".tls", s.Tls)
		return
	}
	proto := s.Port.Protocol
	switch {
	case isTLSProtocol(proto) && s.Tls == nil:
		v.errorf(p+".tls", "required: a server with protocol %s needs tls settings (mode SIMPLE, MUTUAL, PASSTHROUGH...)", strings.ToUpper(proto))
	case isTLSProtocol(proto):
		v.serverTLS(p+".tls", s.Tls)
	case !isTLSProtocol(proto) && s.Tls != nil:
		t := s.Tls
		// On a plain HTTP server, tls may only carry httpsRedirect.
		onlyRedirect := t.Mode == networking.ServerTLSSettings_PASSTHROUGH && t.ServerCertificate == "" &&
			t.PrivateKey == "" && t.CaCertificates == "" && t.CredentialName == "" && len(t.CredentialNames) == 0 && len(t.TlsCertificates) == 0
		switch {
		case !isHTTPProtocol(proto):
			v.errorf(p+".tls", "a %s server cannot have tls settings; use protocol HTTPS or TLS", strings.ToUpper(proto))
		case !onlyRedirect:
			v.errorf(p+".tls", "a plain-text %s server cannot terminate TLS: only httpsRedirect is allowed here; use protocol HTTPS", strings.ToUpper(proto))
		}
	}
	if s.Tls.GetHttpsRedirect() && !isHTTPProtocol(proto) {
		v.warnf(p+".tls.httpsRedirect", "has no effect on a %s server; it redirects plain HTTP requests", strings.ToUpper(proto))
	}
}

// serverHost checks "[namespace/]dnsName", where namespace is "*", "." or
// a namespace and dnsName is "*", a wildcard name or a full name (Istio
// agent.ValidateNamespaceSlashWildcardHostname).
func (v *validator) serverHost(p, h string) {
	name := h
	if ns, n, ok := strings.Cut(h, "/"); ok {
		name = n
		switch {
		case ns == "" || n == "":
			v.errorf(p, "invalid host %q: write namespace/host, both non-empty", h)
			return
		case ns == "*" || ns == ".":
		case !isDNS1123Label(ns):
			v.errorf(p, "invalid namespace %q in host %q: use \"*\", \".\" or a namespace name", ns, h)
		}
	}
	switch {
	case name == "*":
	case isIP(name):
	case !strings.Contains(name, "."):
		v.errorf(p, "short name %q is not allowed: gateway hosts are fully qualified, such as %q", name, name+".example.com")
	case isPartialWildcard(name):
		v.errorf(p, "partial wildcard %q is not allowed: use a whole first label, such as \"*.example.com\"", name)
	default:
		if err := checkWildcardHost(name); err != nil {
			v.errorf(p, "invalid host %q: %v", name, err)
		}
	}
}

// serverPort checks a server port and reports whether it is usable for
// the protocol checks that follow.
func (v *validator) serverPort(p string, port *networking.Port, unix bool) bool {
	if port == nil {
		v.errorf(p, "required: the port the gateway listens on")
		return false
	}
	ok := true
	switch {
	case port.Protocol == "":
		v.errorf(p+".protocol", "required: one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, MYSQL, REDIS")
		ok = false
	case !isKnownProtocol(port.Protocol):
		v.errorf(p+".protocol", "unknown protocol %q: use one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, MYSQL, REDIS%s", port.Protocol, suggest(strings.ToUpper(port.Protocol), knownProtocols))
		ok = false
	}
	if !unix { // a unix socket server has port 0, which server checks
		v.port(p+".number", port.Number)
	}
	if port.TargetPort != 0 {
		v.errorf(p+".targetPort", "has no effect on a Gateway; remove it")
	}
	if port.Name == "" {
		v.errorf(p+".name", "required: a name for the port, unique within the Gateway")
	}
	return ok
}

// serverTLS checks the TLS a gateway terminates (Istio validateTLSOptions).
func (v *validator) serverTLS(p string, t *networking.ServerTLSSettings) {
	if t == nil {
		return
	}
	v.tlsVersions(p, t)
	certs := []struct {
		name string
		set  bool
	}{
		{"serverCertificate", t.ServerCertificate != ""},
		{"privateKey", t.PrivateKey != ""},
		{"caCertificates", t.CaCertificates != ""},
		{"tlsCertificates", len(t.TlsCertificates) > 0},
		{"credentialName", t.CredentialName != ""},
		{"credentialNames", len(t.CredentialNames) > 0},
	}
	switch t.Mode {
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		for _, c := range certs {
			if c.set {
				v.errorf(p+"."+c.name, "cannot be set with mode ISTIO_MUTUAL, which uses the mesh's own certificates")
			}
		}
		return
	case networking.ServerTLSSettings_PASSTHROUGH, networking.ServerTLSSettings_AUTO_PASSTHROUGH:
		for _, c := range certs {
			if c.set {
				v.warnf(p+"."+c.name, "ignored: mode %s does not terminate TLS", t.Mode)
			}
		}
		return
	}

	sources := 0
	for _, set := range []bool{t.ServerCertificate != "" && t.PrivateKey != "", t.CredentialName != "", len(t.CredentialNames) > 0, len(t.TlsCertificates) > 0} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		v.errorf(p, "set only one of credentialName, credentialNames, tlsCertificates or serverCertificate/privateKey")
	}
	mutual := t.Mode == networking.ServerTLSSettings_MUTUAL || t.Mode == networking.ServerTLSSettings_OPTIONAL_MUTUAL
	if n := len(t.CredentialNames); n > 2 {
		v.errorf(p+".credentialNames", "at most 2 credentials (one RSA, one ECDSA), found %d", n)
	}
	if n := len(t.TlsCertificates); n > 2 {
		v.errorf(p+".tlsCertificates", "at most 2 certificates (one RSA, one ECDSA), found %d", n)
	}
	if t.CredentialName == "" && len(t.CredentialNames) == 0 {
		// Certificates come from files.
		if len(t.TlsCertificates) > 0 {
			for i, c := range t.TlsCertificates {
				cp := index(p+".tlsCertificates", i)
				if c.ServerCertificate == "" {
					v.errorf(cp+".serverCertificate", "required for %s TLS", t.Mode)
				}
				if c.PrivateKey == "" {
					v.errorf(cp+".privateKey", "required for %s TLS", t.Mode)
				}
			}
		} else {
			if t.ServerCertificate == "" {
				v.errorf(p+".serverCertificate", "required for %s TLS (or set credentialName)", t.Mode)
			}
			if t.PrivateKey == "" {
				v.errorf(p+".privateKey", "required for %s TLS (or set credentialName)", t.Mode)
			}
		}
		if mutual && t.CaCertificates == "" {
			v.errorf(p+".caCertificates", "required for %s TLS: the CA that signs client certificates (or set credentialName)", t.Mode)
		}
	}
	if t.CaCrl != "" {
		if t.CredentialName != "" {
			v.errorf(p+".caCrl", "cannot be combined with credentialName; put the CRL in the credential")
		}
		if t.Mode == networking.ServerTLSSettings_SIMPLE {
			v.errorf(p+".caCrl", "has no use with SIMPLE TLS, which does not verify clients")
		}
	}
}

// tlsVersions checks the protocol versions and cipher suites.
func (v *validator) tlsVersions(p string, t *networking.ServerTLSSettings) {
	lo, hi := t.MinProtocolVersion, t.MaxProtocolVersion
	if lo != networking.ServerTLSSettings_TLS_AUTO && hi != networking.ServerTLSSettings_TLS_AUTO && lo > hi {
		v.errorf(p+".minProtocolVersion", "%s is above maxProtocolVersion %s", lo, hi)
	}
	if (lo == networking.ServerTLSSettings_TLSV1_0 || lo == networking.ServerTLSSettings_TLSV1_1) && len(t.CipherSuites) == 0 {
		v.warnf(p+".minProtocolVersion", "%s needs cipherSuites: the default suites are all TLS 1.2 or later", lo)
	}
	seen := map[string]bool{}
	for i, c := range t.CipherSuites {
		cp := index(p+".cipherSuites", i)
		switch {
		case seen[c]:
			v.warnf(cp, "duplicate cipher suite %q is ignored", c)
		case !isCipherSuite(c):
			v.warnf(cp, "unknown cipher suite %q is ignored", c)
		}
		seen[c] = true
	}
}

// isCipherSuite accepts Envoy's (OpenSSL-style) names, such as
// ECDHE-RSA-AES128-GCM-SHA256, and the IANA names Go knows.
func isCipherSuite(name string) bool {
	if envoyCipherSuites[name] {
		return true
	}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if s.Name == name {
			return true
		}
	}
	return false
}

// envoyCipherSuites are the cipher names Envoy's BoringSSL accepts (Istio
// pkg/config/security ValidCipherSuites).
var envoyCipherSuites = map[string]bool{
	"ECDHE-ECDSA-AES128-GCM-SHA256": true, "ECDHE-RSA-AES128-GCM-SHA256": true,
	"ECDHE-ECDSA-AES256-GCM-SHA384": true, "ECDHE-RSA-AES256-GCM-SHA384": true,
	"ECDHE-ECDSA-CHACHA20-POLY1305": true, "ECDHE-RSA-CHACHA20-POLY1305": true,
	"ECDHE-PSK-CHACHA20-POLY1305": true, "ECDHE-ECDSA-AES128-SHA": true,
	"ECDHE-RSA-AES128-SHA": true, "ECDHE-PSK-AES128-CBC-SHA": true,
	"ECDHE-ECDSA-AES256-SHA": true, "ECDHE-RSA-AES256-SHA": true,
	"ECDHE-PSK-AES256-CBC-SHA": true, "AES128-GCM-SHA256": true,
	"AES256-GCM-SHA384": true, "AES128-SHA": true, "PSK-AES128-CBC-SHA": true,
	"AES256-SHA": true, "PSK-AES256-CBC-SHA": true, "DES-CBC3-SHA": true,
}
