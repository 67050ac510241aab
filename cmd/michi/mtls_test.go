package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestIstioMutualTwoProcesses runs the real binary twice: proxy B fronts
// an application with an inbound listener in STRICT mutual TLS, proxy A
// routes to B's inbound address as a meshed endpoint (auto mTLS). The
// identities come from `michi ca`; no outside tool is involved.
func TestIstioMutualTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildMichi(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	mustRun := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("michi %v: %v\n%s", args, err, out)
		}
	}
	mustRun("ca", "init", "--dir", ca)
	mustRun("ca", "issue", "--dir", ca, "--namespace", "default", "--service-account", "productpage", "--out", filepath.Join(dir, "a"))
	mustRun("ca", "issue", "--dir", ca, "--namespace", "default", "--service-account", "reviews", "--out", filepath.Join(dir, "b"))

	appPort := namedBackend(t, "reviews-v1")
	inbound := freeAddr(t)
	_, inPort, _ := net.SplitHostPort(inbound)

	// B: only an inbound listener matters; its outbound config is empty.
	bCfg := filepath.Join(dir, "b.yaml")
	os.WriteFile(bCfg, []byte(""), 0o644)
	b := startMichi(t, bin, "-c", bCfg, "--mesh-ca-dir", filepath.Join(dir, "b"),
		"--inbound-addr", inbound, "--inbound-target", "127.0.0.1:"+appPort)
	b.waitReady(t)

	// A: reviews is a meshed workload behind B's inbound listener.
	aCfg := filepath.Join(dir, "a.yaml")
	os.WriteFile(aCfg, []byte(fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - address: 127.0.0.1
    ports: {http: %s}
    labels: {app: reviews, security.istio.io/tlsMode: istio}
`, inPort)), 0o644)
	a := startMichi(t, bin, "-c", aCfg, "--mesh-ca-dir", filepath.Join(dir, "a"))
	a.waitReady(t)

	if code, body := a.get(t, nil); code != 200 || body != "reviews-v1" {
		t.Fatalf("A -> B (ISTIO_MUTUAL) -> app: %d %q; A stderr:\n%s\nB stderr:\n%s", code, body, a.stderr.String(), b.stderr.String())
	}

	// Without a mesh identity A cannot reach B: auto mTLS falls back to
	// plaintext, which B's STRICT inbound refuses.
	c := startMichi(t, bin, "-c", aCfg)
	c.waitReady(t)
	if code, _ := c.get(t, nil); code == 200 {
		t.Errorf("a proxy without a mesh identity reached the STRICT inbound listener")
	}
}
