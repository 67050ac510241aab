package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Ports on loopback. They are fixed, so a leftover process is found (see
// portFree) instead of silently answering in place of the proxy under test.
const (
	upstreamAddr   = "127.0.0.1:18080" // HTTP/1.1 + h2c, endpoint "v1"
	upstreamAddrV2 = "127.0.0.1:18083" // same server, endpoint "v2" of the 90/10 split
	grpcAddr       = "127.0.0.1:18079" // fortio's gRPC ping server
	nginxAddr      = "127.0.0.1:18081"
	haproxyAddr    = "127.0.0.1:18082"
	// michi instances take mesh port 15001+10*i and admin port 15000+10*i.
	michiBasePort = 15000
)

// Hosts the load generators name. The ServiceEntries below are written
// for the Kubernetes name svc.default.svc.cluster.local, so that "svc"
// reaches them from namespace default as it would from an Istio sidecar.
const (
	hostHTTP = "svc:80"
	hostH2   = "h2svc:80"
	hostGRPC = "grpc:80"
)

// manifest builds a multi-document Istio YAML file.
type manifest struct{ strings.Builder }

func (m *manifest) doc(format string, args ...any) {
	if m.Len() > 0 {
		m.WriteString("---\n")
	}
	fmt.Fprintf(m, format, args...)
}

func (m *manifest) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// Write beside the target under a hidden name (michi's file source
	// ignores dotfiles), then rename: a reload never sees half a file.
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(m.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// serviceEntry declares a MESH_INTERNAL service with STATIC endpoints on
// loopback. endpoints maps a version label to the endpoint's port.
func (m *manifest) serviceEntry(name, protocol string, endpoints ...endpoint) {
	var eps strings.Builder
	for _, e := range endpoints {
		fmt.Fprintf(&eps, "  - address: 127.0.0.1\n    ports: {%s: %s}\n", strings.ToLower(protocol), e.port)
		if e.version != "" {
			fmt.Fprintf(&eps, "    labels: {version: %s}\n", e.version)
		}
	}
	m.doc(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: default}
spec:
  hosts: [%[1]s.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: %[2]s, protocol: %[3]s}
  endpoints:
%[4]s`, name, strings.ToLower(protocol), protocol, eps.String())
}

type endpoint struct {
	port    string // the upstream's port, as text
	version string // the "version" label, or ""
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// simpleVirtualService routes every request for name to itself. A
// non-empty generation is set as a response header: rewriting it is how
// the reload benchmarks change the configuration without changing the
// work a request does.
func (m *manifest) simpleVirtualService(name, generation string) {
	headers := ""
	if generation != "" {
		headers = fmt.Sprintf("\n    headers:\n      response:\n        set: {x-bench-generation: %q}", generation)
	}
	m.doc(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s, namespace: default}
spec:
  hosts: [%[1]s]
  http:
  - route:
    - destination: {host: %[1]s, port: {number: 80}}%[2]s
`, name, headers)
}

// plainConfig is michi as a plain reverse proxy, the configuration
// compared with nginx and haproxy: one HTTP service, plus the h2c and
// gRPC services of the protocol section.
func plainConfig() *manifest {
	var m manifest
	m.serviceEntry("svc", "HTTP", endpoint{port: portOf(upstreamAddr)})
	m.simpleVirtualService("svc", "")
	m.serviceEntry("h2svc", "HTTP2", endpoint{port: portOf(upstreamAddr)})
	m.simpleVirtualService("h2svc", "")
	m.serviceEntry("grpc", "GRPC", endpoint{port: portOf(grpcAddr)})
	m.simpleVirtualService("grpc", "")
	return &m
}

// featureHeader is sent by the load generator in the features section;
// the first rule of featuresConfig matches on it.
const featureHeader = "end-user: bench"

// featuresConfig is the same service with the Istio features a real mesh
// turns on: a header match, a 90/10 subset split, retries and a timeout
// in the VirtualService, and connection pool limits and outlier detection
// in the DestinationRule. The limits are high enough never to trip: the
// benchmark measures what they cost, not what they reject.
func featuresConfig() *manifest {
	var m manifest
	m.serviceEntry("svc", "HTTP",
		endpoint{port: portOf(upstreamAddr), version: "v1"},
		endpoint{port: portOf(upstreamAddrV2), version: "v2"})
	m.doc(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: [svc]
  http:
  - name: canary
    match:
    - headers:
        end-user: {exact: bench}
    route:
    - destination: {host: svc, subset: v1}
      weight: 90
    - destination: {host: svc, subset: v2}
      weight: 10
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: 5xx,connect-failure,refused-stream,reset
    timeout: 10s
  - name: default
    route:
    - destination: {host: svc, subset: v1}
`)
	m.doc(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: default}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10000, connectTimeout: 1s}
      http: {http1MaxPendingRequests: 10000, http2MaxRequests: 10000, maxRetries: 100}
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
`)
	return &m
}

// servicesConfig declares n services (a ServiceEntry and a VirtualService
// each). The one the load targets, "svc", comes last, so that no lookup
// finds it by being first.
func servicesConfig(n int, generation string) *manifest {
	var m manifest
	for i := 1; i < n; i++ {
		name := fmt.Sprintf("svc-%05d", i)
		m.serviceEntry(name, "HTTP", endpoint{port: portOf(upstreamAddr)})
		m.simpleVirtualService(name, "")
	}
	m.serviceEntry("svc", "HTTP", endpoint{port: portOf(upstreamAddr)})
	m.simpleVirtualService("svc", generation)
	return &m
}

// rulesConfig is one service whose VirtualService has n rules, each
// matching its own path prefix /r/NNNN/; rulePath(i) reaches rule i.
func rulesConfig(n int, generation string) *manifest {
	var m manifest
	m.serviceEntry("svc", "HTTP", endpoint{port: portOf(upstreamAddr)})
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: [svc]
  http:
`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `  - name: r%04[1]d
    match:
    - uri: {prefix: /r/%04[1]d/}
    route:
    - destination: {host: svc, port: {number: 80}}
    headers:
      response:
        set: {x-bench-generation: %[2]q}
`, i, generation)
	}
	m.doc("%s", b.String())
	return &m
}

func rulePath(i int) string { return fmt.Sprintf("/r/%04d/x", i) }

// nginxConfig is a plain reverse proxy with one worker, keep-alive to the
// upstream, and no access log, like michi with --access-log off. The
// keep-alive request limits are raised from nginx's default of 1000 so
// that nginx, like Envoy, does not close busy connections mid-run.
func nginxConfig(dir string) string {
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/client_body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000;
  upstream backend {
    server %[2]s;
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, upstreamAddr, nginxAddr)
}

// haproxyConfig is the same plain reverse proxy in haproxy: one thread,
// HTTP mode, server connections pooled and shared between clients
// (http-reuse always), as Envoy's connection pool does.
func haproxyConfig() string {
	return fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend bench
  bind %s
  default_backend upstream
backend upstream
  server up %s
`, haproxyAddr, upstreamAddr)
}

// writeConfigs writes every configuration the benchmark generates into
// dir, for reading and for `michi validate`.
func (b *bench) writeConfigs(dir string) error {
	michi := map[string]*manifest{
		"michi/plain.yaml":          plainConfig(),
		"michi/istio-features.yaml": featuresConfig(),
	}
	for _, sc := range scaleConfigs {
		michi["michi/"+sc.slug+".yaml"] = sc.build("g0")
	}
	for name, m := range michi {
		if err := m.write(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	nginxDir := filepath.Join(b.out, "nginx")
	other := map[string]string{"nginx.conf": nginxConfig(nginxDir), "haproxy.cfg": haproxyConfig()}
	for name, text := range other {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("wrote the configurations to %s\n", dir)
	return nil
}
