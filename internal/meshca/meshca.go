// Package meshca is michi's built-in mesh certificate authority: enough of
// what istiod's CA does for two michi proxies to talk ISTIO_MUTUAL with no
// outside tool. It creates a self-signed root, issues workload certificates
// carrying a SPIFFE identity (spiffe://<trust domain>/ns/<ns>/sa/<sa>) and
// loads them back as TLS configuration for the client and server sides of
// mutual TLS.
//
// Files use the layout Istio mounts into a workload: cert.pem (the
// certificate chain), key.pem and root-cert.pem. A CA directory holds
// root-cert.pem and root-key.pem.
//
// meshca imports only the standard library.
package meshca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// File names of a CA directory and of an issued workload identity.
const (
	RootCertFile = "root-cert.pem"
	RootKeyFile  = "root-key.pem"
	CertFile     = "cert.pem"
	KeyFile      = "key.pem"
)

// DefaultTrustDomain is Istio's default trust domain.
const DefaultTrustDomain = "cluster.local"

// Default lifetimes. Istio's own root lives ten years; its workload
// certificates live 24h because istio-agent rotates them. Nothing rotates
// a certificate issued here, so the workload default is a year.
const (
	DefaultRootTTL     = 10 * 365 * 24 * time.Hour
	DefaultWorkloadTTL = 365 * 24 * time.Hour
)

// clockSkew backdates certificates so that peers whose clocks lag a little
// still accept them.
const clockSkew = 5 * time.Minute

// CA is a loaded mesh root.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	// TrustDomain is the root's subject organization, as in Istio's
	// self-signed root.
	TrustDomain string
	key         crypto.Signer
}

// InitOptions configure Init.
type InitOptions struct {
	TrustDomain string           // default cluster.local
	TTL         time.Duration    // default DefaultRootTTL
	Now         func() time.Time // default time.Now
}

// Init creates a new root (ECDSA P-256) in dir. It refuses to overwrite an
// existing root key: losing it would orphan every certificate it issued.
func Init(dir string, opts InitOptions) (*CA, error) {
	if opts.TrustDomain == "" {
		opts.TrustDomain = DefaultTrustDomain
	}
	if err := validateDNSName(opts.TrustDomain); err != nil {
		return nil, fmt.Errorf("trust domain %q: %w", opts.TrustDomain, err)
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultRootTTL
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	keyPath := filepath.Join(dir, RootKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return nil, fmt.Errorf("%s already exists; remove it to create a new root", keyPath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{opts.TrustDomain}, CommonName: "michi mesh root"},
		NotBefore:             t.Add(-clockSkew),
		NotAfter:              t.Add(opts.TTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, RootCertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return Load(dir)
}

// Load reads the root certificate and key from dir.
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, RootKeyFile))
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, RootCertFile), err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, RootKeyFile), err)
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", filepath.Join(dir, RootCertFile))
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not match %s", RootKeyFile, RootCertFile)
	}
	td := DefaultTrustDomain
	if len(cert.Subject.Organization) > 0 && cert.Subject.Organization[0] != "" {
		td = cert.Subject.Organization[0]
	}
	return &CA{Cert: cert, CertPEM: certPEM, TrustDomain: td, key: key}, nil
}

// WorkloadOptions describe a workload certificate.
type WorkloadOptions struct {
	Namespace      string
	ServiceAccount string
	// DNSNames are extra SANs, for clients that verify a host name.
	DNSNames []string
	TTL      time.Duration    // default DefaultWorkloadTTL
	Now      func() time.Time // default time.Now
}

// Workload is an issued identity, PEM encoded.
type Workload struct {
	ID      SPIFFEID
	Leaf    *x509.Certificate
	CertPEM []byte // the certificate chain (the leaf; the root signs it directly)
	KeyPEM  []byte
	RootPEM []byte
}

// IssueWorkload signs a certificate for a workload running as service
// account sa in namespace ns. Like an Istio workload certificate it has an
// empty subject, the SPIFFE ID as its only URI SAN (critical, since the
// subject is empty) and both server and client authentication usages,
// because a sidecar serves and dials with the same identity.
func (ca *CA) IssueWorkload(o WorkloadOptions) (*Workload, error) {
	id := SPIFFEID{TrustDomain: ca.TrustDomain, Namespace: o.Namespace, ServiceAccount: o.ServiceAccount}
	if err := id.validate(); err != nil {
		return nil, err
	}
	for _, n := range o.DNSNames {
		if err := validateDNSName(n); err != nil {
			return nil, fmt.Errorf("DNS name %q: %w", n, err)
		}
	}
	if o.TTL <= 0 {
		o.TTL = DefaultWorkloadTTL
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now()
	notAfter := t.Add(o.TTL)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter // a leaf cannot outlive its root
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             t.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              o.DNSNames,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Workload{
		ID:      id,
		Leaf:    leaf,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  keyPEM,
		RootPEM: ca.CertPEM,
	}, nil
}

// WriteFiles writes cert.pem, key.pem (mode 0600) and root-cert.pem into
// dir, creating it.
func (w *Workload) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, KeyFile), w.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CertFile), w.CertPEM, 0o644); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, RootCertFile), w.RootPEM, 0o644)
}

// writeFile replaces path atomically, so a proxy reading it never sees a
// half-written certificate.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// keyID is the RFC 5280 method 1 key identifier (SHA-1 of the key).
func keyID(pub *ecdsa.PublicKey) []byte {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha1.Sum(b)
	return sum[:]
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no private key found")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
		return s, nil
	}
}

// parseCerts parses every CERTIFICATE block of a PEM file.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate found")
	}
	return certs, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
