package meshca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Identity is a proxy's mesh identity: its certificate and key, and the
// mesh roots its peers' certificates must chain to.
type Identity struct {
	Certificate tls.Certificate
	Leaf        *x509.Certificate
	ID          SPIFFEID
	Roots       *x509.CertPool
	// RootsPEM is the roots file as read, to compare reloads.
	RootsPEM []byte
}

// LoadIdentity reads a workload identity: the certificate chain, its key
// and the mesh roots. The certificate must carry a SPIFFE ID.
func LoadIdentity(certFile, keyFile, rootsFile string) (*Identity, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("mesh identity: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("mesh identity %s: %w", certFile, err)
		}
	}
	id, err := CertSPIFFEID(leaf)
	if err != nil {
		return nil, fmt.Errorf("mesh identity %s: %w", certFile, err)
	}
	rootsPEM, err := os.ReadFile(rootsFile)
	if err != nil {
		return nil, fmt.Errorf("mesh roots: %w", err)
	}
	roots, err := parseCerts(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("mesh roots %s: %w", rootsFile, err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	return &Identity{Certificate: cert, Leaf: leaf, ID: id, Roots: pool, RootsPEM: rootsPEM}, nil
}

// LoadIdentityDir reads cert.pem, key.pem and root-cert.pem from dir.
func LoadIdentityDir(dir string) (*Identity, error) {
	return LoadIdentity(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), filepath.Join(dir, RootCertFile))
}

// Equal reports whether two identities hold the same certificate, key and
// roots (an unchanged reload).
func (id *Identity) Equal(o *Identity) bool {
	if id == nil || o == nil {
		return id == o
	}
	if len(id.Certificate.Certificate) != len(o.Certificate.Certificate) || string(id.RootsPEM) != string(o.RootsPEM) {
		return false
	}
	for i := range id.Certificate.Certificate {
		if string(id.Certificate.Certificate[i]) != string(o.Certificate.Certificate[i]) {
			return false
		}
	}
	return publicKeysEqual(id.Leaf.PublicKey, o.Leaf.PublicKey)
}

// VerifyPeer checks a peer's certificate chain against the mesh roots for
// the given usage (server or client authentication) and returns the
// peer's SPIFFE ID, which must be in the local trust domain.
func (id *Identity) VerifyPeer(chain []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) (SPIFFEID, error) {
	if len(chain) == 0 {
		return SPIFFEID{}, errors.New("peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         id.Roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return SPIFFEID{}, fmt.Errorf("peer certificate does not chain to the mesh roots: %w", err)
	}
	peer, err := CertSPIFFEID(chain[0])
	if err != nil {
		return SPIFFEID{}, fmt.Errorf("peer certificate: %w", err)
	}
	if peer.TrustDomain != id.ID.TrustDomain {
		return SPIFFEID{}, fmt.Errorf("peer %s is not in trust domain %s", peer, id.ID.TrustDomain)
	}
	return peer, nil
}

// ServerTLSConfig is the server side of ISTIO_MUTUAL: it presents id's
// certificate and requires a client certificate that chains to the mesh
// roots and carries a SPIFFE ID of the same trust domain (what an Istio
// sidecar's inbound listener enforces in STRICT mode). The peer's
// identity can then be read with PeerSPIFFEID. It offers h2 and
// http/1.1 by ALPN.
func ServerTLSConfig(id *Identity) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{id.Certificate},
		// The chain is verified in VerifyConnection against the mesh
		// roots, with the SPIFFE check in the same place.
		ClientAuth: tls.RequireAnyClientCert,
		NextProtos: []string{"h2", "http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := id.VerifyPeer(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, time.Now())
			return err
		},
	}
}

// PeerSPIFFEID returns the identity of a verified mutual-TLS peer.
func PeerSPIFFEID(cs tls.ConnectionState) (SPIFFEID, error) {
	if len(cs.PeerCertificates) == 0 {
		return SPIFFEID{}, errors.New("peer sent no certificate")
	}
	return CertSPIFFEID(cs.PeerCertificates[0])
}
