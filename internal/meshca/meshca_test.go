package meshca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestInitAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := Init(dir, InitOptions{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if ca.TrustDomain != "example.org" || !ca.Cert.IsCA {
		t.Errorf("Init = trust domain %q, CA %v; want example.org, a CA", ca.TrustDomain, ca.Cert.IsCA)
	}
	fi, err := os.Stat(filepath.Join(dir, RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s mode = %v, want 0600", RootKeyFile, perm)
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || loaded.TrustDomain != "example.org" {
		t.Errorf("Load returned another root or trust domain %q", loaded.TrustDomain)
	}
	if _, err := Init(dir, InitOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second Init = %v, want a refusal to overwrite the root key", err)
	}
	if _, err := Init(t.TempDir(), InitOptions{TrustDomain: "Bad_Domain"}); err == nil {
		t.Error("Init accepted an invalid trust domain")
	}
}

func TestLoadRejectsMismatchedKey(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if _, err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(b, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(b, RootKeyFile))
	os.WriteFile(filepath.Join(a, RootKeyFile), key, 0o600)
	if _, err := Load(a); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("Load with another root's key = %v, want a mismatch error", err)
	}
}

func TestIssueWorkload(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ca, err := Init(t.TempDir(), InitOptions{TTL: 48 * time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	w, err := ca.IssueWorkload(WorkloadOptions{Namespace: "bookinfo", ServiceAccount: "bookinfo-reviews", DNSNames: []string{"reviews.bookinfo"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.ID.String(), "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"; got != want {
		t.Errorf("ID = %q, want %q", got, want)
	}
	leaf := w.Leaf
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != w.ID.String() {
		t.Errorf("URI SANs = %v, want [%s]", leaf.URIs, w.ID)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage); diff != "" {
		t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
	}
	if !leaf.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter = %v, want capped at the root's %v", leaf.NotAfter, ca.Cert.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify against the root: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "out")
	if err := w.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	id, err := LoadIdentityDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id.ID != w.ID {
		t.Errorf("LoadIdentityDir ID = %v, want %v", id.ID, w.ID)
	}
	fi, _ := os.Stat(filepath.Join(dir, KeyFile))
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s mode = %v, want 0600", KeyFile, perm)
	}
}

func TestIssueWorkloadRejectsBadNames(t *testing.T) {
	ca, err := Init(t.TempDir(), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts WorkloadOptions
	}{
		{"empty namespace", WorkloadOptions{ServiceAccount: "sa"}},
		{"upper-case namespace", WorkloadOptions{Namespace: "Default", ServiceAccount: "sa"}},
		{"slash in service account", WorkloadOptions{Namespace: "ns", ServiceAccount: "a/b"}},
		{"bad DNS name", WorkloadOptions{Namespace: "ns", ServiceAccount: "sa", DNSNames: []string{"-x.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ca.IssueWorkload(tc.opts); err == nil {
				t.Errorf("IssueWorkload(%+v) succeeded, want an error", tc.opts)
			}
		})
	}
}

func TestParseSPIFFEID(t *testing.T) {
	tests := []struct {
		in      string
		want    SPIFFEID
		wantErr bool
	}{
		{in: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage", want: SPIFFEID{"cluster.local", "default", "bookinfo-productpage"}},
		{in: "spiffe://td.example/ns/a/sa/b.c", want: SPIFFEID{"td.example", "a", "b.c"}},
		{in: "https://cluster.local/ns/default/sa/x", wantErr: true},
		{in: "spiffe://cluster.local/ns/default", wantErr: true},
		{in: "spiffe://cluster.local/sa/x/ns/default", wantErr: true},
		{in: "spiffe://cluster.local/ns/default/sa/x/extra", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseSPIFFEID(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseSPIFFEID(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseSPIFFEID(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// workloadIdentity issues and loads an identity from ca.
func workloadIdentity(t *testing.T, ca *CA, ns, sa string) *Identity {
	t.Helper()
	w, err := ca.IssueWorkload(WorkloadOptions{Namespace: ns, ServiceAccount: sa})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := w.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	id, err := LoadIdentityDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// handshake runs a real TLS handshake over loopback between a server
// with cfg and a client presenting client (nil: no certificate). It
// returns the server's view of the peer, or the server's error.
func handshake(t *testing.T, cfg *tls.Config, client *Identity) (SPIFFEID, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		id  SPIFFEID
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.HandshakeContext(context.Background()); err != nil {
			done <- result{err: err}
			return
		}
		id, err := PeerSPIFFEID(tc.ConnectionState())
		done <- result{id, err}
	}()
	ccfg := &tls.Config{InsecureSkipVerify: true}
	if client != nil {
		ccfg.Certificates = []tls.Certificate{client.Certificate}
	}
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := tls.Client(conn, ccfg)
	tc.Handshake()
	// In TLS 1.3 the client finishes before the server has checked its
	// certificate; a read surfaces the server's verdict.
	tc.SetReadDeadline(time.Now().Add(time.Second))
	tc.Read(make([]byte, 1))
	r := <-done
	return r.id, r.err
}

func TestServerTLSConfig(t *testing.T) {
	ca, err := Init(t.TempDir(), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Init(t.TempDir(), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherTD, err := Init(t.TempDir(), InitOptions{TrustDomain: "other.example"})
	if err != nil {
		t.Fatal(err)
	}
	server := workloadIdentity(t, ca, "default", "reviews")
	cfg := ServerTLSConfig(server)
	tests := []struct {
		name    string
		client  *Identity
		want    string
		wantErr string
	}{
		{name: "mesh client", client: workloadIdentity(t, ca, "default", "productpage"), want: "spiffe://cluster.local/ns/default/sa/productpage"},
		{name: "no client certificate", client: nil, wantErr: "certificate"},
		{name: "another mesh's root", client: workloadIdentity(t, other, "default", "productpage"), wantErr: "mesh roots"},
		{name: "another trust domain", client: workloadIdentity(t, otherTD, "default", "productpage"), wantErr: "mesh roots"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := handshake(t, cfg, tc.client)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("handshake = %v, %v; want an error containing %q", id, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != tc.want {
				t.Errorf("peer = %s, want %s", id, tc.want)
			}
		})
	}
}

func TestVerifyPeerTrustDomain(t *testing.T) {
	// A root shared by two trust domains is still not one mesh.
	ca, err := Init(t.TempDir(), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := workloadIdentity(t, ca, "default", "a")
	peer := workloadIdentity(t, ca, "default", "b")
	ca.TrustDomain = "elsewhere.example"
	stranger := workloadIdentity(t, ca, "default", "c")
	if _, err := id.VerifyPeer([]*x509.Certificate{peer.Leaf}, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Errorf("VerifyPeer(same trust domain) = %v", err)
	}
	if _, err := id.VerifyPeer([]*x509.Certificate{stranger.Leaf}, x509.ExtKeyUsageServerAuth, time.Now()); err == nil || !strings.Contains(err.Error(), "not in trust domain") {
		t.Errorf("VerifyPeer(other trust domain) = %v, want a trust-domain error", err)
	}
	if _, err := id.VerifyPeer(nil, x509.ExtKeyUsageServerAuth, time.Now()); err == nil {
		t.Error("VerifyPeer(no certificate) succeeded")
	}
}

func TestLoadIdentityNeedsSPIFFEID(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(filepath.Join(dir, "ca"), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	// The root itself has no SPIFFE ID.
	_, err := LoadIdentity(filepath.Join(dir, "ca", RootCertFile), filepath.Join(dir, "ca", RootKeyFile), filepath.Join(dir, "ca", RootCertFile))
	if err == nil || !strings.Contains(err.Error(), "no SPIFFE ID") {
		t.Errorf("LoadIdentity(root) = %v, want a missing SPIFFE ID error", err)
	}
	if _, err := LoadIdentityDir(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadIdentityDir(missing) = %v, want not exist", err)
	}
}

func TestIdentityEqual(t *testing.T) {
	ca, err := Init(t.TempDir(), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := ca.IssueWorkload(WorkloadOptions{Namespace: "default", ServiceAccount: "a"})
	dir := t.TempDir()
	w.WriteFiles(dir)
	a, _ := LoadIdentityDir(dir)
	b, _ := LoadIdentityDir(dir)
	c := workloadIdentity(t, ca, "default", "a")
	if !a.Equal(b) {
		t.Error("identities loaded from the same files are not Equal")
	}
	if a.Equal(c) {
		t.Error("a reissued identity is Equal to the old one")
	}
}
