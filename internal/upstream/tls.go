package upstream

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/michi-mesh/michi/internal/meshca"
	"github.com/michi-mesh/michi/internal/routing"
)

// tlsProfile is a cluster's TLS origination (Istio ClientTLSSettings as
// Envoy's UpstreamTlsContext): what the client presents and how it checks
// the server.
type tlsProfile struct {
	mode routing.TLSMode
	// sni is the fixed server name; empty means the request's host (Envoy
	// auto_sni, which Istio sets when the DestinationRule names no sni).
	sni string
	// sans are the names one of which the server certificate must carry
	// (DNS, URI, IP or e-mail SAN). When empty and autoSAN is set, the
	// certificate must be valid for the SNI (Envoy auto_san_validation).
	sans       []string
	autoSAN    bool
	skipVerify bool
	roots      *x509.CertPool // nil: the system roots
	clientCert *tls.Certificate
	crls       []*x509.RevocationList
	mesh       *meshca.Identity // ISTIO_MUTUAL
	// sessions lets new connections resume TLS sessions, as Envoy keeps
	// a session cache per upstream TLS context.
	sessions tls.ClientSessionCache
	// fingerprint identifies the settings and key material, so that an
	// unchanged profile (and its pooled connections) survives a reload.
	fingerprint string
}

// newTLSProfile reads the files of t for cluster c. id is the proxy's
// mesh identity, needed for ISTIO_MUTUAL.
func newTLSProfile(c *routing.Cluster, t *routing.ClientTLS, id *meshca.Identity) (*tlsProfile, error) {
	p := &tlsProfile{mode: t.Mode, sni: t.SNI, skipVerify: t.InsecureSkipVerify, sessions: tls.NewLRUClientSessionCache(0)}
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%v|", t.Mode, t.SNI, t.InsecureSkipVerify)
	read := func(what, path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		h.Write(b)
		return b, nil
	}
	p.sans = t.SubjectAltNames
	if len(p.sans) == 0 {
		// Istio verifies a ServiceEntry's subjectAltNames when the
		// DestinationRule names none.
		p.sans = c.SubjectAltNames
	}
	if t.CredentialName != "" {
		return nil, fmt.Errorf("tls.credentialName %q: Kubernetes secrets are not available; use caCertificates, clientCertificate and privateKey files", t.CredentialName)
	}
	switch t.Mode {
	case routing.TLSSimple, routing.TLSMutual:
		if t.CAFile != "" {
			b, err := read("tls.caCertificates", t.CAFile)
			if err != nil {
				return nil, err
			}
			p.roots = x509.NewCertPool()
			if !p.roots.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("tls.caCertificates %s: no PEM certificate", t.CAFile)
			}
		}
		if t.Mode == routing.TLSMutual {
			if t.CertFile == "" || t.KeyFile == "" {
				return nil, errors.New("tls mode MUTUAL needs clientCertificate and privateKey")
			}
			certPEM, err := read("tls.clientCertificate", t.CertFile)
			if err != nil {
				return nil, err
			}
			keyPEM, err := read("tls.privateKey", t.KeyFile)
			if err != nil {
				return nil, err
			}
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, fmt.Errorf("tls.clientCertificate %s: %w", t.CertFile, err)
			}
			p.clientCert = &cert
		}
		if t.CRLFile != "" {
			b, err := read("tls.caCrl", t.CRLFile)
			if err != nil {
				return nil, err
			}
			if p.crls, err = parseCRLs(b); err != nil {
				return nil, fmt.Errorf("tls.caCrl %s: %w", t.CRLFile, err)
			}
		}
		p.autoSAN = p.sni == "" && len(p.sans) == 0 && !p.skipVerify
	case routing.TLSIstioMutual:
		if id == nil {
			return nil, errors.New("tls mode ISTIO_MUTUAL needs a mesh identity (start michi with a mesh certificate, see 'michi ca')")
		}
		p.mesh = id
		h.Write(id.Certificate.Certificate[0])
		h.Write(id.RootsPEM)
		if p.sni == "" {
			p.sni = istioMutualSNI(c)
		}
		if len(p.sans) == 0 {
			p.sans = serviceAccountIDs(c, id.ID.TrustDomain)
		}
	default:
		return nil, fmt.Errorf("tls mode %q is not supported", t.Mode)
	}
	fmt.Fprintf(h, "|%q", p.sans)
	p.fingerprint = hex.EncodeToString(h.Sum(nil))
	return p, nil
}

// istioMutualSNI is the SNI Istio sends in the mesh,
// outbound_.<port>_.<subset>_.<host> (model.BuildDNSSrvSubsetKey), which
// lets a gateway in AUTO_PASSTHROUGH route on it.
func istioMutualSNI(c *routing.Cluster) string {
	return "outbound_." + strconv.FormatUint(uint64(c.Port), 10) + "_." + c.Subset + "_." + c.Host
}

// serviceAccountIDs are the identities an ISTIO_MUTUAL server may present:
// the SPIFFE IDs of the cluster's endpoints' service accounts (Istio
// verifies the service's accounts when the rule names no SANs). An
// account given by name is in the service's namespace.
func serviceAccountIDs(c *routing.Cluster, trustDomain string) []string {
	var ids []string
	for _, ep := range c.Endpoints {
		sa := ep.ServiceAccount
		switch {
		case sa == "":
			continue
		case !strings.HasPrefix(sa, "spiffe://"):
			sa = meshca.SPIFFEID{TrustDomain: trustDomain, Namespace: c.Namespace, ServiceAccount: sa}.String()
		}
		if !slices.Contains(ids, sa) {
			ids = append(ids, sa)
		}
	}
	slices.Sort(ids)
	return ids
}

// clientConfig is the crypto/tls configuration of one connection.
// Verification is done in VerifyConnection, which checks the SANs the way
// Envoy does rather than only the host name Go would check.
func (p *tlsProfile) clientConfig(serverName string, pr proto, now func() time.Time) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: true,
		VerifyConnection:   func(cs tls.ConnectionState) error { return p.verify(cs, serverName, now()) },
		ClientSessionCache: p.sessions,
	}
	// ALPN: h2 only for HTTP/2 clusters, as Istio sets alpn_protocols
	// for them; HTTP/1.1 clusters offer http/1.1 so that an h2-capable
	// server does not switch protocols on us. In the mesh Istio adds the
	// "istio" marker (ALPNInMesh).
	if pr == protoHTTP2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	} else {
		cfg.NextProtos = []string{"http/1.1"}
	}
	if p.mesh != nil {
		cfg.NextProtos = append(cfg.NextProtos, "istio")
	}
	var cert *tls.Certificate
	switch {
	case p.mesh != nil:
		cert = &p.mesh.Certificate
	case p.clientCert != nil:
		cert = p.clientCert
	}
	if cert != nil {
		// Present the certificate whatever CAs the server says it
		// accepts, as Envoy does; Go would otherwise send none when the
		// issuer is not in the server's list.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg
}

// verify checks the server's certificate: the chain (to the mesh roots,
// the configured CA or the system roots), then the SANs, then the CRL.
func (p *tlsProfile) verify(cs tls.ConnectionState, serverName string, now time.Time) error {
	if p.skipVerify {
		return nil
	}
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("server sent no certificate")
	}
	leaf := certs[0]
	if p.mesh != nil {
		if _, err := p.mesh.VerifyPeer(certs, x509.ExtKeyUsageServerAuth, now); err != nil {
			return err
		}
		if len(p.sans) > 0 && !matchSAN(leaf, p.sans) {
			return fmt.Errorf("server identity %s is none of %s", certIdentities(leaf), strings.Join(p.sans, ", "))
		}
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         p.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return err
	}
	switch {
	case len(p.sans) > 0:
		if !matchSAN(leaf, p.sans) {
			return fmt.Errorf("certificate SANs %s match none of %s", certIdentities(leaf), strings.Join(p.sans, ", "))
		}
	case p.autoSAN:
		if err := leaf.VerifyHostname(serverName); err != nil {
			return err
		}
	}
	if len(p.crls) > 0 {
		return checkCRLs(chains[0], p.crls, now)
	}
	return nil
}

// matchSAN reports whether the certificate carries one of names, as an
// exact URI, IP or e-mail SAN, or a DNS SAN (wildcards in the certificate
// match one label, as in Envoy's DNS SAN matcher).
func matchSAN(cert *x509.Certificate, names []string) bool {
	for _, n := range names {
		for _, u := range cert.URIs {
			if u.String() == n {
				return true
			}
		}
		for _, d := range cert.DNSNames {
			if dnsMatch(d, n) {
				return true
			}
		}
		for _, ip := range cert.IPAddresses {
			if ip.Equal(net.ParseIP(n)) {
				return true
			}
		}
		if slices.Contains(cert.EmailAddresses, n) {
			return true
		}
	}
	return false
}

// dnsMatch matches a certificate DNS name (possibly *.suffix) to a name.
func dnsMatch(pattern, name string) bool {
	pattern, name = strings.ToLower(pattern), strings.ToLower(name)
	if pattern == name {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*.")
	if !ok {
		return false
	}
	_, rest, found := strings.Cut(name, ".")
	return found && rest == suffix
}

// certIdentities lists a certificate's SANs for error messages.
func certIdentities(c *x509.Certificate) string {
	var ids []string
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		ids = append(ids, ip.String())
	}
	if len(ids) == 0 {
		return "(none)"
	}
	return "[" + strings.Join(ids, " ") + "]"
}

// parseCRLs reads PEM ("X509 CRL") or DER revocation lists.
func parseCRLs(b []byte) ([]*x509.RevocationList, error) {
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		crl, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, err
		}
		return []*x509.RevocationList{crl}, nil
	}
	var crls []*x509.RevocationList
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, err
		}
		crls = append(crls, crl)
	}
	if len(crls) == 0 {
		return nil, errors.New("no X509 CRL block")
	}
	return crls, nil
}

// checkCRLs checks every certificate of a verified chain against the CRLs
// of its issuer. Envoy (UpstreamTlsContext ca_crl) turns on CRL checking
// for the whole chain once a CRL is configured, so every CA of the chain
// needs a current CRL signed by it, or the chain fails whether or not the
// certificate is revoked.
func checkCRLs(chain []*x509.Certificate, crls []*x509.RevocationList, now time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		found := false
		for _, crl := range crls {
			if !bytes.Equal(crl.RawIssuer, cert.RawIssuer) || crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			found = true
			if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
				return fmt.Errorf("CRL of %s has expired", describeCert(issuer))
			}
			for _, rc := range crl.RevokedCertificateEntries {
				if rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
					return fmt.Errorf("certificate %s (serial %s) is revoked", describeCert(cert), cert.SerialNumber)
				}
			}
		}
		if !found {
			return fmt.Errorf("no CRL for issuer %s", describeCert(issuer))
		}
	}
	return nil
}

func describeCert(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return certIdentities(c)
}
