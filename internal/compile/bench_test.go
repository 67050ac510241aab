package compile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// benchConfig returns n ServiceEntries, each with a VirtualService that
// splits by header and by weight, the shape of a large mesh.
func benchConfig(n int) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-%[1]d, namespace: bench}
spec:
  hosts: [svc-%[1]d.bench.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.%[2]d.%[3]d.1, labels: {version: v1}}, {address: 10.%[2]d.%[3]d.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-%[1]d, namespace: bench}
spec:
  hosts: [svc-%[1]d]
  http:
  - name: canary
    match:
    - headers: {x-canary: {exact: "true"}}
      uri: {prefix: /api}
    route:
    - destination: {host: svc-%[1]d}
    timeout: 2s
  - name: default
    route:
    - destination: {host: svc-%[1]d}
      weight: 90
    - destination: {host: svc-%[1]d}
      weight: 10
---
`, i, i/250, i%250)
	}
	return []byte(b.String())
}

func BenchmarkCompile10kServices(b *testing.B) {
	const n = 10_000
	set, diags := config.LoadBytes("bench.yaml", benchConfig(n), config.LoadOptions{})
	if diags.HasErrors() {
		b.Fatalf("load: %v", diags.Errors()[0])
	}
	reg := registry.Build(set, "")
	opts := Options{Proxy: routing.Proxy{Role: routing.RoleMesh, Namespace: "bench"}}

	// Check once that the benchmark measures a full compilation.
	table, _ := Compile(set, reg, opts)
	if got := len(table.HTTP[8080].VirtualHosts); got != n {
		b.Fatalf("port 8080 has %d virtual hosts, want %d", got, n)
	}

	b.ReportAllocs()
	for b.Loop() {
		Compile(set, reg, opts)
	}
}
