package dataplane

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func TestCORS(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /ignore}}]
    corsPolicy:
      allowOrigins: [{exact: https://example.com}]
      unmatchedPreflights: IGNORE
    route: [{destination: {host: reviews, subset: v1}}]
  - corsPolicy:
      allowOrigins:
      - exact: https://example.com
      - regex: 'https://.*\.trusted\.io'
      allowMethods: [GET, POST]
      allowHeaders: [x-custom, authorization]
      exposeHeaders: [x-backend]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: reviews, subset: v1}}]
`)
	preflight := func(path, origin string) *response {
		return p.do("OPTIONS", "http://reviews:9080"+path, map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "POST",
		}, "")
	}
	t.Run("allowed preflight answered by the proxy", func(t *testing.T) {
		before := bi.v1.hits.Load()
		resp := preflight("/", "https://example.com")
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "https://example.com" ||
			h.Get("Access-Control-Allow-Methods") != "GET,POST" || h.Get("Access-Control-Allow-Headers") != "x-custom,authorization" ||
			h.Get("Access-Control-Max-Age") != "86400" || h.Get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("preflight = %d %v", resp.StatusCode, h)
		}
		if bi.v1.hits.Load() != before {
			t.Error("allowed preflight reached the upstream")
		}
	})
	t.Run("regex origin", func(t *testing.T) {
		resp := preflight("/", "https://api.trusted.io")
		if resp.Header.Get("Access-Control-Allow-Origin") != "https://api.trusted.io" {
			t.Errorf("ACAO = %q", resp.Header.Get("Access-Control-Allow-Origin"))
		}
	})
	t.Run("unmatched preflight forwarded by default", func(t *testing.T) {
		before := bi.v1.hits.Load()
		resp := preflight("/", "https://evil.example")
		if resp.Header.Get("Access-Control-Allow-Origin") != "" || bi.v1.hits.Load() != before+1 {
			t.Errorf("unmatched preflight: ACAO %q, upstream hits %d (want forwarded, no ACAO)", resp.Header.Get("Access-Control-Allow-Origin"), bi.v1.hits.Load()-before)
		}
	})
	t.Run("unmatched preflight ignored", func(t *testing.T) {
		before := bi.v1.hits.Load()
		resp := preflight("/ignore", "https://evil.example")
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" || bi.v1.hits.Load() != before {
			t.Errorf("IGNORE: status %d ACAO %q upstream hits %d", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), bi.v1.hits.Load()-before)
		}
	})
	t.Run("actual request from an allowed origin", func(t *testing.T) {
		resp := p.get("http://reviews:9080/", map[string]string{"Origin": "https://example.com"})
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://example.com" ||
			resp.Header.Get("Access-Control-Expose-Headers") != "x-backend" {
			t.Errorf("actual request: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

func TestMirror(t *testing.T) {
	bi := newBookinfo(t)
	p := bi.proxy(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /all}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
  - match: [{uri: {prefix: /half}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirrors:
    - destination: {host: reviews, subset: v3}
      percentage: {value: 50}
  - match: [{uri: {prefix: /off}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 0}
`)
	waitHits := func(b *backend, want int64) int64 {
		deadline := time.Now().Add(3 * time.Second)
		for b.hits.Load() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		return b.hits.Load()
	}
	resp := p.do("POST", "http://reviews:9080/all", nil, "mirror-me")
	if resp.backendName() != "v1" {
		t.Fatalf("primary answered by %q, want v1", resp.backendName())
	}
	if got := waitHits(bi.v2, 1); got != 1 {
		t.Fatalf("mirror hits = %d, want 1", got)
	}
	bi.v2.mu.Lock()
	body, host := string(bi.v2.lastBody), bi.v2.last.Host
	bi.v2.mu.Unlock()
	if body != "mirror-me" || host != "reviews:9080" {
		t.Errorf("mirror got body %q host %q, want the primary's body and an unchanged host (Istio 1.28+)", body, host)
	}

	t.Run("slow mirror never slows the primary", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		bi.v2.setHandler(func(w http.ResponseWriter, r *http.Request) { <-release })
		start := time.Now()
		for i := 0; i < 5; i++ {
			if resp := p.get("http://reviews:9080/all", nil); resp.StatusCode != 200 {
				t.Fatalf("primary status %d", resp.StatusCode)
			}
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("5 primaries with a stuck mirror took %v", el)
		}
	})
	t.Run("failing mirror never fails the primary", func(t *testing.T) {
		bi.v2.setHandler(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
		if resp := p.get("http://reviews:9080/all", nil); resp.StatusCode != 200 {
			t.Errorf("primary status %d with failing mirror", resp.StatusCode)
		}
	})
	t.Run("mirrorPercentage 0 disables", func(t *testing.T) {
		var off atomic.Int64
		bi.v2.setHandler(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/off" {
				off.Add(1)
			}
		})
		for i := 0; i < 20; i++ {
			p.get("http://reviews:9080/off", nil)
		}
		time.Sleep(100 * time.Millisecond)
		if got := off.Load(); got != 0 {
			t.Errorf("mirror received %d requests at 0%%", got)
		}
	})
	t.Run("percentage", func(t *testing.T) {
		const n = 400
		for i := 0; i < n; i++ {
			p.get("http://reviews:9080/half", nil)
		}
		got := waitHits(bi.v3, n/2-40)
		time.Sleep(100 * time.Millisecond)
		got = bi.v3.hits.Load()
		// Binomial(400, 0.5): sd = 10; accept ±4 sd.
		if got < n/2-40 || got > n/2+40 {
			t.Errorf("50%% mirror got %d of %d", got, n)
		}
	})
}
