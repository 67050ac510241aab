package meshca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// SPIFFEID is a workload identity in Istio's form,
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
type SPIFFEID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

func (id SPIFFEID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the identity as a certificate URI SAN.
func (id SPIFFEID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

func (id SPIFFEID) validate() error {
	if err := validateDNSName(id.TrustDomain); err != nil {
		return fmt.Errorf("trust domain %q: %w", id.TrustDomain, err)
	}
	if err := validateLabel(id.Namespace); err != nil {
		return fmt.Errorf("namespace %q: %w", id.Namespace, err)
	}
	if err := validateSegment(id.ServiceAccount); err != nil {
		return fmt.Errorf("service account %q: %w", id.ServiceAccount, err)
	}
	return nil
}

// ParseSPIFFEID parses an Istio-style SPIFFE ID.
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return SPIFFEID{}, fmt.Errorf("%q is not a spiffe:// URI", s)
	}
	td, path, _ := strings.Cut(rest, "/")
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return SPIFFEID{}, fmt.Errorf("%q is not of the form spiffe://<trust domain>/ns/<namespace>/sa/<service account>", s)
	}
	id := SPIFFEID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.validate(); err != nil {
		return SPIFFEID{}, fmt.Errorf("%q: %w", s, err)
	}
	return id, nil
}

// CertSPIFFEID returns the SPIFFE ID of a certificate: its one spiffe://
// URI SAN (the SPIFFE X.509-SVID rule: exactly one).
func CertSPIFFEID(cert *x509.Certificate) (SPIFFEID, error) {
	var found []*url.URL
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return SPIFFEID{}, errors.New("certificate has no SPIFFE ID")
	case 1:
		return ParseSPIFFEID(found[0].String())
	default:
		return SPIFFEID{}, errors.New("certificate has more than one SPIFFE ID")
	}
}

// validateDNSName accepts a lower-case DNS name (a trust domain or SAN).
func validateDNSName(s string) error {
	if s == "" || len(s) > 253 {
		return errors.New("must be 1-253 characters")
	}
	for _, l := range strings.Split(s, ".") {
		if err := validateLabel(l); err != nil {
			return err
		}
	}
	return nil
}

// validateLabel accepts a DNS-1123 label, the form of a namespace.
func validateLabel(s string) error {
	if s == "" || len(s) > 63 {
		return errors.New("must be a DNS label of 1-63 characters")
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if !alnum && (r != '-' || i == 0 || i == len(s)-1) {
			return errors.New("must consist of lower-case letters, digits and inner '-'")
		}
	}
	return nil
}

// validateSegment accepts a Kubernetes service account name (a DNS-1123
// subdomain): it becomes a path segment of the SPIFFE ID.
func validateSegment(s string) error {
	return validateDNSName(s)
}
