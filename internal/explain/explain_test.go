package explain

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/engine"
	"github.com/michi-mesh/michi/internal/routing"
)

const fixture = "testdata/bookinfo.yaml"

// productpage is the sidecar most cases explain for.
var productpage = Config{Paths: []string{fixture}, Namespace: "default", Labels: map[string]string{"app": "productpage"}}

func load(t *testing.T, c Config) *routing.Table {
	t.Helper()
	table, _, err := Load(c)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return table
}

func explainOne(t *testing.T, c Config, method, url string, headers ...string) *Result {
	t.Helper()
	req, err := NewRequest(method, url, headers, "")
	if err != nil {
		t.Fatalf("NewRequest(%s %s): %v", method, url, err)
	}
	res, err := Explain(load(t, c), req)
	if err != nil {
		t.Fatalf("Explain(%s %s): %v", method, url, err)
	}
	return res
}

// outcome is the part of a Result the table test compares.
type outcome struct {
	VirtualHost    string
	MatchedDomain  string
	VirtualService string
	Rule           string // "spec.http[i].match[j]"
	RuleName       string
	Delegate       string
	Action         string
	Status         int
	Tried          []string // "rule: matched" or "rule: reason"
	Destinations   []dest
	Location       string
	Timeout        string
	Retries        string
	Fault          string
	Mirrors        []string
}

type dest struct {
	Cluster      string
	Percent      float64
	Endpoints    []string
	Problem      string
	UpstreamPath string
	Hash         string
}

func project(r *Result) outcome {
	o := outcome{
		VirtualHost:    r.VirtualHost,
		MatchedDomain:  r.MatchedDomain,
		VirtualService: r.VirtualService,
		Rule:           ruleField(r.RuleIndex, r.MatchIndex, true),
		RuleName:       r.RuleName,
		Delegate:       r.Delegate,
		Action:         r.Action,
		Status:         r.Status,
		Timeout:        r.Timeout,
	}
	if r.RuleIndex < 0 {
		o.Rule = ""
	}
	for _, t := range r.Rules {
		s := ruleField(t.RuleIndex, t.MatchIndex, true) + ": "
		if t.Matched {
			s += "matched"
		} else {
			s += t.Reason
		}
		o.Tried = append(o.Tried, s)
	}
	for _, d := range r.Destinations {
		pd := dest{Cluster: d.Cluster, Percent: d.Percent, Problem: d.Problem, UpstreamPath: d.UpstreamPath}
		for _, ep := range d.Endpoints {
			pd.Endpoints = append(pd.Endpoints, ep.Address)
		}
		if d.OriginalDestination != "" {
			pd.Endpoints = append(pd.Endpoints, "original "+d.OriginalDestination)
		}
		if h := d.Hash; h != nil {
			pd.Hash = h.Source + "=" + h.Value
			if !h.Present {
				pd.Hash = h.Source + ": " + h.Effect
			}
		}
		o.Destinations = append(o.Destinations, pd)
	}
	if r.Redirect != nil {
		o.Location = r.Redirect.Location
	}
	if rt := r.Retries; rt != nil {
		o.Retries = fmt.Sprintf("%d on %s", rt.Attempts, strings.Join(rt.RetryOn, ","))
		if rt.PerTryTimeout != "none" {
			o.Retries += " per try " + rt.PerTryTimeout
		}
		if rt.IstioDefault {
			o.Retries += " (Istio default)"
		}
	}
	if f := r.Fault; f != nil {
		if f.Delay != nil {
			o.Fault += fmt.Sprintf("delay %s %g%%", f.Delay.Duration, f.Delay.Percent)
		}
		if f.Abort != nil {
			o.Fault += fmt.Sprintf(" abort %d %g%%", f.Abort.HTTPStatus, f.Abort.Percent)
		}
	}
	for _, m := range r.Mirrors {
		o.Mirrors = append(o.Mirrors, fmt.Sprintf("%s %g%%", m.Cluster, m.Percent))
	}
	return o
}

const (
	reviewsV1          = "outbound|9080|v1|reviews.default.svc.cluster.local"
	reviewsV2          = "outbound|9080|v2|reviews.default.svc.cluster.local"
	reviewsV3          = "outbound|9080|v3|reviews.default.svc.cluster.local"
	ratingsV1          = "outbound|9080|v1|ratings.default.svc.cluster.local"
	productpageCluster = "outbound|9080||productpage.default.svc.cluster.local"
	details            = "outbound|9080||details.default.svc.cluster.local"

	defaultRetries = "2 on connect-failure,refused-stream,retriable-status-codes,cancelled,unavailable (Istio default)"
	jasonAbsent    = "spec.http[0].match[0]: header end-user is absent"
)

func TestExplainMesh(t *testing.T) {
	reviewsVH := "reviews.default.svc.cluster.local:9080"
	productpageVH := "productpage.default.svc.cluster.local:9080"
	tests := []struct {
		name    string
		config  Config
		method  string
		url     string
		headers []string
		want    outcome
	}{
		{
			name: "header match to a subset with a consistent hash",
			url:  "http://reviews:9080/reviews/1", headers: []string{"end-user: jason", "x-user: u1"},
			want: outcome{
				VirtualHost: reviewsVH, MatchedDomain: "reviews", VirtualService: "default/reviews",
				Rule: "spec.http[0].match[0]", RuleName: "jason.user", Action: ActionRoute,
				Tried:        []string{"spec.http[0].match[0]: matched"},
				Destinations: []dest{{Cluster: reviewsV2, Percent: 100, Endpoints: []string{"10.1.0.2:9080"}, UpstreamPath: "/reviews/1", Hash: "header x-user=u1"}},
				Timeout:      "none", Retries: defaultRetries,
			},
		},
		{
			name: "hash key absent",
			url:  "http://reviews:9080/", headers: []string{"end-user: jason"},
			want: outcome{
				VirtualHost: reviewsVH, MatchedDomain: "reviews", VirtualService: "default/reviews",
				Rule: "spec.http[0].match[0]", RuleName: "jason.user", Action: ActionRoute,
				Tried: []string{"spec.http[0].match[0]: matched"},
				Destinations: []dest{{Cluster: reviewsV2, Percent: 100, Endpoints: []string{"10.1.0.2:9080"}, UpstreamPath: "/",
					Hash: "header x-user: the request has no value to hash: Envoy picks an endpoint at random"}},
				Timeout: "none", Retries: defaultRetries,
			},
		},
		{
			name: "uri prefix without an excluded header",
			url:  "http://reviews.default.svc.cluster.local:9080/beta/x",
			want: outcome{
				VirtualHost: reviewsVH, MatchedDomain: "reviews.default.svc.cluster.local", VirtualService: "default/reviews",
				Rule: "spec.http[2].match[0]", RuleName: "beta", Action: ActionRoute,
				Tried:        []string{jasonAbsent, "spec.http[2].match[0]: matched"},
				Destinations: []dest{{Cluster: reviewsV3, Percent: 100, Endpoints: []string{"10.1.0.3:9080"}, UpstreamPath: "/beta/x"}},
				Timeout:      "none", Retries: defaultRetries,
			},
		},
		{
			name: "weighted split after withoutHeaders fails",
			url:  "http://reviews:9080/beta/1", headers: []string{"x-legacy: 1"},
			want: outcome{
				VirtualHost: reviewsVH, MatchedDomain: "reviews", VirtualService: "default/reviews",
				Rule: "spec.http[3]", RuleName: "split", Action: ActionRoute,
				Tried: []string{
					jasonAbsent,
					"spec.http[2].match[0]: withoutHeaders: header x-legacy is present",
					"spec.http[3]: matched",
				},
				Destinations: []dest{
					{Cluster: reviewsV1, Percent: 90, Endpoints: []string{"10.1.0.1:9080"}, UpstreamPath: "/beta/1"},
					{Cluster: reviewsV3, Percent: 10, Endpoints: []string{"10.1.0.3:9080"}, UpstreamPath: "/beta/1"},
				},
				Timeout: "10s", Retries: "3 on 5xx,reset per try 2s",
				Mirrors: []string{reviewsV2 + " 25%"},
			},
		},
		{
			name:   "sourceLabels rule compiled for a reviews proxy",
			config: Config{Paths: []string{fixture}, Namespace: "default", Labels: map[string]string{"app": "reviews"}},
			url:    "http://reviews:9080/internal/x",
			want: outcome{
				VirtualHost: reviewsVH, MatchedDomain: "reviews", VirtualService: "default/reviews",
				Rule: "spec.http[1].match[0]", RuleName: "from-reviews", Action: ActionRoute,
				Tried:        []string{jasonAbsent, "spec.http[1].match[0]: matched"},
				Destinations: []dest{{Cluster: reviewsV3, Percent: 100, Endpoints: []string{"10.1.0.3:9080"}, UpstreamPath: "/internal/x"}},
				Timeout:      "none", Retries: defaultRetries,
			},
		},
		{
			name: "fault",
			url:  "http://ratings:9080/ratings/0", headers: []string{"End-User: jason"},
			want: outcome{
				VirtualHost: "ratings.default.svc.cluster.local:9080", MatchedDomain: "ratings", VirtualService: "default/ratings",
				Rule: "spec.http[0].match[0]", RuleName: "fault-test", Action: ActionRoute,
				Tried:        []string{"spec.http[0].match[0]: matched"},
				Destinations: []dest{{Cluster: ratingsV1, Percent: 100, Endpoints: []string{"10.2.0.1:9080"}, UpstreamPath: "/ratings/0"}},
				Timeout:      "none", Retries: defaultRetries, Fault: "delay 7s 100% abort 500 10%",
			},
		},
		{
			name: "redirect keeps the query and the request port",
			url:  "http://productpage:9080/old?x=1",
			want: outcome{
				VirtualHost: productpageVH, MatchedDomain: "productpage", VirtualService: "default/productpage",
				Rule: "spec.http[0].match[0]", RuleName: "legacy", Action: ActionRedirect, Status: 302,
				Tried:    []string{"spec.http[0].match[0]: matched"},
				Location: "http://productpage:9080/productpage?x=1", Timeout: "none",
			},
		},
		{
			name: "direct response",
			url:  "http://productpage:9080/healthz",
			want: outcome{
				VirtualHost: productpageVH, MatchedDomain: "productpage", VirtualService: "default/productpage",
				Rule: "spec.http[1].match[0]", RuleName: "health", Action: ActionDirectResponse, Status: 200,
				Tried: []string{
					`spec.http[0].match[0]: uri exact "/old" does not match path "/healthz"`,
					"spec.http[1].match[0]: matched",
				},
				Timeout: "none",
			},
		},
		{
			name: "delegate with rewrite",
			url:  "http://productpage:9080/api/v1/products/7",
			want: outcome{
				VirtualHost: productpageVH, MatchedDomain: "productpage", VirtualService: "default/productpage",
				Rule: "spec.http[2].match[0]", RuleName: "api-products", Delegate: "default/productpage-api", Action: ActionRoute,
				Tried: []string{
					`spec.http[0].match[0]: uri exact "/old" does not match path "/api/v1/products/7"`,
					`spec.http[1].match[0]: uri exact "/healthz" does not match path "/api/v1/products/7"`,
					"spec.http[2].match[0]: matched",
				},
				Destinations: []dest{{Cluster: details, Percent: 100, Endpoints: []string{"10.3.0.1:9080"}, UpstreamPath: "/products/7"}},
				Timeout:      "none", Retries: defaultRetries,
			},
		},
		{
			name: "delegate's catch-all within the root's prefix",
			url:  "http://productpage:9080/api/v1/users",
			want: outcome{
				VirtualHost: productpageVH, MatchedDomain: "productpage", VirtualService: "default/productpage",
				Rule: "spec.http[2].match[0]", RuleName: "api-rest", Delegate: "default/productpage-api", Action: ActionRoute,
				Tried: []string{
					`spec.http[0].match[0]: uri exact "/old" does not match path "/api/v1/users"`,
					`spec.http[1].match[0]: uri exact "/healthz" does not match path "/api/v1/users"`,
					`spec.http[2].match[0]: uri prefix "/api/v1/products" does not match path "/api/v1/users"`,
					"spec.http[2].match[0]: matched",
				},
				Destinations: []dest{{Cluster: productpageCluster, Percent: 100, Endpoints: []string{"10.0.0.1:9080"}, UpstreamPath: "/api/v1/users"}},
				Timeout:      "none", Retries: defaultRetries,
			},
		},
		{
			name: "default route of a service without VirtualService",
			url:  "http://details.default:9080/details/1",
			want: outcome{
				VirtualHost: "details.default.svc.cluster.local:9080", MatchedDomain: "details.default", RuleName: "default", Action: ActionRoute,
				Tried:        []string{"default route: matched"},
				Destinations: []dest{{Cluster: details, Percent: 100, Endpoints: []string{"10.3.0.1:9080"}, UpstreamPath: "/details/1"}},
				Timeout:      "none", Retries: defaultRetries,
			},
		},
		{
			name: "Host header overrides the URL",
			url:  "http://10.9.9.9:9080/healthz", headers: []string{"Host: productpage"},
			want: outcome{
				// Without a port in Host the mesh listener assumes 80, where
				// productpage has no route: the request passes through.
				Action: ActionRoute, RuleName: "allow_any",
				Destinations: []dest{{Cluster: routing.PassthroughCluster, Percent: 100, Endpoints: []string{"original productpage:80"}, UpstreamPath: "/healthz"}},
				Timeout:      "none", Retries: defaultRetries,
			},
		},
		{
			name: "unknown host under ALLOW_ANY",
			url:  "http://nowhere.example.com/a",
			want: outcome{
				Action: ActionRoute, RuleName: "allow_any",
				Destinations: []dest{{Cluster: routing.PassthroughCluster, Percent: 100, Endpoints: []string{"original nowhere.example.com:80"}, UpstreamPath: "/a"}},
				Timeout:      "none", Retries: defaultRetries,
			},
		},
		{
			name:   "unknown host under REGISTRY_ONLY",
			config: Config{Paths: []string{fixture}, Namespace: "default", OutboundPolicy: routing.RegistryOnly},
			url:    "http://nowhere.example.com:8080/a",
			want:   outcome{Action: ActionDirectResponse, Status: 502, Timeout: "none"},
		},
		{
			name: "destination host in no ServiceEntry",
			url:  "http://legacy.example.com/v1/x",
			want: outcome{
				VirtualHost: "legacy.example.com:80", MatchedDomain: "legacy.example.com", VirtualService: "default/legacy",
				Rule: "spec.http[0].match[0]", RuleName: "v1", Action: ActionRoute,
				Tried: []string{"spec.http[0].match[0]: matched"},
				Destinations: []dest{{Cluster: "outbound|80||legacy-backend.example.com", Percent: 100, UpstreamPath: "/v1/x",
					Problem: "503 NC: cluster outbound|80||legacy-backend.example.com not found (no service legacy-backend.example.com with port 80 visible to namespace default?)"}},
				Timeout: "none", Retries: defaultRetries,
			},
		},
		{
			name:   "subset of a DestinationRule the proxy's namespace cannot see",
			config: Config{Paths: []string{fixture}, Namespace: "frontend"},
			url:    "http://ratings.default:9080/",
			want: outcome{
				VirtualHost: "ratings.default.svc.cluster.local:9080", MatchedDomain: "ratings.default", VirtualService: "default/ratings",
				Rule: "spec.http[1]", RuleName: "main", Action: ActionRoute,
				Tried: []string{jasonAbsent, "spec.http[1]: matched"},
				Destinations: []dest{{Cluster: ratingsV1, Percent: 100, UpstreamPath: "/",
					Problem: `503 NC: cluster ` + ratingsV1 + ` not found (subset "v1" not defined by any DestinationRule visible to namespace frontend?)`}},
				Timeout: "none", Retries: defaultRetries,
			},
		},
		{
			name: "no rule matches",
			url:  "http://legacy.example.com/other",
			want: outcome{
				VirtualHost: "legacy.example.com:80", MatchedDomain: "legacy.example.com",
				Action: ActionNotFound, Status: 404,
				Tried:   []string{`spec.http[0].match[0]: uri prefix "/v1" does not match path "/other"`},
				Timeout: "none",
			},
		},
		{
			name: "dot segments are removed before matching",
			url:  "http://productpage:9080/static/../healthz",
			want: outcome{
				VirtualHost: productpageVH, MatchedDomain: "productpage", VirtualService: "default/productpage",
				Rule: "spec.http[1].match[0]", RuleName: "health", Action: ActionDirectResponse, Status: 200,
				Tried: []string{
					`spec.http[0].match[0]: uri exact "/old" does not match path "/healthz"`,
					"spec.http[1].match[0]: matched",
				},
				Timeout: "none",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.config
			if c.Paths == nil {
				c = productpage
			}
			method := tc.method
			if method == "" {
				method = "GET"
			}
			got := project(explainOne(t, c, method, tc.url, tc.headers...))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("explain %s %s (-want +got):\n%s", method, tc.url, diff)
			}
		})
	}
}

func TestExplainGateway(t *testing.T) {
	gw := Config{Paths: []string{fixture}, Namespace: "default", Gateways: []string{"default/bookinfo-gateway"}}
	tests := []struct {
		name       string
		url        string
		want       outcome
		wantReason string
	}{
		{
			name: "second match of a rule",
			url:  "http://bookinfo.example.com:8080/static/app.js",
			want: outcome{
				VirtualHost: "bookinfo.example.com:8080", MatchedDomain: "bookinfo.example.com", VirtualService: "default/bookinfo",
				Rule: "spec.http[0].match[1]", RuleName: "productpage", Action: ActionRoute,
				Tried: []string{
					`spec.http[0].match[0]: uri exact "/productpage" does not match path "/static/app.js"`,
					"spec.http[0].match[1]: matched",
				},
				Destinations: []dest{{Cluster: productpageCluster, Percent: 100, Endpoints: []string{"10.0.0.1:9080"}, UpstreamPath: "/static/app.js"}},
				Timeout:      "none", Retries: defaultRetries,
			},
			wantReason: `VirtualService default/bookinfo spec.http[0].match[1] "productpage" forwards to ` + productpageCluster,
		},
		{
			name: "no route",
			url:  "http://bookinfo.example.com:8080/admin",
			want: outcome{
				VirtualHost: "bookinfo.example.com:8080", MatchedDomain: "bookinfo.example.com",
				Action: ActionNotFound, Status: 404, Timeout: "none",
				Tried: []string{
					`spec.http[0].match[0]: uri exact "/productpage" does not match path "/admin"`,
					`spec.http[0].match[1]: uri prefix "/static" does not match path "/admin"`,
				},
			},
			wantReason: "no route of virtual host bookinfo.example.com:8080 matches: Envoy answers 404 (response flag NR)",
		},
		{
			name: "httpsRedirect before any route",
			url:  "http://secure.example.com/productpage?a=b",
			want: outcome{
				VirtualHost: "secure.example.com:80", MatchedDomain: "secure.example.com",
				Action: ActionRedirect, Status: 301, Location: "https://secure.example.com/productpage?a=b", Timeout: "none",
			},
			wantReason: "the gateway server for secure.example.com:80 sets tls.httpsRedirect: plaintext requests get a 301 to https before any route is consulted",
		},
		{
			name:       "unknown host gets 404, not passthrough",
			url:        "http://other.example.com:8080/",
			want:       outcome{Action: ActionNotFound, Status: 404, Timeout: "none"},
			wantReason: `no virtual host on port 8080 has a domain matching "other.example.com": the gateway answers 404 (response flag NR)`,
		},
		{
			name:       "port without a server",
			url:        "http://bookinfo.example.com:9999/",
			want:       outcome{Action: ActionNotFound, Timeout: "none"},
			wantReason: "no server of the gateways this proxy implements listens on port 9999: the connection is refused",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := explainOne(t, gw, "GET", tc.url)
			if diff := cmp.Diff(tc.want, project(res)); diff != "" {
				t.Errorf("explain GET %s (-want +got):\n%s", tc.url, diff)
			}
			if res.Reason != tc.wantReason {
				t.Errorf("reason = %q, want %q", res.Reason, tc.wantReason)
			}
		})
	}
}

// TestExplainAgreesWithMatch checks, for every request of the fixture,
// that the rules listed before the chosen one all fail Match.Explain and
// the chosen one passes: the listing and VirtualHost.Match agree.
func TestExplainAgreesWithMatch(t *testing.T) {
	table := load(t, productpage)
	paths := []string{"/", "/old", "/healthz", "/beta", "/beta/x", "/internal", "/api/v1", "/api/v1/products", "/x"}
	hosts := []string{"reviews:9080", "ratings:9080", "productpage:9080", "legacy.example.com"}
	for _, host := range hosts {
		for _, p := range paths {
			for _, hdr := range [][]string{nil, {"end-user: jason"}, {"x-legacy: 1"}} {
				req, err := NewRequest("GET", "http://"+host+p, hdr, "")
				if err != nil {
					t.Fatal(err)
				}
				res, err := Explain(table, req)
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range res.Rules {
					last := i == len(res.Rules)-1
					if r.Matched != (last && res.Action != ActionNotFound) || r.Matched != (r.Reason == "") {
						t.Errorf("%s%s %v: rule #%d matched=%v reason=%q, action %s", host, p, hdr, i, r.Matched, r.Reason, res.Action)
					}
				}
			}
		}
	}
}

func TestExplainPolicy(t *testing.T) {
	res := explainOne(t, productpage, "GET", "http://reviews:9080/", "end-user: jason")
	got := res.Destinations[0].Policy
	want := &Policy{
		LoadBalancer: LoadBalancer{
			Algorithm: "RING_HASH", HashOn: "header x-user", MinRingSize: 1024,
			Locality: "failover by proximity to the proxy's locality (active: the cluster has outlier detection)",
		},
		ConnectionPool: ConnectionPool{
			MaxConnections: "100", MaxPendingRequests: "10", MaxRequests: "unlimited", MaxRetries: "3",
			ConnectTimeout: "2s", MaxRequestsPerConnection: "unlimited", MaxConnectionDuration: "none", IdleTimeout: "1h0m0s",
		},
		OutlierDetection: &OutlierDetection{
			Consecutive5xx: 3, Interval: "5s", BaseEjectionTime: "30s", MaxEjectionTime: "5m0s", MaxEjectionPercent: 50,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reviews v2 policy (-want +got):\n%s", diff)
	}

	tlsTests := []struct {
		name string
		url  string
		want *TLS
	}{
		{"DestinationRule ISTIO_MUTUAL", "http://ratings:9080/", &TLS{
			Mode: "ISTIO_MUTUAL", SNI: "outbound_.9080_.v1_.ratings.default.svc.cluster.local",
			Verify: "mesh certificate with the SPIFFE identity of an endpoint's service account",
		}},
		{"auto mTLS", "http://details:9080/", &TLS{
			Mode: "ISTIO_MUTUAL", Auto: true, SNI: "outbound_.9080_._.details.default.svc.cluster.local",
			Verify: "mesh certificate with the SPIFFE identity of an endpoint's service account",
		}},
		{"origination with a fixed SNI", "http://httpbin.org/get", &TLS{
			Mode: "SIMPLE", SNI: "httpbin.org", Verify: "signed by the system roots, valid for httpbin.org",
		}},
		{"plaintext", "http://productpage:9080/", nil},
	}
	for _, tc := range tlsTests {
		t.Run(tc.name, func(t *testing.T) {
			res := explainOne(t, productpage, "GET", tc.url)
			if diff := cmp.Diff(tc.want, res.Destinations[0].Policy.TLS); diff != "" {
				t.Errorf("tls for %s (-want +got):\n%s", tc.url, diff)
			}
		})
	}

	httpbin := explainOne(t, productpage, "GET", "http://httpbin.org/get").Destinations[0]
	if httpbin.Discovery != "STRICT_DNS" || len(httpbin.Endpoints) != 1 || httpbin.Endpoints[0].Address != "httpbin.org:443" {
		t.Errorf("httpbin cluster: discovery %s, endpoints %+v; want STRICT_DNS with httpbin.org:443", httpbin.Discovery, httpbin.Endpoints)
	}
	v3 := explainOne(t, productpage, "GET", "http://reviews:9080/beta").Destinations[0]
	wantEP := []Endpoint{{Address: "10.1.0.3:9080", Labels: map[string]string{"app": "reviews", "version": "v3"}, Locality: "us-west/a", Weight: 3}}
	if diff := cmp.Diff(wantEP, v3.Endpoints); diff != "" {
		t.Errorf("reviews v3 endpoints (-want +got):\n%s", diff)
	}
}

func TestExplainHandling(t *testing.T) {
	split := explainOne(t, productpage, "GET", "http://reviews:9080/", "x-legacy: 1")
	wantHeaders := &Headers{RequestSet: []Header{{Name: "X-Route", Value: "split"}}, ResponseRemove: []string{"X-Internal"}}
	if diff := cmp.Diff(wantHeaders, split.Headers); diff != "" {
		t.Errorf("split headers (-want +got):\n%s", diff)
	}
	wantRetries := &Retries{
		Attempts: 3, RetryOn: []string{"5xx", "reset"}, PerTryTimeout: "2s", BackoffBase: "25ms", BackoffMax: "250ms",
		RetryOtherHosts: true, HostSelectionAttempts: 5,
	}
	if diff := cmp.Diff(wantRetries, split.Retries); diff != "" {
		t.Errorf("split retries (-want +got):\n%s", diff)
	}
	if len(split.Mirrors) != 1 || !split.Mirrors[0].ClusterFound {
		t.Errorf("mirrors = %+v, want one to an existing cluster", split.Mirrors)
	}

	corsTests := []struct {
		name    string
		method  string
		headers []string
		effect  string
		note    bool // the filter answers itself
	}{
		{"no origin", "GET", nil, "no Origin header: CORS does not apply", false},
		{"allowed origin", "POST", []string{"Origin: https://bookinfo.example"}, "origin allowed: the response gets Access-Control-Allow-Origin: https://bookinfo.example", false},
		{"other origin", "GET", []string{"Origin: https://evil.example"}, "origin not allowed: no CORS headers are added, so a browser withholds the response", false},
		{"preflight", "OPTIONS", []string{"Origin: https://bookinfo.example", "Access-Control-Request-Method: POST"},
			"preflight from an allowed origin: the proxy answers 200 with the Access-Control-Allow-* headers itself", true},
		{"unmatched preflight", "OPTIONS", []string{"Origin: https://evil.example", "Access-Control-Request-Method: POST"},
			"preflight from an origin not allowed: forwarded like any request (unmatchedPreflights FORWARD)", false},
	}
	for _, tc := range corsTests {
		t.Run("cors "+tc.name, func(t *testing.T) {
			res := explainOne(t, productpage, tc.method, "http://productpage:9080/", tc.headers...)
			if res.CORS == nil {
				t.Fatal("no CORS in the result; the main rule has a corsPolicy")
			}
			if res.CORS.Effect != tc.effect {
				t.Errorf("effect = %q, want %q", res.CORS.Effect, tc.effect)
			}
			noted := strings.Contains(strings.Join(res.Notes, "\n"), "answers this preflight itself")
			if noted != tc.note {
				t.Errorf("preflight note present = %v, want %v (notes %q)", noted, tc.note, res.Notes)
			}
			if diff := cmp.Diff([]string{`exact "https://bookinfo.example"`}, res.CORS.AllowOrigins); diff != "" {
				t.Errorf("allowOrigins (-want +got):\n%s", diff)
			}
		})
	}

	delegated := explainOne(t, productpage, "GET", "http://productpage:9080/api/v1/products/7")
	if delegated.DelegateRuleIndex == nil || *delegated.DelegateRuleIndex != 0 {
		t.Errorf("delegateRuleIndex = %v, want 0", delegated.DelegateRuleIndex)
	}
	if rw := delegated.Rewrite; rw == nil || rw.URIPrefix == nil || *rw.URIPrefix != "/products" {
		t.Errorf("rewrite = %+v, want uri prefix /products", rw)
	}
	dr := explainOne(t, productpage, "GET", "http://productpage:9080/healthz").DirectResponse
	if dr == nil || dr.Status != 200 || dr.Body != "ok" {
		t.Errorf("direct response = %+v, want 200 \"ok\"", dr)
	}
}

func TestExplainNotes(t *testing.T) {
	res := explainOne(t, productpage, "GET", "http://reviews:9080/internal")
	notes := strings.Join(res.Notes, "\n")
	for _, want := range []string{
		"applied when compiling for this proxy (namespace default, labels app=productpage)",
		"VirtualService default/reviews spec.http[1] left no route on this proxy",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q do not mention %q", notes, want)
		}
	}
	forReviews := explainOne(t, Config{Paths: []string{fixture}, Namespace: "default", Labels: map[string]string{"app": "reviews"}}, "GET", "http://reviews:9080/")
	if notes := strings.Join(forReviews.Notes, "\n"); strings.Contains(notes, "left no route") {
		t.Errorf("a reviews proxy sees every rule, but notes say %q", notes)
	}
}

func TestExplainSourceIPHash(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cart, namespace: default}
spec:
  hosts: [cart]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.5.0.1}, {address: 10.5.0.2}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: default}
spec:
  host: cart
  trafficPolicy:
    loadBalancer:
      consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}
`)
	table := load(t, Config{Paths: []string{cfg}, Namespace: "default"})
	for _, tc := range []struct {
		sourceIP string
		want     Hash
	}{
		{"", Hash{Source: "source IP", Effect: "the client's address is hashed; pass --source-ip to see the key"}},
		{"10.9.8.7", Hash{Source: "source IP", Value: "10.9.8.7", Present: true}},
	} {
		req, err := NewRequest("GET", "http://cart/", nil, tc.sourceIP)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Explain(table, req)
		if err != nil {
			t.Fatal(err)
		}
		d := res.Destinations[0]
		if diff := cmp.Diff(&tc.want, d.Hash); diff != "" {
			t.Errorf("source IP %q: hash (-want +got):\n%s", tc.sourceIP, diff)
		}
		if lb := d.Policy.LoadBalancer; lb.Algorithm != "MAGLEV" || lb.HashOn != "source IP" || lb.MaglevTableSize != 65537 {
			t.Errorf("load balancer = %+v, want MAGLEV on source IP, table 65537", lb)
		}
	}
}

func TestExplainHTTPSOnMesh(t *testing.T) {
	req, err := NewRequest("GET", "https://reviews:9080/", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Explain(load(t, productpage), req); !errors.Is(err, ErrTLSOnMesh) {
		t.Errorf("Explain(https on a sidecar) error = %v, want ErrTLSOnMesh", err)
	}
}

func TestLoad(t *testing.T) {
	_, warnings, err := Load(productpage)
	if err != nil {
		t.Fatalf("Load(fixture): %v", err)
	}
	var found bool
	for _, d := range warnings {
		if d.Severity == config.Error {
			t.Errorf("Load returned an error finding as a warning: %s", d)
		}
		if d.Name == "legacy" && strings.Contains(d.Message, "legacy-backend.example.com is not in the service registry") {
			found = true
		}
	}
	if !found {
		t.Errorf("warnings %v do not report legacy-backend.example.com", warnings)
	}

	dir := t.TempDir()
	bad := writeConfig(t, dir, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: -1}]
`)
	table, _, err := Load(Config{Paths: []string{bad}, Namespace: "default"})
	var rejected *engine.RejectedError
	if !errors.As(err, &rejected) || table != nil {
		t.Fatalf("Load(invalid) = %v, %v; want a *engine.RejectedError and no table", table, err)
	}
	errs := rejected.Findings.Errors()
	if len(errs) != 1 || errs[0].Field != "spec.http[0].route[0].weight" {
		t.Errorf("findings = %v, want one error at spec.http[0].route[0].weight", errs)
	}
}

// writeConfig writes one configuration file into dir and returns its path.
func writeConfig(t *testing.T, dir, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestShare(t *testing.T) {
	dests := func(weights ...uint32) *routing.Forward {
		f := &routing.Forward{}
		for _, w := range weights {
			f.Destinations = append(f.Destinations, &routing.Destination{Weight: w})
			f.TotalWeight += w
		}
		return f
	}
	tests := []struct {
		name string
		f    *routing.Forward
		want []float64
	}{
		{"lone destination takes all whatever its weight", dests(7), []float64{100}},
		{"weights are relative", dests(2, 1), []float64{66.67, 33.33}},
		{"percentages", dests(90, 10), []float64{90, 10}},
		{"three ways", dests(1, 1, 1), []float64{33.33, 33.33, 33.33}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []float64
			for _, d := range tc.f.Destinations {
				got = append(got, share(d, tc.f))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}
