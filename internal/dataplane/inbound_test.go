package dataplane

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/michi-mesh/michi/internal/meshca"
	"github.com/michi-mesh/michi/internal/upstream"
)

// TestIstioMutualBetweenProxies runs two michi dataplanes: a client-side
// sidecar whose endpoint is labelled as meshed (auto mTLS), and a
// server-side inbound listener that accepts only mutual TLS from the mesh
// and forwards to the application.
func TestIstioMutualBetweenProxies(t *testing.T) {
	dir := t.TempDir()
	ca, err := meshca.Init(filepath.Join(dir, "ca"), meshca.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ns, sa string) string {
		w, err := ca.IssueWorkload(meshca.WorkloadOptions{Namespace: ns, ServiceAccount: sa})
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(dir, ns+"-"+sa)
		if err := w.WriteFiles(d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	clientDir, serverDir := issue("default", "productpage"), issue("default", "reviews")

	// The application behind the server-side proxy.
	app := newBackend(t, "reviews-app")

	// The server-side inbound listener, STRICT mutual TLS.
	table, err := InboundTable(app.addr())
	if err != nil {
		t.Fatal(err)
	}
	inMgr := upstream.NewManager(upstream.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer inMgr.Close()
	in := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	in.Publish(table, inMgr.Update(table.Clusters))
	serverID, err := meshca.LoadIdentityDir(serverDir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go in.ServeTLS(ln, meshca.ServerTLSConfig(serverID))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		in.Shutdown(ctx)
	}()
	_, inPort, _ := net.SplitHostPort(ln.Addr().String())

	// The client-side proxy: reviews' endpoint is the peer's inbound
	// listener, labelled as a meshed workload, so auto mTLS applies.
	p := newProxyWith(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - address: 127.0.0.1
    ports: {http: `+inPort+`}
    labels: {app: reviews, security.istio.io/tlsMode: istio}
`, upstream.Options{MeshTLS: &upstream.MeshIdentity{
		CertFile:  filepath.Join(clientDir, meshca.CertFile),
		KeyFile:   filepath.Join(clientDir, meshca.KeyFile),
		RootsFile: filepath.Join(clientDir, meshca.RootCertFile),
	}})

	resp := p.get("http://reviews:9080/hello", nil)
	if resp.StatusCode != 200 || resp.backendName() != "reviews-app" || resp.echo.Path != "/hello" {
		t.Fatalf("through both proxies: %d from %q (%q)", resp.StatusCode, resp.backendName(), resp.body)
	}
	if got := resp.echo.Host; got != "reviews:9080" {
		t.Errorf("the application saw Host %q, want the original reviews:9080", got)
	}

	// A client without a mesh certificate cannot reach the inbound side.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	if r, err := plain.Get("https://" + ln.Addr().String() + "/"); err == nil {
		r.Body.Close()
		t.Errorf("a client without a certificate got %d, want the handshake refused", r.StatusCode)
	}
	// Nor can a plaintext client.
	if r, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode == 200 && strings.Contains(string(body), "reviews-app") {
			t.Error("a plaintext client reached the application")
		}
	}
}
