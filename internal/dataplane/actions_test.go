package dataplane

import (
	"strings"
	"testing"
)

func TestRedirect(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - match: [{uri: {prefix: /pre}}]
    redirect: {prefixRewrite: /post, redirectCode: 302}
  - match: [{uri: {exact: /auth}}]
    redirect: {authority: ratings.example.com, uri: /a}
  - match: [{uri: {exact: /https}}]
    redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT, redirectCode: 308}
  - match: [{uri: {exact: /port}}]
    redirect: {port: 8443, scheme: https}
  - match: [{uri: {exact: /reqport}}]
    redirect: {derivePort: FROM_REQUEST_PORT, uri: /p, redirectCode: 307}
  - match: [{uri: {exact: /q}}]
    redirect: {uri: "/target?x=y", redirectCode: 303}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  http:
  - redirect: {scheme: https}
`)
	tests := []struct {
		name, target string
		code         int
		location     string
	}{
		{"uri replaces the whole path", "http://reviews:9080/old/deep?k=v", 301, "http://reviews:9080/new?k=v"},
		{"prefixRewrite swaps the matched prefix", "http://reviews:9080/pre/x", 302, "http://reviews:9080/post/x"},
		{"authority replaces host and port", "http://reviews:9080/auth", 301, "http://ratings.example.com/a"},
		{"scheme change keeps a non-default port, as Envoy", "http://reviews:9080/https", 308, "https://reviews:9080/https"},
		{"scheme change drops the old default port", "http://web.example.com:80/x", 301, "https://web.example.com/x"},
		{"explicit port", "http://reviews:9080/port", 301, "https://reviews:8443/port"},
		{"port from the request port", "http://reviews:9080/reqport", 307, "http://reviews:9080/p"},
		{"uri with a query replaces the query", "http://reviews:9080/q?old=1", 303, "http://reviews:9080/target?x=y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := p.get(tc.target, nil)
			if resp.StatusCode != tc.code || resp.Header.Get("Location") != tc.location {
				t.Errorf("GET %s = %d Location %q, want %d %q", tc.target, resp.StatusCode, resp.Header.Get("Location"), tc.code, tc.location)
			}
		})
	}
	if n := bi.v1.hits.Load(); n != 0 {
		t.Errorf("redirects reached the upstream %d times", n)
	}
}

func TestDirectResponse(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /string}}]
    directResponse: {status: 503, body: {string: "unavailable for maintenance"}}
    headers:
      response:
        set: {content-type: text/html, x-maintenance: "yes"}
  - match: [{uri: {exact: /bytes}}]
    directResponse: {status: 200, body: {bytes: aGVsbG8gYnl0ZXM=}}
  - match: [{uri: {exact: /empty}}]
    directResponse: {status: 204}
`)
	resp := p.get("http://reviews:9080/string", nil)
	if resp.StatusCode != 503 || string(resp.body) != "unavailable for maintenance" ||
		resp.Header.Get("Content-Type") != "text/html" || resp.Header.Get("X-Maintenance") != "yes" {
		t.Errorf("/string = %d %q %v", resp.StatusCode, resp.body, resp.Header)
	}
	resp = p.get("http://reviews:9080/bytes", nil)
	if resp.StatusCode != 200 || string(resp.body) != "hello bytes" {
		t.Errorf("/bytes = %d %q, want 200 \"hello bytes\"", resp.StatusCode, resp.body)
	}
	resp = p.get("http://reviews:9080/empty", nil)
	if resp.StatusCode != 204 || len(resp.body) != 0 {
		t.Errorf("/empty = %d %q, want 204 with no body", resp.StatusCode, resp.body)
	}
}

func TestRewrite(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /v1/api}}]
    rewrite: {uri: /api}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /common}}]
    rewrite: {uri: /}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /exact}}]
    rewrite: {uri: /replaced, authority: backend.internal}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /service/}}]
    rewrite:
      uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /hosthdr}}]
    headers:
      request:
        set: {host: via-headers.internal}
    route: [{destination: {host: reviews, subset: v1}}]
`)
	tests := []struct {
		name, target, path, host string
	}{
		{"prefix swap keeps the rest and the query", "http://reviews:9080/v1/api/items?a=1", "/api/items?a=1", "reviews:9080"},
		{"prefix / gives a double slash, as Envoy", "http://reviews:9080/common/api", "//api", "reviews:9080"},
		{"exact match replaces the whole path; authority", "http://reviews:9080/exact", "/replaced", "backend.internal"},
		{"regex rewrite with groups", "http://reviews:9080/service/foo/v1/x", "/v1/x/instance/foo", "reviews:9080"},
		{"host set in headers is a host rewrite", "http://reviews:9080/hosthdr", "/hosthdr", "via-headers.internal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := p.get(tc.target, nil)
			if resp.echo == nil {
				t.Fatalf("no echo: %d %q", resp.StatusCode, resp.body)
			}
			if resp.echo.Path != tc.path || resp.echo.Host != tc.host {
				t.Errorf("upstream saw path %q host %q, want %q %q", resp.echo.Path, resp.echo.Host, tc.path, tc.host)
			}
		})
	}
	resp := p.get("http://reviews:9080/v1/api/x", nil)
	if got := resp.echo.Header.Get("X-Envoy-Original-Path"); got != "/v1/api/x" {
		t.Errorf("x-envoy-original-path = %q, want /v1/api/x", got)
	}
}

func TestHeaderOperations(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - headers:
      request:
        set: {x-route-set: route}
        add: {x-added: route}
        remove: [x-secret]
      response:
        set: {x-resp-route: route}
        add: {x-resp-added: route}
        remove: [x-backend]
    route:
    - destination: {host: reviews, subset: v1}
      headers:
        request:
          set: {x-dest-set: dest, x-route-set: dest}
        response:
          set: {x-resp-dest: dest}
`)
	resp := p.get("http://reviews:9080/", map[string]string{"x-secret": "s", "x-added": "client"})
	if resp.echo == nil {
		t.Fatalf("no echo: %d %q", resp.StatusCode, resp.body)
	}
	h := resp.echo.Header
	checks := []struct{ name, got, want string }{
		{"request set", h.Get("X-Route-Set"), "route"},
		{"destination set", h.Get("X-Dest-Set"), "dest"},
		{"add appends", strings.Join(h.Values("X-Added"), ","), "client,route"},
		{"remove", h.Get("X-Secret"), ""},
		{"response set", resp.Header.Get("X-Resp-Route"), "route"},
		{"response add", resp.Header.Get("X-Resp-Added"), "route"},
		{"response destination set", resp.Header.Get("X-Resp-Dest"), "dest"},
		{"response remove", resp.Header.Get("X-Backend"), ""},
		{"attempt count", h.Get("X-Envoy-Attempt-Count"), "1"},
		{"x-forwarded-proto", h.Get("X-Forwarded-Proto"), "http"},
		{"x-forwarded-for", h.Get("X-Forwarded-For"), "127.0.0.1"},
		{"server", resp.Header.Get("Server"), "envoy"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if len(h.Get("X-Request-Id")) != 36 {
		t.Errorf("x-request-id %q is not a generated UUID", h.Get("X-Request-Id"))
	}
	if resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
		t.Error("x-envoy-upstream-service-time missing")
	}
}
