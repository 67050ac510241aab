package dataplane

import (
	"net/http"
	"strings"
	"testing"

	"github.com/michi-mesh/michi/internal/compile"
	"github.com/michi-mesh/michi/internal/routing"
)

// services declares the reviews (v1, v2, v3) and ratings workloads on the
// backends' loopback ports, with a DestinationRule defining the subsets.
const services = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: {{.v1}}}, labels: {app: reviews, version: v1}}
  - {address: 127.0.0.1, ports: {http: {{.v2}}}, labels: {app: reviews, version: v2}}
  - {address: 127.0.0.1, ports: {http: {{.v3}}}, labels: {app: reviews, version: v3}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: {{.ratings}}}, labels: {app: ratings, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
`

type bookinfo struct {
	v1, v2, v3, ratings *backend
}

func newBookinfo(t *testing.T) *bookinfo {
	return &bookinfo{v1: newBackend(t, "v1"), v2: newBackend(t, "v2"), v3: newBackend(t, "v3"), ratings: newBackend(t, "ratings")}
}

func (b *bookinfo) all() []*backend { return []*backend{b.v1, b.v2, b.v3, b.ratings} }

func (b *bookinfo) proxy(t *testing.T, vs string, opts ...proxyOption) *proxy {
	t.Helper()
	return newProxy(t, render(t, services+"---\n"+vs, b.all()...), opts...)
}

func TestMatches(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: exact-or-regex
    match:
    - uri: {exact: /exact}
    - uri: {regex: '/items/\d+'}
    route: [{destination: {host: reviews, subset: v3}}]
  - name: caseless
    match:
    - uri: {prefix: /CASE}
      ignoreUriCase: true
    route: [{destination: {host: reviews, subset: v3}}]
  - name: query-and-method
    match:
    - queryParams: {debug: {exact: "1"}}
      method: {exact: POST}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: without
    match:
    - uri: {prefix: /without}
      withoutHeaders: {x-canary: {}}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: authority
    match:
    - authority: {prefix: reviews.default}
      uri: {prefix: /auth}
    route: [{destination: {host: reviews, subset: v3}}]
  - name: present
    match:
    - headers: {x-present: {}}
    route: [{destination: {host: reviews, subset: v3}}]
  - name: api
    match:
    - uri: {prefix: /api}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: default
    route: [{destination: {host: reviews, subset: v1}}]
`)
	tests := []struct {
		name   string
		method string
		target string
		hdr    map[string]string
		want   string
		route  string
	}{
		{"header exact", "GET", "http://reviews:9080/", map[string]string{"end-user": "jason"}, "v2", "jason"},
		{"header value differs", "GET", "http://reviews:9080/", map[string]string{"end-user": "bob"}, "v1", "default"},
		{"exact uri", "GET", "http://reviews:9080/exact", nil, "v3", "exact-or-regex"},
		{"exact uri is not prefix", "GET", "http://reviews:9080/exact/more", nil, "v1", "default"},
		{"regex uri (OR across matches)", "GET", "http://reviews:9080/items/42", nil, "v3", "exact-or-regex"},
		{"regex is a full match", "GET", "http://reviews:9080/items/42x", nil, "v1", "default"},
		{"regex ignores the query", "GET", "http://reviews:9080/items/7?x=1", nil, "v3", "exact-or-regex"},
		{"ignoreUriCase", "GET", "http://reviews:9080/case/x", nil, "v3", "caseless"},
		{"query and method ANDed", "POST", "http://reviews:9080/q?debug=1", nil, "v2", "query-and-method"},
		{"query without method", "GET", "http://reviews:9080/q?debug=1", nil, "v1", "default"},
		{"withoutHeaders absent", "GET", "http://reviews:9080/without", nil, "v2", "without"},
		{"withoutHeaders present", "GET", "http://reviews:9080/without", map[string]string{"x-canary": "1"}, "v1", "default"},
		{"authority prefix", "GET", "http://reviews.default:9080/auth", nil, "v3", "authority"},
		{"authority short name fails prefix", "GET", "http://reviews:9080/auth", nil, "v1", "default"},
		{"presence match", "GET", "http://reviews:9080/", map[string]string{"x-present": ""}, "v3", "present"},
		{"first match wins", "GET", "http://reviews:9080/api", map[string]string{"end-user": "jason"}, "v2", "jason"},
		{"prefix is a plain string prefix", "GET", "http://reviews:9080/apiary", nil, "v2", "api"},
		{"FQDN domain", "GET", "http://reviews.default.svc.cluster.local:9080/api", nil, "v2", "api"},
		{"namespace domain", "GET", "http://reviews.default:9080/api", nil, "v2", "api"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := p.do(tc.method, tc.target, tc.hdr, "")
			if resp.StatusCode != 200 || resp.backendName() != tc.want {
				t.Fatalf("%s %s: status %d from %q, want 200 from %q (body %q)", tc.method, tc.target, resp.StatusCode, resp.backendName(), tc.want, resp.body)
			}
			if line := p.lastLog(i + 1); !strings.HasSuffix(line, " "+tc.route) {
				t.Errorf("access log route name: got line %q, want route %q", line, tc.route)
			}
		})
	}
}

func TestNoRouteAndDefaults(t *testing.T) {
	bi := newBookinfo(t)
	other := newBackend(t, "other")
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /only}}]
    route: [{destination: {host: reviews, subset: v1}}]
`)
	t.Run("virtual service without matching rule is 404 NR", func(t *testing.T) {
		resp := p.get("http://reviews:9080/elsewhere", nil)
		if resp.StatusCode != 404 {
			t.Fatalf("status %d, want 404", resp.StatusCode)
		}
		if line := p.lastLog(1); !strings.Contains(line, " 404 NR route_not_found ") {
			t.Errorf("access log %q lacks 404 NR route_not_found", line)
		}
	})
	t.Run("service without virtual service gets the default route", func(t *testing.T) {
		resp := p.get("http://ratings:9080/r", nil)
		if resp.StatusCode != 200 || resp.backendName() != "ratings" {
			t.Fatalf("status %d from %q, want 200 from ratings", resp.StatusCode, resp.backendName())
		}
	})
	t.Run("unknown host passes through under ALLOW_ANY", func(t *testing.T) {
		resp := p.get("http://"+other.addr()+"/x", nil)
		if resp.StatusCode != 200 || resp.backendName() != "other" {
			t.Fatalf("status %d from %q, want 200 from other", resp.StatusCode, resp.backendName())
		}
	})
	t.Run("unknown host is 502 under REGISTRY_ONLY", func(t *testing.T) {
		p2 := bi.proxy(t, "", withCompile(func(o *compile.Options) { o.OutboundPolicy = routing.RegistryOnly }))
		resp := p2.get("http://"+other.addr()+"/x", nil)
		if resp.StatusCode != 502 {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
		if other.hits.Load() != 1 {
			t.Errorf("blocked request reached the upstream")
		}
	})
}

func TestWeights(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
    - {destination: {host: reviews, subset: v3}, weight: 0}
`)
	const n = 2000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[p.get("http://reviews:9080/", nil).backendName()]++
	}
	// Binomial(2000, 0.1): sd = 13.4; accept ±4 sd (±54).
	if got := counts["v2"]; got < 200-54 || got > 200+54 {
		t.Errorf("v2 got %d of %d, want 200±54 (10%%)", got, n)
	}
	if counts["v1"]+counts["v2"] != n {
		t.Errorf("counts %v: weight-0 destination or errors received traffic", counts)
	}
}

func TestRelativeWeights(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 1}
    - {destination: {host: reviews, subset: v2}, weight: 3}
`)
	const n = 2000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[p.get("http://reviews:9080/", nil).backendName()]++
	}
	// Weights 1:3 need not sum to 100: v2 gets 75%. sd = 19.4; ±4 sd.
	if got := counts["v2"]; got < 1500-78 || got > 1500+78 {
		t.Errorf("v2 got %d of %d, want 1500±78 (75%%)", got, n)
	}
}

func TestHostHeaderPort(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, "")
	// The mesh listener stands in for every port: reviews is only on 9080.
	if resp := p.get("http://reviews:9080/", nil); resp.StatusCode != 200 {
		t.Errorf("reviews:9080 status %d, want 200", resp.StatusCode)
	}
	// On port 80 reviews is unknown: ALLOW_ANY passes through to
	// "reviews:80", which does not resolve, so the passthrough fails.
	resp := p.get("http://reviews/", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("reviews:80 status %d, want 503 (passthrough to an unresolvable host)", resp.StatusCode)
	}
}
