package explain

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/michi-mesh/michi/internal/dataplane"
	"github.com/michi-mesh/michi/internal/upstream"
)

// TestExplainMatchesDataplane sends real requests through the dataplane,
// serving the table explain reads, to real backends on loopback, and
// checks that each one lands where the explanation says: the endpoint,
// the path the upstream receives, the redirect Location, the status.
func TestExplainMatchesDataplane(t *testing.T) {
	backends := map[string]*httptest.Server{}
	byAddr := map[string]string{}
	for _, name := range []string{"v1", "v2", "outside"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			fmt.Fprintf(w, "%s %s", r.Host, r.URL.RequestURI())
		}))
		t.Cleanup(srv.Close)
		backends[name] = srv
		byAddr[srv.Listener.Addr().String()] = name
	}
	port := func(name string) string {
		_, p, _ := net.SplitHostPort(backends[name].Listener.Addr().String())
		return p
	}
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: %s}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: %s}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - name: canary
    match: [{headers: {x-canary: {exact: "yes"}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: moved
    match: [{uri: {exact: /moved}}]
    redirect: {authority: other.example, uri: /there, redirectCode: 307}
  - name: teapot
    match: [{uri: {prefix: /status}}]
    directResponse: {status: 418, body: {string: teapot}}
  - name: api
    match: [{uri: {prefix: /api}}]
    rewrite: {uri: /internal, authority: api.internal}
    route: [{destination: {host: echo, subset: v1}}]
  - name: rest
    route: [{destination: {host: echo, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: partial, namespace: default}
spec:
  hosts: [partial.example]
  http:
  - match: [{uri: {prefix: /only}}]
    route: [{destination: {host: echo, subset: v2}}]
`, port("v1"), port("v2")))

	table := load(t, Config{Paths: []string{cfg}, Namespace: "default"})
	mgr := upstream.NewManager(upstream.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(mgr.Close)
	dp := dataplane.New(dataplane.Options{Logger: slog.New(slog.DiscardHandler), Passthrough: mgr.Passthrough()})
	dp.Publish(table, mgr.Update(table.Clusters))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go dp.Serve(ln)
	t.Cleanup(func() { dp.Shutdown(t.Context()) })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		name    string
		host    string // Host header
		target  string // path and query
		headers []string
	}{
		{name: "header match", host: "echo", target: "/a", headers: []string{"x-canary: yes"}},
		{name: "header value differs", host: "echo", target: "/a", headers: []string{"x-canary: no"}},
		{name: "redirect", host: "echo", target: "/moved?q=1"},
		{name: "direct response", host: "echo", target: "/status/x"},
		{name: "prefix rewrite and authority", host: "echo:80", target: "/api/items?id=3"},
		{name: "dot segments", host: "echo", target: "/x/../api/y"},
		{name: "wildcard-free host without route", host: "partial.example", target: "/other"},
		{name: "host-only virtual host", host: "partial.example", target: "/only/1"},
		{name: "unknown host passes through", host: "127.0.0.1:" + port("outside"), target: "/out"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := NewRequest("GET", "http://"+tc.host+tc.target, tc.headers, "")
			if err != nil {
				t.Fatal(err)
			}
			res, err := Explain(table, req)
			if err != nil {
				t.Fatal(err)
			}

			hr, err := http.NewRequest("GET", "http://"+ln.Addr().String()+tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			hr.Host = tc.host
			for _, h := range tc.headers {
				k, v, _ := strings.Cut(h, ":")
				hr.Header.Add(k, strings.TrimSpace(v))
			}
			resp, err := client.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()

			switch res.Action {
			case ActionRoute:
				d := res.Destinations[0]
				addr := d.OriginalDestination
				if len(d.Endpoints) > 0 {
					addr = d.Endpoints[0].Address
				}
				wantBackend, wantBody := byAddr[addr], d.UpstreamAuthority+" "+d.UpstreamPath
				if q := res.Request.Query; q != "" {
					wantBody += "?" + q
				}
				if got := resp.Header.Get("X-Backend"); got != wantBackend || string(body) != wantBody {
					t.Errorf("dataplane reached %q with %q; explain says %s (%s) with %q", got, body, addr, wantBackend, wantBody)
				}
			case ActionRedirect:
				if resp.StatusCode != res.Redirect.Code || resp.Header.Get("Location") != res.Redirect.Location {
					t.Errorf("dataplane answered %d Location %q; explain says %d %q",
						resp.StatusCode, resp.Header.Get("Location"), res.Redirect.Code, res.Redirect.Location)
				}
			default:
				if resp.StatusCode != res.Status {
					t.Errorf("dataplane answered %d; explain says %s with %d", resp.StatusCode, res.Action, res.Status)
				}
				if res.DirectResponse != nil && string(body) != res.DirectResponse.Body {
					t.Errorf("dataplane body %q; explain says %q", body, res.DirectResponse.Body)
				}
			}
		})
	}
}
