package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/meshca"
	"github.com/michi-mesh/michi/internal/routing"
)

// testPKI is a CA made for one test, writing its files to a temp dir.
type testPKI struct {
	t      *testing.T
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
	serial int64
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: t.TempDir(), cert: cert, key: key, serial: 1}
	p.caFile = p.write(name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// leaf is an issued certificate and its files.
type leaf struct {
	cert              *x509.Certificate
	tls               tls.Certificate
	certFile, keyFile string
}

// issue signs a leaf for server and client authentication.
func (p *testPKI) issue(name string, dns []string, uris ...string) leaf {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			p.t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	l := leaf{
		certFile: p.write(name+".pem", "CERTIFICATE", der),
		keyFile:  p.write(name+"-key.pem", "PRIVATE KEY", kder),
	}
	l.cert, _ = x509.ParseCertificate(der)
	l.tls, err = tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return l
}

// crl writes a CRL of this CA revoking the given certificates.
func (p *testPKI) crl(revoked ...*x509.Certificate) string {
	p.t.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(time.Hour),
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.cert, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serial++
	return p.write("crl-"+itoa(int(p.serial))+".pem", "X509 CRL", der)
}

// tlsBackend serves HTTPS with cfg, offering h2 and http/1.1, and answers
// with the protocol, SNI and client certificate it saw.
func tlsBackend(t *testing.T, cfg *tls.Config) *httptest.Server {
	t.Helper()
	return tlsBackendWith(t, cfg, nil)
}

// tlsBackendWith is tlsBackend with a hook to adjust the server before
// it starts.
func tlsBackendWith(t *testing.T, cfg *tls.Config, setup func(*http.Server)) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-SNI", r.TLS.ServerName)
		if len(r.TLS.PeerCertificates) > 0 {
			c := r.TLS.PeerCertificates[0]
			id := c.Subject.CommonName
			if len(c.URIs) > 0 {
				id = c.URIs[0].String()
			}
			w.Header().Set("X-Client", id)
		}
	}))
	srv.TLS = cfg
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are what some tests want
	if setup != nil {
		setup(srv.Config)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func tlsCluster(addr string, tls *routing.ClientTLS) *routing.Cluster {
	c := httpCluster("c", addr)
	c.Policy.TLS = tls
	return c
}

// roundTripHost sends a GET with the given Host header.
func roundTripHost(t *testing.T, c *Cluster, host string) (*http.Response, error) {
	t.Helper()
	req := newRequest(t, "GET", "/")
	req.Host = host
	resp, _, err := c.RoundTrip(t.Context(), req, AttemptOptions{})
	if err == nil {
		io.Copy(io.Discard, resp.Body) // read to the end, so the connection is reused
		resp.Body.Close()
	}
	return resp, err
}

func TestSimpleTLS(t *testing.T) {
	pki := newTestPKI(t, "test-ca")
	server := pki.issue("server", []string{"svc.example.com"})
	srv := tlsBackend(t, &tls.Config{Certificates: []tls.Certificate{server.tls}})
	addr := srv.Listener.Addr().String()
	other := newTestPKI(t, "other-ca")

	tests := []struct {
		name    string
		tls     routing.ClientTLS
		host    string
		wantErr string // "" for success
		wantSNI string
	}{
		{name: "auto SNI and SAN from the Host", tls: routing.ClientTLS{Mode: routing.TLSSimple, CAFile: pki.caFile},
			host: "svc.example.com:443", wantSNI: "svc.example.com"},
		{name: "Host not in the certificate", tls: routing.ClientTLS{Mode: routing.TLSSimple, CAFile: pki.caFile},
			host: "wrong.example.com", wantErr: "not wrong.example.com"},
		{name: "subjectAltNames match", tls: routing.ClientTLS{Mode: routing.TLSSimple, CAFile: pki.caFile, SubjectAltNames: []string{"svc.example.com"}},
			host: "anything", wantSNI: "anything"},
		{name: "wrong subjectAltNames rejected", tls: routing.ClientTLS{Mode: routing.TLSSimple, CAFile: pki.caFile, SubjectAltNames: []string{"other.example.com"}},
			host: "svc.example.com", wantErr: "match none of other.example.com"},
		{name: "fixed SNI without SANs checks only the chain", tls: routing.ClientTLS{Mode: routing.TLSSimple, CAFile: pki.caFile, SNI: "fixed.example.com"},
			host: "anything", wantSNI: "fixed.example.com"},
		{name: "unknown CA", tls: routing.ClientTLS{Mode: routing.TLSSimple, CAFile: other.caFile},
			host: "svc.example.com", wantErr: "unknown authority"},
		{name: "system roots do not know the test CA", tls: routing.ClientTLS{Mode: routing.TLSSimple},
			host: "svc.example.com", wantErr: "certificate"},
		{name: "insecureSkipVerify", tls: routing.ClientTLS{Mode: routing.TLSSimple, CAFile: other.caFile, InsecureSkipVerify: true},
			host: "wrong.example.com", wantSNI: "wrong.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, Options{})
			c := update(t, m, tlsCluster(addr, &tc.tls))["c"]
			resp, err := roundTripHost(t, c, tc.host)
			if tc.wantErr != "" {
				if flagOf(err) != "UF" || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("RoundTrip = %v, want UF containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Header.Get("X-SNI"); got != tc.wantSNI {
				t.Errorf("SNI = %q, want %q", got, tc.wantSNI)
			}
		})
	}
}

func TestTLSALPN(t *testing.T) {
	pki := newTestPKI(t, "test-ca")
	server := pki.issue("server", []string{"svc.example.com"})
	srv := tlsBackend(t, &tls.Config{Certificates: []tls.Certificate{server.tls}})
	for _, tc := range []struct{ protocol, want string }{
		{"HTTP2", "HTTP/2.0"},
		{"HTTP", "HTTP/1.1"}, // the server speaks h2, but an HTTP/1.1 cluster does not offer it
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			m := newManager(t, Options{})
			cfg := tlsCluster(srv.Listener.Addr().String(), &routing.ClientTLS{Mode: routing.TLSSimple, CAFile: pki.caFile})
			cfg.Protocol = tc.protocol
			c := update(t, m, cfg)["c"]
			for range 3 {
				resp, err := roundTripHost(t, c, "svc.example.com")
				if err != nil {
					t.Fatal(err)
				}
				if got := resp.Header.Get("X-Proto"); got != tc.want {
					t.Fatalf("protocol = %q, want %q", got, tc.want)
				}
			}
			if got := stat(t, m, "c", "upstream_cx_total"); got != 1 {
				t.Errorf("upstream_cx_total = %d, want 1 (reused)", got)
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t, "test-ca")
	server := pki.issue("server", []string{"svc.example.com"})
	client := pki.issue("client", nil)
	pool := x509.NewCertPool()
	pool.AddCert(pki.cert)
	srv := tlsBackend(t, &tls.Config{
		Certificates: []tls.Certificate{server.tls},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	addr := srv.Listener.Addr().String()

	t.Run("client certificate presented", func(t *testing.T) {
		m := newManager(t, Options{})
		c := update(t, m, tlsCluster(addr, &routing.ClientTLS{
			Mode: routing.TLSMutual, CAFile: pki.caFile, CertFile: client.certFile, KeyFile: client.keyFile,
		}))["c"]
		resp, err := roundTripHost(t, c, "svc.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-Client"); got != "client" {
			t.Errorf("server saw client %q, want \"client\"", got)
		}
	})
	t.Run("SIMPLE to a server requiring a certificate fails", func(t *testing.T) {
		m := newManager(t, Options{})
		c := update(t, m, tlsCluster(addr, &routing.ClientTLS{Mode: routing.TLSSimple, CAFile: pki.caFile}))["c"]
		if _, err := roundTripHost(t, c, "svc.example.com"); err == nil {
			t.Fatal("RoundTrip without a client certificate succeeded")
		}
	})
	t.Run("unreadable key is a configuration error", func(t *testing.T) {
		m := newManager(t, Options{})
		c := update(t, m, tlsCluster(addr, &routing.ClientTLS{
			Mode: routing.TLSMutual, CAFile: pki.caFile, CertFile: client.certFile, KeyFile: filepath.Join(t.TempDir(), "missing.pem"),
		}))["c"]
		_, err := roundTripHost(t, c, "svc.example.com")
		if flagOf(err) != "UF" || !strings.Contains(err.Error(), "tls.privateKey") {
			t.Fatalf("RoundTrip = %v, want UF naming tls.privateKey", err)
		}
	})
}

func TestCRL(t *testing.T) {
	pki := newTestPKI(t, "test-ca")
	server := pki.issue("server", []string{"svc.example.com"})
	other := pki.issue("other", nil)
	srv := tlsBackend(t, &tls.Config{Certificates: []tls.Certificate{server.tls}})
	unrelated := newTestPKI(t, "unrelated-ca")
	tests := []struct {
		name    string
		crl     string
		wantErr string
	}{
		{name: "server certificate revoked", crl: pki.crl(server.cert), wantErr: "is revoked"},
		{name: "another certificate revoked", crl: pki.crl(other.cert)},
		{name: "no CRL for the server's CA", crl: unrelated.crl(), wantErr: "no CRL for issuer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, Options{})
			c := update(t, m, tlsCluster(srv.Listener.Addr().String(), &routing.ClientTLS{
				Mode: routing.TLSSimple, CAFile: pki.caFile, CRLFile: tc.crl,
			}))["c"]
			_, err := roundTripHost(t, c, "svc.example.com")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if flagOf(err) != "UF" || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("RoundTrip = %v, want UF containing %q", err, tc.wantErr)
			}
		})
	}
}

// mesh is a mesh CA with a server and a client identity.
type mesh struct {
	ca             *meshca.CA
	server, client *meshca.Identity
	clientFiles    *MeshIdentity
}

func newMesh(t *testing.T) *mesh {
	t.Helper()
	dir := t.TempDir()
	ca, err := meshca.Init(filepath.Join(dir, "ca"), meshca.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ms := &mesh{ca: ca}
	issue := func(sa string) (*meshca.Identity, string) {
		w, err := ca.IssueWorkload(meshca.WorkloadOptions{Namespace: "default", ServiceAccount: sa})
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(dir, sa)
		if err := w.WriteFiles(d); err != nil {
			t.Fatal(err)
		}
		id, err := meshca.LoadIdentityDir(d)
		if err != nil {
			t.Fatal(err)
		}
		return id, d
	}
	ms.server, _ = issue("reviews")
	var cdir string
	ms.client, cdir = issue("productpage")
	ms.clientFiles = MeshIdentityDir(cdir)
	return ms
}

func meshCluster(addr, sa string, t *routing.ClientTLS) *routing.Cluster {
	c := httpCluster("outbound|9080|v1|reviews.default.svc.cluster.local", addr)
	c.Host, c.Port, c.Subset = "reviews.default.svc.cluster.local", 9080, "v1"
	c.Endpoints[0].ServiceAccount = sa
	c.Endpoints[0].TLSMode = "istio"
	c.Policy.TLS = t
	return c
}

func TestIstioMutual(t *testing.T) {
	ms := newMesh(t)
	srv := tlsBackend(t, meshca.ServerTLSConfig(ms.server))
	addr := srv.Listener.Addr().String()
	foreign := newMesh(t) // another mesh, another root

	tests := []struct {
		name    string
		opts    *MeshIdentity
		sa      string
		tls     routing.ClientTLS
		wantErr string
	}{
		{name: "service account verified", opts: ms.clientFiles, sa: "reviews", tls: routing.ClientTLS{Mode: routing.TLSIstioMutual}},
		{name: "auto mTLS", opts: ms.clientFiles, sa: "reviews", tls: routing.ClientTLS{Mode: routing.TLSIstioMutual, Auto: true}},
		{name: "unknown service account", opts: ms.clientFiles, sa: "ratings", tls: routing.ClientTLS{Mode: routing.TLSIstioMutual},
			wantErr: "spiffe://cluster.local/ns/default/sa/reviews] is none of spiffe://cluster.local/ns/default/sa/ratings"},
		{name: "another mesh's identity", opts: foreign.clientFiles, sa: "reviews", tls: routing.ClientTLS{Mode: routing.TLSIstioMutual},
			wantErr: "mesh roots"},
		{name: "no identity", opts: nil, sa: "reviews", tls: routing.ClientTLS{Mode: routing.TLSIstioMutual},
			wantErr: "needs a mesh identity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, Options{MeshTLS: tc.opts})
			cfg := meshCluster(addr, tc.sa, &tc.tls)
			c := update(t, m, cfg)[cfg.Name]
			resp, err := roundTripHost(t, c, "reviews:9080")
			if tc.wantErr != "" {
				if flagOf(err) != "UF" || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("RoundTrip = %v, want UF containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := resp.Header.Get("X-SNI"), "outbound_.9080_.v1_.reviews.default.svc.cluster.local"; got != want {
				t.Errorf("SNI = %q, want Istio's %q", got, want)
			}
			if got, want := resp.Header.Get("X-Client"), "spiffe://cluster.local/ns/default/sa/productpage"; got != want {
				t.Errorf("server saw client %q, want %q", got, want)
			}
		})
	}
}

func TestAutoMTLSWithoutIdentityIsPlaintext(t *testing.T) {
	b := newBackend(t, ok, false)
	m := newManager(t, Options{})
	cfg := meshCluster(b.addr(), "reviews", &routing.ClientTLS{Mode: routing.TLSIstioMutual, Auto: true})
	c := update(t, m, cfg)[cfg.Name]
	if _, err := roundTripHost(t, c, "reviews"); err != nil {
		t.Fatalf("auto mTLS without a mesh identity = %v, want plaintext success", err)
	}
}

func TestAutoMTLSOnlyToLabelledEndpoints(t *testing.T) {
	ms := newMesh(t)
	mtls := tlsBackend(t, meshca.ServerTLSConfig(ms.server))
	plain := newBackend(t, ok, false)
	m := newManager(t, Options{MeshTLS: ms.clientFiles})
	cfg := meshCluster(mtls.Listener.Addr().String(), "reviews", &routing.ClientTLS{Mode: routing.TLSIstioMutual, Auto: true})
	cfg.Endpoints = append(cfg.Endpoints, routing.Endpoint{Address: plain.addr(), Weight: 1}) // no tlsMode label
	c := update(t, m, cfg)[cfg.Name]
	for range 4 {
		if _, err := roundTripHost(t, c, "reviews"); err != nil {
			t.Fatalf("RoundTrip = %v: auto mTLS must send TLS only to endpoints labelled tlsMode=istio", err)
		}
	}
	if plain.conns.Load() != 1 {
		t.Errorf("plaintext endpoint saw %d connections, want 1", plain.conns.Load())
	}
}

func TestCredentialNameIsAClearError(t *testing.T) {
	m := newManager(t, Options{})
	c := update(t, m, tlsCluster("127.0.0.1:1", &routing.ClientTLS{Mode: routing.TLSSimple, CredentialName: "my-secret"}))["c"]
	_, err := roundTripHost(t, c, "x")
	if flagOf(err) != "UF" || !strings.Contains(err.Error(), `credentialName "my-secret"`) {
		t.Fatalf("RoundTrip = %v, want UF naming the credentialName", err)
	}
}

func TestTLSSessionResumption(t *testing.T) {
	pki := newTestPKI(t, "test-ca")
	server := pki.issue("server", []string{"svc.example.com"})
	resumed := make(chan bool, 4)
	srv := tlsBackendWith(t, &tls.Config{Certificates: []tls.Certificate{server.tls}}, func(hs *http.Server) {
		hs.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateActive {
				resumed <- c.(*tls.Conn).ConnectionState().DidResume
			}
		}
	})
	m := newManager(t, Options{})
	cfg := tlsCluster(srv.Listener.Addr().String(), &routing.ClientTLS{Mode: routing.TLSSimple, CAFile: pki.caFile})
	cfg.Policy.ConnectionPool.MaxRequestsPerConnection = 1 // a new connection per request
	c := update(t, m, cfg)["c"]
	for i := range 2 {
		if _, err := roundTripHost(t, c, "svc.example.com"); err != nil {
			t.Fatal(err)
		}
		if got, want := <-resumed, i > 0; got != want {
			t.Errorf("connection %d resumed = %v, want %v", i+1, got, want)
		}
	}
}
