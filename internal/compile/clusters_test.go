package compile

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

// reviewsHost is the service most tests route to; it lives in namespace
// "svc" and has two ports and endpoints for versions v1 and v2.
const reviewsHost = "reviews.svc.svc.cluster.local"

const reviewsSE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: svc}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9443, name: tls, protocol: TLS}
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}}`

// dr writes a DestinationRule manifest; spec is YAML at column 0.
func dr(ns, name, spec string) string {
	lines := strings.Split(strings.Trim(spec, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + name +
		", namespace: " + ns + "}\nspec:\n" + strings.Join(lines, "\n")
}

// load decodes manifests into a set and its registry, failing the test on
// any load error.
func load(t *testing.T, docs ...string) (*config.Set, *registry.Registry) {
	t.Helper()
	set, diags := config.LoadBytes("test.yaml", []byte(strings.Join(docs, "\n---\n")), config.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	return set, registry.Build(set, "")
}

// clientProxy is a sidecar in namespace "client".
var clientProxy = routing.Proxy{Role: routing.RoleMesh, Namespace: "client", Labels: map[string]string{"app": "client", "version": "v1"}}

// build indexes the rules and builds the clusters for proxy.
func build(t *testing.T, proxy routing.Proxy, docs ...string) (*destinationRules, map[string]*routing.Cluster, config.Diagnostics) {
	t.Helper()
	set, reg := load(t, docs...)
	opts := Options{Proxy: proxy}
	drs, diags := newDestinationRules(set, reg, opts)
	clusters, cdiags := buildClusters(reg, drs, opts)
	return drs, clusters, append(diags, cdiags...)
}

func cluster(t *testing.T, clusters map[string]*routing.Cluster, name string) *routing.Cluster {
	t.Helper()
	c := clusters[name]
	if c == nil {
		names := make([]string, 0, len(clusters))
		for n := range clusters {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Fatalf("no cluster %s; have %v", name, names)
	}
	return c
}

func TestDestinationRuleLookupOrder(t *testing.T) {
	tests := []struct {
		name  string
		proxy routing.Proxy
		root  string
		rules []string
		want  string // source of the rule applied to reviews, "" for none
	}{{
		name: "client namespace first",
		rules: []string{
			dr("istio-system", "root", "host: "+reviewsHost),
			dr("svc", "owner", "host: reviews"),
			dr("client", "mine", "host: "+reviewsHost),
		},
		want: "client/mine",
	}, {
		name: "service namespace before root",
		rules: []string{
			dr("istio-system", "root", "host: "+reviewsHost),
			dr("svc", "owner", "host: reviews"),
		},
		want: "svc/owner",
	}, {
		name:  "root namespace last",
		rules: []string{dr("istio-system", "root", "host: "+reviewsHost)},
		want:  "istio-system/root",
	}, {
		name: "service namespace rule exported only to itself is not seen",
		rules: []string{
			dr("istio-system", "root", "host: "+reviewsHost),
			dr("svc", "owner", "host: reviews\nexportTo: [.]"),
		},
		want: "istio-system/root",
	}, {
		name:  "service namespace rule exported to the client by name",
		rules: []string{dr("svc", "owner", "host: reviews\nexportTo: [client]")},
		want:  "svc/owner",
	}, {
		name: "service namespace rule exported elsewhere is not seen",
		rules: []string{
			dr("istio-system", "root", "host: "+reviewsHost),
			dr("svc", "owner", "host: reviews\nexportTo: [other]"),
		},
		want: "istio-system/root",
	}, {
		name: "of rules kept apart, the one exported to the client counts (first)",
		rules: []string{
			dr("svc", "a", "host: reviews\nexportTo: [client]"),
			dr("svc", "b", "host: reviews\nexportTo: [other]"),
		},
		want: "svc/a",
	}, {
		name: "of rules kept apart, the one exported to the client counts (last)",
		rules: []string{
			dr("svc", "a", "host: reviews\nexportTo: [other]"),
			dr("svc", "b", "host: reviews\nexportTo: [client]"),
		},
		want: "svc/b",
	}, {
		name: "of rules kept apart and both exported to the client, the last counts",
		rules: []string{
			dr("svc", "a", "host: reviews\nexportTo: ['*']"),
			dr("svc", "b", "host: reviews\nexportTo: [client]"),
		},
		want: "svc/b",
	}, {
		name:  "exportTo ~ hides the rule from everyone",
		rules: []string{dr("svc", "owner", "host: reviews\nexportTo: [\"~\"]")},
		want:  "",
	}, {
		name:  "client rule exported only to its own namespace applies there",
		rules: []string{dr("client", "mine", "host: "+reviewsHost+"\nexportTo: [.]")},
		want:  "client/mine",
	}, {
		name:  "rule in an unrelated namespace does not apply",
		rules: []string{dr("other", "theirs", "host: "+reviewsHost)},
		want:  "",
	}, {
		name: "exact host beats a wildcard in the same namespace",
		rules: []string{
			dr("svc", "wild", "host: '*.svc.svc.cluster.local'"),
			dr("svc", "exact", "host: reviews"),
		},
		want: "svc/exact",
	}, {
		name: "longer wildcard beats a shorter one",
		rules: []string{
			dr("svc", "short", "host: '*.cluster.local'"),
			dr("svc", "long", "host: '*.svc.svc.cluster.local'"),
		},
		want: "svc/long",
	}, {
		// Istio picks the most specific host first and only then checks
		// exportTo, so the wildcard of the same namespace is never tried.
		name: "more specific rule not exported hides a wildcard that is",
		rules: []string{
			dr("istio-system", "root", "host: "+reviewsHost),
			dr("svc", "wild", "host: '*.cluster.local'"),
			dr("svc", "exact", "host: reviews\nexportTo: [other]"),
		},
		want: "istio-system/root",
	}, {
		name: "client namespace wildcard beats an exact host elsewhere",
		rules: []string{
			dr("svc", "owner", "host: reviews"),
			dr("client", "mine", "host: '*.cluster.local'"),
		},
		want: "client/mine",
	}, {
		name: "short host resolves in the rule's namespace",
		rules: []string{
			dr("client", "mine", "host: reviews"), // reviews.client.svc.cluster.local
			dr("svc", "owner", "host: reviews"),
		},
		want: "svc/owner",
	}, {
		name:  "proxy in the root namespace sees root-private rules first",
		proxy: routing.Proxy{Role: routing.RoleGateway, Namespace: "istio-system"},
		rules: []string{
			dr("svc", "owner", "host: reviews"),
			dr("istio-system", "private", "host: "+reviewsHost+"\nexportTo: [.]"),
		},
		want: "istio-system/private",
	}, {
		name:  "proxy in the root namespace then looks in the service namespace",
		proxy: routing.Proxy{Role: routing.RoleGateway, Namespace: "istio-system"},
		rules: []string{
			dr("istio-system", "public", "host: "+reviewsHost),
			dr("svc", "owner", "host: reviews"),
		},
		want: "svc/owner",
	}, {
		name: "root namespace is configurable",
		root: "mesh-root",
		rules: []string{
			dr("istio-system", "old-root", "host: "+reviewsHost),
			dr("mesh-root", "root", "host: "+reviewsHost),
		},
		want: "mesh-root/root",
	}, {
		name: "workload selector matching the proxy beats the catch-all",
		rules: []string{
			dr("client", "all", "host: "+reviewsHost),
			dr("client", "selected", "host: "+reviewsHost+"\nworkloadSelector: {matchLabels: {app: client}}"),
		},
		want: "client/selected",
	}, {
		name: "workload selector not matching falls back to the catch-all",
		rules: []string{
			dr("client", "selected", "host: "+reviewsHost+"\nworkloadSelector: {matchLabels: {app: other}}"),
			dr("client", "all", "host: "+reviewsHost),
		},
		want: "client/all",
	}, {
		name:  "rule with a selector in another namespace never applies",
		rules: []string{dr("svc", "selected", "host: reviews\nworkloadSelector: {matchLabels: {app: client}}")},
		want:  "",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proxy := tc.proxy
			if proxy.Namespace == "" {
				proxy = clientProxy
			}
			set, reg := load(t, append([]string{reviewsSE}, tc.rules...)...)
			opts := Options{Proxy: proxy, RootNamespace: tc.root}
			drs, _ := newDestinationRules(set, reg, opts)
			got := ""
			if r := drs.lookup(reviewsHost, "svc"); r != nil {
				got = r.source()
			}
			if got != tc.want {
				t.Errorf("rule for %s = %q, want %q", reviewsHost, got, tc.want)
			}
			// The clusters carry the same rule.
			clusters, _ := buildClusters(reg, drs, opts)
			if c := cluster(t, clusters, "outbound|9080||"+reviewsHost); c.DestinationRule != tc.want {
				t.Errorf("cluster DestinationRule = %q, want %q", c.DestinationRule, tc.want)
			}
		})
	}
}

func TestDestinationRuleMerge(t *testing.T) {
	tests := []struct {
		name      string
		proxy     routing.Proxy
		rules     []string
		want      string   // source of the applied rule
		subsets   []string // its subsets, in order
		lb        routing.LBPolicy
		wantDiags []string
	}{{
		name: "same host without selectors: subsets concatenated, first policy wins",
		rules: []string{
			dr("svc", "a", `
host: reviews
trafficPolicy: {loadBalancer: {simple: RANDOM}}
subsets:
- {name: v1, labels: {version: v1}}`),
			dr("svc", "b", `
host: reviews
trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
subsets:
- {name: v1, labels: {version: v2}}
- {name: v2, labels: {version: v2}}`),
		},
		want:    "svc/a,svc/b",
		subsets: []string{"v1", "v2"},
		lb:      routing.LBRandom,
		wantDiags: []string{
			`test.yaml:31: DestinationRule svc/b: spec.subsets[0].name: warning: subset "v1" is already defined by DestinationRule svc/a for host reviews.svc.svc.cluster.local; this definition is ignored (Istio keeps the first when merging rules)`,
			`test.yaml:29: DestinationRule svc/b: spec.trafficPolicy: warning: ignored: DestinationRule svc/a for host reviews.svc.svc.cluster.local is older and already sets a top-level trafficPolicy (Istio keeps the first when merging rules)`,
		},
	}, {
		name: "a later rule's policy is used when the first has none",
		rules: []string{
			dr("svc", "a", "host: reviews\nsubsets: [{name: v1, labels: {version: v1}}]"),
			dr("svc", "b", "host: reviews\ntrafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}"),
		},
		want:    "svc/a,svc/b",
		subsets: []string{"v1"},
		lb:      routing.LBRoundRobin,
	}, {
		// Both land in the service namespace's own index with different
		// exportTo, so they stay apart, and Istio's catch-all choice is
		// the last of them.
		name:  "different exportTo stay separate: the namespace's proxies get the last",
		proxy: routing.Proxy{Role: routing.RoleMesh, Namespace: "svc"},
		rules: []string{
			dr("svc", "a", "host: reviews\nexportTo: ['*']\nsubsets: [{name: v1}]"),
			dr("svc", "b", "host: reviews\nexportTo: [.]\nsubsets: [{name: v2}]"),
		},
		want:    "svc/b",
		subsets: []string{"v2"},
		lb:      routing.LBLeastRequest,
	}, {
		name: "different exportTo stay separate: other namespaces get the exported one",
		rules: []string{
			dr("svc", "a", "host: reviews\nexportTo: ['*']\nsubsets: [{name: v1}]"),
			dr("svc", "b", "host: reviews\nexportTo: [.]\nsubsets: [{name: v2}]"),
		},
		want:    "svc/a",
		subsets: []string{"v1"},
		lb:      routing.LBLeastRequest,
	}, {
		// Istio folds a rule whose exportTo widens an earlier one into it,
		// and (both lacking selectors) does not keep it on its own.
		name: "widening exportTo folds into the earlier rule",
		rules: []string{
			dr("svc", "a", "host: reviews\nexportTo: [client]\nsubsets: [{name: v1}]"),
			dr("svc", "b", "host: reviews\nexportTo: [client, other]\nsubsets: [{name: v2}]"),
		},
		want:    "svc/a,svc/b",
		subsets: []string{"v1", "v2"},
		lb:      routing.LBLeastRequest,
	}, {
		name:  "widening exportTo folds into the earlier rule, whose exportTo then rules",
		proxy: routing.Proxy{Role: routing.RoleMesh, Namespace: "other"},
		rules: []string{
			dr("svc", "a", "host: reviews\nexportTo: [client]\nsubsets: [{name: v1}]"),
			dr("svc", "b", "host: reviews\nexportTo: [client, other]\nsubsets: [{name: v2}]"),
		},
		want: "",
	}, {
		name: "selector rule takes in a namespace-private rule for its workloads",
		rules: []string{
			dr("client", "all", "host: "+reviewsHost+"\nexportTo: [.]\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}\nsubsets: [{name: v2}]"),
			dr("client", "selected", "host: "+reviewsHost+"\nworkloadSelector: {matchLabels: {app: client}}\nsubsets: [{name: v1}]"),
		},
		want:    "client/selected,client/all",
		subsets: []string{"v1", "v2"},
		lb:      routing.LBRandom,
	}, {
		name:  "the namespace-private rule still stands alone for other workloads",
		proxy: routing.Proxy{Role: routing.RoleMesh, Namespace: "client", Labels: map[string]string{"app": "batch"}},
		rules: []string{
			dr("client", "all", "host: "+reviewsHost+"\nexportTo: [.]\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}\nsubsets: [{name: v2}]"),
			dr("client", "selected", "host: "+reviewsHost+"\nworkloadSelector: {matchLabels: {app: client}}\nsubsets: [{name: v1}]"),
		},
		want:    "client/all",
		subsets: []string{"v2"},
		lb:      routing.LBRandom,
	}, {
		name: "different selectors stay separate: the oldest match wins",
		rules: []string{
			dr("client", "by-app", "host: "+reviewsHost+"\nworkloadSelector: {matchLabels: {app: client}}\nsubsets: [{name: v1}]"),
			dr("client", "by-version", "host: "+reviewsHost+"\nworkloadSelector: {matchLabels: {version: v1}}\nsubsets: [{name: v2}]"),
		},
		want:    "client/by-app",
		subsets: []string{"v1"},
		lb:      routing.LBLeastRequest,
	}, {
		name: "a subset repeated within one rule is not blamed on another",
		rules: []string{
			dr("svc", "a", "host: reviews\nsubsets: [{name: v1}]"),
			dr("svc", "b", "host: reviews\nsubsets: [{name: v2}, {name: v2}]"),
		},
		want:    "svc/a,svc/b",
		subsets: []string{"v1", "v2"},
		lb:      routing.LBLeastRequest,
	}, {
		name: "same selector merged",
		rules: []string{
			dr("client", "one", "host: "+reviewsHost+"\nworkloadSelector: {matchLabels: {app: client}}\nsubsets: [{name: v1}]"),
			dr("client", "two", "host: "+reviewsHost+"\nworkloadSelector: {matchLabels: {app: client}}\nsubsets: [{name: v1}, {name: v2}]"),
		},
		want:    "client/one,client/two",
		subsets: []string{"v1", "v2"},
		lb:      routing.LBLeastRequest,
		wantDiags: []string{
			`test.yaml:29: DestinationRule client/two: spec.subsets[0].name: warning: subset "v1" is already defined by DestinationRule client/one for host reviews.svc.svc.cluster.local; this definition is ignored (Istio keeps the first when merging rules)`,
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proxy := tc.proxy
			if proxy.Namespace == "" {
				proxy = clientProxy
			}
			drs, clusters, diags := build(t, proxy, append([]string{reviewsSE}, tc.rules...)...)
			r := drs.lookup(reviewsHost, "svc")
			if tc.want == "" {
				if r != nil {
					t.Fatalf("rule = %s, want none", r.source())
				}
				return
			}
			if r == nil {
				t.Fatalf("no rule, want %s", tc.want)
			}
			if got := r.source(); got != tc.want {
				t.Errorf("rule = %s, want %s", got, tc.want)
			}
			var subsets []string
			for _, s := range r.subsets {
				subsets = append(subsets, s.GetName())
			}
			if diff := cmp.Diff(tc.subsets, subsets); diff != "" {
				t.Errorf("subsets (-want +got):\n%s", diff)
			}
			if got := cluster(t, clusters, "outbound|9080||"+reviewsHost).Policy.LoadBalancer.Policy; got != tc.lb {
				t.Errorf("load balancer = %s, want %s", got, tc.lb)
			}
			for _, s := range tc.subsets {
				cluster(t, clusters, "outbound|9080|"+s+"|"+reviewsHost)
			}
			if diff := cmp.Diff(tc.wantDiags, diagStrings(diags)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}

func diagStrings(ds config.Diagnostics) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	return out
}

func TestDestinationRuleIgnoredDiagnostics(t *testing.T) {
	_, _, diags := build(t, clientProxy, reviewsSE,
		dr("svc", "nothing", "host: ratings"),
		dr("svc", "wild-nothing", "host: '*.example.com'"),
		dr("svc", "wild", "host: '*.svc.cluster.local'"),
		dr("svc", "unsupported", `
host: reviews
trafficPolicy:
  loadBalancer: {zoneAwareLbSetting: {enabled: true}}
  retryBudget: {budgetInterval: 1s}
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer: {zoneAwareLbSetting: {enabled: true}}
subsets:
- name: v1
  trafficPolicy:
    loadBalancer: {zoneAwareLbSetting: {enabled: true}}`))
	want := []string{
		`test.yaml:19: DestinationRule svc/nothing: spec.host: info: no service in the registry matches host "ratings.svc.svc.cluster.local"; the rule has no effect`,
		`test.yaml:25: DestinationRule svc/wild-nothing: spec.host: info: no service in the registry matches host "*.example.com"; the rule has no effect`,
		`test.yaml:39: DestinationRule svc/unsupported: spec.trafficPolicy.loadBalancer.zoneAwareLbSetting: warning: zoneAwareLbSetting is not supported by michi and is ignored`,
		`test.yaml:40: DestinationRule svc/unsupported: spec.trafficPolicy.retryBudget.budgetInterval: warning: budgetInterval is not supported by michi and is ignored`,
		`test.yaml:43: DestinationRule svc/unsupported: spec.trafficPolicy.portLevelSettings[0].loadBalancer.zoneAwareLbSetting: warning: zoneAwareLbSetting is not supported by michi and is ignored`,
		`test.yaml:47: DestinationRule svc/unsupported: spec.subsets[0].trafficPolicy.loadBalancer.zoneAwareLbSetting: warning: zoneAwareLbSetting is not supported by michi and is ignored`,
	}
	if diff := cmp.Diff(want, diagStrings(diags)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

// defaultPolicy is the policy of a cluster no rule shapes.
func defaultPolicy() routing.Policy {
	return routing.Policy{
		LoadBalancer:   routing.LoadBalancer{Policy: routing.LBLeastRequest, Locality: &routing.LocalityLB{Enabled: true}},
		ConnectionPool: defaultPool(),
	}
}

func defaultPool() routing.ConnectionPool {
	return routing.ConnectionPool{
		MaxConnections:     routing.Unlimited,
		MaxPendingRequests: routing.Unlimited,
		MaxRequests:        routing.Unlimited,
		MaxRetries:         routing.Unlimited,
		ConnectTimeout:     10 * time.Second,
		IdleTimeout:        time.Hour,
		TCPIdleTimeout:     time.Hour,
	}
}

func defaultOutlier() *routing.OutlierDetection {
	return &routing.OutlierDetection{
		Consecutive5xx:     5,
		Interval:           10 * time.Second,
		BaseEjectionTime:   30 * time.Second,
		MaxEjectionTime:    300 * time.Second,
		MaxEjectionPercent: 10,
	}
}

func TestClusterPolicy(t *testing.T) {
	tests := []struct {
		name   string
		policy string // the rule's trafficPolicy, "" for no rule
		want   func(*routing.Policy)
	}{{
		name: "no rule: Istio defaults",
		want: func(*routing.Policy) {},
	}, {
		name:   "random",
		policy: "loadBalancer: {simple: RANDOM}",
		want:   func(p *routing.Policy) { p.LoadBalancer.Policy = routing.LBRandom },
	}, {
		name:   "round robin with warmup",
		policy: "loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 30s, minimumPercent: 20, aggression: 2}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Policy = routing.LBRoundRobin
			p.LoadBalancer.Warmup = &routing.Warmup{Duration: 30 * time.Second, MinPercent: 20, Aggression: 2}
		},
	}, {
		name:   "warmup defaults",
		policy: "loadBalancer: {warmup: {duration: 1m}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Warmup = &routing.Warmup{Duration: time.Minute, MinPercent: 10, Aggression: 1}
		},
	}, {
		name:   "LEAST_CONN is least request, with deprecated warmupDurationSecs",
		policy: "loadBalancer: {simple: LEAST_CONN, warmupDurationSecs: 15s}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Warmup = &routing.Warmup{Duration: 15 * time.Second, MinPercent: 10, Aggression: 1}
		},
	}, {
		name:   "consistent hash without algorithm is a 1024 ring",
		policy: "loadBalancer: {consistentHash: {httpHeaderName: x-user}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Policy = routing.LBRingHash
			p.LoadBalancer.MinRingSize = 1024
			p.LoadBalancer.Hash = &routing.HashPolicy{Header: "X-User"}
		},
	}, {
		name:   "deprecated minimumRingSize",
		policy: "loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 2048}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Policy = routing.LBRingHash
			p.LoadBalancer.MinRingSize = 2048
			p.LoadBalancer.Hash = &routing.HashPolicy{SourceIP: true}
		},
	}, {
		name:   "ring hash with a size, warmup ignored",
		policy: "loadBalancer: {consistentHash: {httpQueryParameterName: user, ringHash: {minimumRingSize: 4096}}, warmup: {duration: 10s}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Policy = routing.LBRingHash
			p.LoadBalancer.MinRingSize = 4096
			p.LoadBalancer.Hash = &routing.HashPolicy{QueryParam: "user"}
		},
	}, {
		name:   "ring hash without a size",
		policy: "loadBalancer: {consistentHash: {httpQueryParameterName: user, ringHash: {}}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Policy = routing.LBRingHash
			p.LoadBalancer.MinRingSize = 1024
			p.LoadBalancer.Hash = &routing.HashPolicy{QueryParam: "user"}
		},
	}, {
		name:   "maglev with a table size",
		policy: "loadBalancer: {consistentHash: {httpCookie: {name: session, ttl: 0s}, maglev: {tableSize: 1031}}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Policy = routing.LBMaglev
			p.LoadBalancer.MaglevTableSize = 1031
			p.LoadBalancer.Hash = &routing.HashPolicy{Cookie: &routing.CookieHash{Name: "session", HasTTL: true}}
		},
	}, {
		name:   "maglev without a table size gets Envoy's",
		policy: "loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {}}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Policy = routing.LBMaglev
			p.LoadBalancer.MaglevTableSize = 65537
			p.LoadBalancer.Hash = &routing.HashPolicy{Header: "X-User"}
		},
	}, {
		name:   "locality disabled",
		policy: "loadBalancer: {localityLbSetting: {enabled: false, failover: [{from: us-east, to: us-west}]}}",
		want:   func(p *routing.Policy) { p.LoadBalancer.Locality = &routing.LocalityLB{Enabled: false} },
	}, {
		name: "locality distribute",
		policy: `loadBalancer:
  localityLbSetting:
    distribute:
    - from: us-west/zone1/*
      to: {us-west/zone1/*: 80, us-west/zone2/*: 20}`,
		want: func(p *routing.Policy) {
			p.LoadBalancer.Locality = &routing.LocalityLB{Enabled: true, Distribute: []routing.LocalityDistribute{
				{From: "us-west/zone1/*", To: map[string]uint32{"us-west/zone1/*": 80, "us-west/zone2/*": 20}},
			}}
		},
	}, {
		name:   "locality failover",
		policy: "loadBalancer: {localityLbSetting: {enabled: true, failover: [{from: us-east, to: eu-west}]}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Locality = &routing.LocalityLB{Enabled: true, Failover: []routing.LocalityFailover{{From: "us-east", To: "eu-west"}}}
		},
	}, {
		name:   "locality failover priority",
		policy: "loadBalancer: {localityLbSetting: {failoverPriority: [topology.istio.io/network, topology.kubernetes.io/region]}}",
		want: func(p *routing.Policy) {
			p.LoadBalancer.Locality = &routing.LocalityLB{Enabled: true, FailoverPriority: []string{"topology.istio.io/network", "topology.kubernetes.io/region"}}
		},
	}, {
		name: "connection pool, every field",
		policy: `connectionPool:
  tcp:
    maxConnections: 10
    connectTimeout: 2s
    tcpKeepalive: {probes: 3, time: 60s, interval: 10s}
    maxConnectionDuration: 5m
    idleTimeout: 30m
  http:
    http1MaxPendingRequests: 5
    http2MaxRequests: 50
    maxRequestsPerConnection: 1
    maxRetries: 2
    idleTimeout: 90s
    h2UpgradePolicy: UPGRADE
    maxConcurrentStreams: 100
    http2KeepAlive: {interval: 5s, timeout: 1s}`,
		want: func(p *routing.Policy) {
			p.ConnectionPool = routing.ConnectionPool{
				MaxConnections:           10,
				MaxPendingRequests:       5,
				MaxRequests:              50,
				MaxRetries:               2,
				ConnectTimeout:           2 * time.Second,
				MaxRequestsPerConnection: 1,
				MaxConnectionDuration:    5 * time.Minute,
				IdleTimeout:              90 * time.Second,
				TCPIdleTimeout:           30 * time.Minute,
				TCPKeepalive:             &routing.TCPKeepalive{Probes: 3, Time: time.Minute, Interval: 10 * time.Second},
				H2UpgradePolicy:          "UPGRADE",
				MaxConcurrentStreams:     100,
				HTTP2KeepaliveInterval:   5 * time.Second,
				HTTP2KeepaliveTimeout:    time.Second,
			}
		},
	}, {
		name:   "tcp idle timeout also closes idle HTTP connections",
		policy: "connectionPool: {tcp: {idleTimeout: 10m}}",
		want: func(p *routing.Policy) {
			p.ConnectionPool.IdleTimeout = 10 * time.Minute
			p.ConnectionPool.TCPIdleTimeout = 10 * time.Minute
		},
	}, {
		name:   "zero thresholds keep the unlimited default; zero idle timeouts disable",
		policy: "connectionPool: {tcp: {maxConnections: 0, idleTimeout: 0s}, http: {http2MaxRequests: 0, idleTimeout: 0s, useClientProtocol: true, h2UpgradePolicy: DO_NOT_UPGRADE}}",
		want: func(p *routing.Policy) {
			p.ConnectionPool.IdleTimeout = 0
			p.ConnectionPool.TCPIdleTimeout = 0
			p.ConnectionPool.UseClientProtocol = true
			p.ConnectionPool.H2UpgradePolicy = "DO_NOT_UPGRADE"
		},
	}, {
		name:   "empty outlier detection gets Envoy's defaults and panic threshold 0",
		policy: "outlierDetection: {}",
		want:   func(p *routing.Policy) { p.Outlier = defaultOutlier() },
	}, {
		name: "outlier detection, every field",
		policy: `outlierDetection:
  consecutive5xxErrors: 0
  consecutiveGatewayErrors: 3
  interval: 5s
  baseEjectionTime: 10m
  maxEjectionPercent: 50
  minHealthPercent: 20
  outlierDetectionHttpErrorCodes: [500, 503]`,
		want: func(p *routing.Policy) {
			p.Outlier = &routing.OutlierDetection{
				Consecutive5xx:           0,
				ConsecutiveGatewayErrors: 3,
				Interval:                 5 * time.Second,
				BaseEjectionTime:         10 * time.Minute,
				MaxEjectionTime:          10 * time.Minute, // base is larger than 300s
				MaxEjectionPercent:       50,
				MinHealthPercent:         20,
				ErrorCodes:               []int{500, 503},
			}
		},
	}, {
		name:   "split local-origin errors default to 5",
		policy: "outlierDetection: {splitExternalLocalOriginErrors: true}",
		want: func(p *routing.Policy) {
			p.Outlier = defaultOutlier()
			p.Outlier.SplitExternalLocalOriginErrors = true
			p.Outlier.ConsecutiveLocalOriginFailures = 5
		},
	}, {
		name:   "split local-origin errors with a count",
		policy: "outlierDetection: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 7}",
		want: func(p *routing.Policy) {
			p.Outlier = defaultOutlier()
			p.Outlier.SplitExternalLocalOriginErrors = true
			p.Outlier.ConsecutiveLocalOriginFailures = 7
		},
	}, {
		name:   "deprecated consecutiveErrors is not translated",
		policy: "outlierDetection: {consecutiveErrors: 2}",
		want:   func(p *routing.Policy) { p.Outlier = defaultOutlier() },
	}, {
		name: "simple TLS, every field",
		policy: `tls:
  mode: SIMPLE
  caCertificates: /etc/ca.pem
  caCrl: /etc/crl.pem
  subjectAltNames: [reviews.example.com]
  sni: reviews.example.com
  insecureSkipVerify: true`,
		want: func(p *routing.Policy) {
			p.TLS = &routing.ClientTLS{Mode: routing.TLSSimple, CAFile: "/etc/ca.pem", CRLFile: "/etc/crl.pem",
				SubjectAltNames: []string{"reviews.example.com"}, SNI: "reviews.example.com", InsecureSkipVerify: true}
		},
	}, {
		name:   "mutual TLS with files",
		policy: "tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}",
		want: func(p *routing.Policy) {
			p.TLS = &routing.ClientTLS{Mode: routing.TLSMutual, CertFile: "/c.pem", KeyFile: "/k.pem", CAFile: "/ca.pem"}
		},
	}, {
		name:   "a sidecar gets no TLS for a credential without workload selector",
		policy: "tls: {mode: MUTUAL, credentialName: reviews-client}",
		want:   func(p *routing.Policy) { p.TLS = &routing.ClientTLS{Mode: routing.TLSDisable} },
	}, {
		name:   "explicit ISTIO_MUTUAL is not auto",
		policy: "tls: {mode: ISTIO_MUTUAL, sni: outbound_.9080_._.reviews}",
		want: func(p *routing.Policy) {
			p.TLS = &routing.ClientTLS{Mode: routing.TLSIstioMutual, SNI: "outbound_.9080_._.reviews"}
		},
	}, {
		name:   "TLS disabled",
		policy: "tls: {mode: DISABLE}",
		want:   func(p *routing.Policy) { p.TLS = &routing.ClientTLS{Mode: routing.TLSDisable} },
	}, {
		name:   "tunnel defaults to CONNECT",
		policy: "tunnel: {targetHost: egress.example.com, targetPort: 8443}",
		want: func(p *routing.Policy) {
			p.Tunnel = &routing.Tunnel{Protocol: "CONNECT", TargetHost: "egress.example.com", TargetPort: 8443}
		},
	}, {
		name:   "tunnel with POST",
		policy: "tunnel: {protocol: POST, targetHost: 10.1.1.1, targetPort: 80}",
		want: func(p *routing.Policy) {
			p.Tunnel = &routing.Tunnel{Protocol: "POST", TargetHost: "10.1.1.1", TargetPort: 80}
		},
	}, {
		name:   "proxy protocol defaults to V1",
		policy: "proxyProtocol: {}",
		want:   func(p *routing.Policy) { p.ProxyProtocol = "V1" },
	}, {
		name:   "proxy protocol V2",
		policy: "proxyProtocol: {version: V2}",
		want:   func(p *routing.Policy) { p.ProxyProtocol = "V2" },
	}, {
		name:   "retry budget defaults",
		policy: "retryBudget: {}",
		want:   func(p *routing.Policy) { p.RetryBudget = &routing.RetryBudget{Percent: 20, MinRetryConcurrency: 3} },
	}, {
		name:   "retry budget",
		policy: "retryBudget: {percent: 5.5, minRetryConcurrency: 1}",
		want:   func(p *routing.Policy) { p.RetryBudget = &routing.RetryBudget{Percent: 5.5, MinRetryConcurrency: 1} },
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			docs := []string{reviewsSE}
			if tc.policy != "" {
				indented := strings.ReplaceAll(tc.policy, "\n", "\n  ")
				docs = append(docs, dr("svc", "reviews", "host: reviews\ntrafficPolicy:\n  "+indented))
			}
			_, clusters, _ := build(t, clientProxy, docs...)
			want := defaultPolicy()
			tc.want(&want)
			got := cluster(t, clusters, "outbound|9080||"+reviewsHost).Policy
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("policy (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCredentialNameOnSidecars(t *testing.T) {
	gateway := routing.Proxy{Role: routing.RoleGateway, Namespace: "client", Labels: clientProxy.Labels}
	mutual := &routing.ClientTLS{Mode: routing.TLSMutual, CredentialName: "reviews-client"}
	tests := []struct {
		name      string
		proxy     routing.Proxy
		rule      string
		want      *routing.ClientTLS
		wantDiags []string
	}{{
		name:  "sidecar, rule without selector: plaintext",
		proxy: clientProxy,
		rule: dr("svc", "reviews", `
host: reviews
subsets:
- name: v1
  trafficPolicy: {tls: {mode: MUTUAL, credentialName: reviews-client}}`),
		want: &routing.ClientTLS{Mode: routing.TLSDisable},
		wantDiags: []string{
			"test.yaml:22: DestinationRule svc/reviews: spec.subsets[0].trafficPolicy.tls.credentialName: warning: a sidecar gets no TLS from a rule without workloadSelector whose tls names a credentialName: Istio sends this traffic in plaintext; add a workloadSelector or use certificate files",
		},
	}, {
		name:  "sidecar, rule with a selector",
		proxy: clientProxy,
		rule: dr("client", "reviews", `
host: `+reviewsHost+`
workloadSelector: {matchLabels: {app: client}}
subsets:
- name: v1
  trafficPolicy: {tls: {mode: MUTUAL, credentialName: reviews-client}}`),
		want: mutual,
	}, {
		name:  "gateway",
		proxy: gateway,
		rule: dr("svc", "reviews", `
host: reviews
subsets:
- name: v1
  trafficPolicy: {tls: {mode: MUTUAL, credentialName: reviews-client}}`),
		want: mutual,
	}, {
		name:  "sidecar, ConfigMap credential",
		proxy: clientProxy,
		rule: dr("svc", "reviews", `
host: reviews
subsets:
- name: v1
  trafficPolicy: {tls: {mode: SIMPLE, credentialName: "configmap://reviews-ca"}}`),
		want: &routing.ClientTLS{Mode: routing.TLSSimple, CredentialName: "configmap://reviews-ca"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, clusters, diags := build(t, tc.proxy, reviewsSE, tc.rule)
			// Both ports' v1 clusters use the block; it is reported once.
			for _, port := range []string{"9080", "9443"} {
				got := cluster(t, clusters, "outbound|"+port+"|v1|"+reviewsHost).Policy.TLS
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("port %s TLS (-want +got):\n%s", port, diff)
				}
			}
			if diff := cmp.Diff(tc.wantDiags, diagStrings(diags)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClusterPolicyInheritance(t *testing.T) {
	_, clusters, _ := build(t, clientProxy, reviewsSE, dr("svc", "reviews", `
host: reviews
trafficPolicy:
  loadBalancer: {simple: RANDOM}
  connectionPool: {tcp: {maxConnections: 100}, http: {http2MaxRequests: 1000}}
  outlierDetection: {consecutive5xxErrors: 7}
  tls: {mode: SIMPLE, sni: top.example}
  proxyProtocol: {version: V2}
  tunnel: {targetHost: proxy.example, targetPort: 8080}
  portLevelSettings:
  - port: {number: 9443}
    connectionPool: {tcp: {maxConnections: 5}}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 9}}
    tunnel: {targetHost: sub.example, targetPort: 9000, protocol: POST}
- name: v3
  labels: {version: v1}
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings:
    - port: {number: 9080}
      outlierDetection: {consecutive5xxErrors: 1}`))

	// summary is the part of a policy each level may change.
	type summary struct {
		LB                   routing.LBPolicy
		MaxConn, MaxReq, Pnd uint32
		Consecutive5xx       int // -1 without outlier detection
		SNI                  string
		ProxyProtocol        string
		Tunnel               string
	}
	const unl = routing.Unlimited
	tests := []struct {
		name    string
		cluster string
		want    summary
	}{
		{"rule", "outbound|9080||", summary{routing.LBRandom, 100, 1000, unl, 7, "top.example", "V2", "proxy.example"}},
		// Port-level settings replace the whole policy: omitted blocks fall
		// back to defaults, proxyProtocol goes, the tunnel stays.
		{"rule port level", "outbound|9443||", summary{routing.LBLeastRequest, 5, unl, unl, -1, "", "", "proxy.example"}},
		// A subset without a policy inherits everything but the tunnel.
		{"subset without policy", "outbound|9080|v1|", summary{routing.LBRandom, 100, 1000, unl, 7, "top.example", "V2", ""}},
		{"subset without policy, rule port level", "outbound|9443|v1|", summary{routing.LBLeastRequest, 5, unl, unl, -1, "", "", ""}},
		// A block the subset sets replaces the rule's block whole.
		{"subset pool", "outbound|9080|v2|", summary{routing.LBRandom, unl, unl, 9, 7, "top.example", "V2", "sub.example"}},
		{"subset pool over rule port level", "outbound|9443|v2|", summary{routing.LBLeastRequest, unl, unl, 9, -1, "", "", "sub.example"}},
		// Subset port-level settings replace lb, pool, outlier and tls,
		// including the subset's own top-level load balancer.
		{"subset port level", "outbound|9080|v3|", summary{routing.LBLeastRequest, unl, unl, unl, 1, "", "V2", ""}},
		{"subset lb over rule port level", "outbound|9443|v3|", summary{routing.LBRoundRobin, 5, unl, unl, -1, "", "", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := cluster(t, clusters, tc.cluster+reviewsHost).Policy
			got := summary{
				LB:             p.LoadBalancer.Policy,
				MaxConn:        p.ConnectionPool.MaxConnections,
				MaxReq:         p.ConnectionPool.MaxRequests,
				Pnd:            p.ConnectionPool.MaxPendingRequests,
				Consecutive5xx: -1,
				ProxyProtocol:  p.ProxyProtocol,
			}
			if p.Outlier != nil {
				got.Consecutive5xx = int(p.Outlier.Consecutive5xx)
			}
			if p.TLS != nil {
				got.SNI = p.TLS.SNI
			}
			if p.Tunnel != nil {
				got.Tunnel = p.Tunnel.TargetHost
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s policy (-want +got):\n%s", tc.cluster, diff)
			}
		})
	}
}

func TestHashPolicyPrecedence(t *testing.T) {
	drs, _, _ := build(t, clientProxy, reviewsSE,
		dr("svc", "reviews", `
host: reviews
trafficPolicy:
  loadBalancer: {consistentHash: {httpHeaderName: x-rule}}
  portLevelSettings:
  - port: {number: 9443}
    loadBalancer: {consistentHash: {httpQueryParameterName: rule-port}}
subsets:
- name: plain
- name: own
  trafficPolicy:
    loadBalancer: {consistentHash: {useSourceIp: true}}
    portLevelSettings:
    - port: {number: 9443}
      loadBalancer:
        consistentHash:
          httpCookie:
            name: s
            path: /
            ttl: 0s
            attributes: [{name: SameSite, value: Strict}, {name: Secure}]
- name: simple
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}`),
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: svc}
spec:
  hosts: [ratings]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints: [{address: 10.0.1.1}]`,
		dr("svc", "ratings", `
host: ratings
trafficPolicy:
  loadBalancer: {consistentHash: {httpCookie: {name: user}}}
subsets:
- name: rr
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}`),
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: details, namespace: svc}
spec:
  hosts: [details]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints: [{address: 10.0.2.1}]`,
		dr("svc", "details", "host: details\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}"),
	)
	header := &routing.HashPolicy{Header: "X-Rule"}
	query := &routing.HashPolicy{QueryParam: "rule-port"}
	sourceIP := &routing.HashPolicy{SourceIP: true}
	cookie := &routing.HashPolicy{Cookie: &routing.CookieHash{Name: "s", Path: "/", HasTTL: true,
		Attributes: []routing.CookieAttr{{Name: "SameSite", Value: "Strict"}, {Name: "Secure"}}}}
	tests := []struct {
		name   string
		host   string
		svcNS  string
		subset string
		port   uint32
		want   *routing.HashPolicy
	}{
		{"rule", reviewsHost, "svc", "", 9080, header},
		{"rule, no destination port", reviewsHost, "svc", "", 0, header},
		{"rule port level", reviewsHost, "svc", "", 9443, query},
		{"subset without policy gets rule port level", reviewsHost, "svc", "plain", 9443, query},
		{"subset", reviewsHost, "svc", "own", 9080, sourceIP},
		{"subset port level", reviewsHost, "svc", "own", 9443, cookie},
		{"port level only for an explicit destination port", reviewsHost, "svc", "own", 0, sourceIP},
		{"subset with a simple balancer still gets the rule's hash", reviewsHost, "svc", "simple", 9080, header},
		{"unknown subset gets the rule's hash", reviewsHost, "svc", "nope", 9080, header},
		{"service namespace looked up when not given", reviewsHost, "", "", 9080, header},
		{"cookie without ttl", "ratings.svc.svc.cluster.local", "svc", "rr", 9080, &routing.HashPolicy{Cookie: &routing.CookieHash{Name: "user"}}},
		{"no consistent hash", "details.svc.svc.cluster.local", "svc", "", 9080, nil},
		{"no rule", "unknown.example.com", "svc", "", 9080, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := drs.hashPolicy(tc.host, tc.svcNS, tc.subset, tc.port)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("hashPolicy(%s, %q, %q, %d) (-want +got):\n%s", tc.host, tc.svcNS, tc.subset, tc.port, diff)
			}
		})
	}
}

func TestHasSubset(t *testing.T) {
	drs, _, _ := build(t, clientProxy, reviewsSE,
		dr("svc", "a", "host: reviews\nsubsets: [{name: v1, labels: {version: v1}}]"),
		dr("svc", "b", "host: reviews\nsubsets: [{name: v2, labels: {version: v2}}]"),
		dr("svc", "private", "host: '*.svc.svc.cluster.local'\nexportTo: [.]\nsubsets: [{name: hidden}]"))
	tests := []struct {
		host, svcNS, subset string
		want                bool
	}{
		{reviewsHost, "svc", "v1", true},
		{reviewsHost, "svc", "v2", true}, // from the merged rule
		{reviewsHost, "", "v1", true},
		{reviewsHost, "svc", "v3", false},
		{reviewsHost, "svc", "", false},
		{"ratings.svc.svc.cluster.local", "svc", "hidden", false}, // not exported to the client
	}
	for _, tc := range tests {
		if got := drs.hasSubset(tc.host, tc.svcNS, tc.subset); got != tc.want {
			t.Errorf("hasSubset(%s, %q, %q) = %t, want %t", tc.host, tc.svcNS, tc.subset, got, tc.want)
		}
	}
}

func TestAutoMTLS(t *testing.T) {
	se := func(location, labels2 string) string {
		return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: svc}
spec:
  hosts: [ratings]
  location: ` + location + `
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1, security.istio.io/tlsMode: istio}}
  - {address: 10.0.0.2, labels: {version: v2` + labels2 + `}}`
	}
	const host = "ratings.svc.svc.cluster.local"
	auto := &routing.ClientTLS{Mode: routing.TLSIstioMutual, Auto: true}
	subsets := dr("svc", "ratings", "host: ratings\nsubsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]")
	tests := []struct {
		name    string
		docs    []string
		cluster string
		want    *routing.ClientTLS
	}{
		{"every endpoint in the mesh", []string{se("MESH_INTERNAL", ", security.istio.io/tlsMode: istio")}, "outbound|9080||", auto},
		{"an endpoint without a proxy keeps the cluster plaintext", []string{se("MESH_INTERNAL", "")}, "outbound|9080||", nil},
		{"subset of mesh endpoints", []string{se("MESH_INTERNAL", ""), subsets}, "outbound|9080|v1|", auto},
		{"subset without mesh endpoints", []string{se("MESH_INTERNAL", ""), subsets}, "outbound|9080|v2|", nil},
		{"mesh-external service", []string{se("MESH_EXTERNAL", ", security.istio.io/tlsMode: istio")}, "outbound|9080||", nil},
		{"explicit TLS wins", []string{se("MESH_INTERNAL", ", security.istio.io/tlsMode: istio"),
			dr("svc", "ratings", "host: ratings\ntrafficPolicy: {tls: {mode: DISABLE}}")}, "outbound|9080||", &routing.ClientTLS{Mode: routing.TLSDisable}},
		{"TLS dropped by port-level settings turns auto mTLS back on", []string{se("MESH_INTERNAL", ", security.istio.io/tlsMode: istio"),
			dr("svc", "ratings", "host: ratings\ntrafficPolicy: {tls: {mode: SIMPLE}, portLevelSettings: [{port: {number: 9080}, loadBalancer: {simple: RANDOM}}]}")},
			"outbound|9080||", auto},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, clusters, _ := build(t, clientProxy, tc.docs...)
			got := cluster(t, clusters, tc.cluster+host).Policy.TLS
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("TLS (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildClusters(t *testing.T) {
	_, clusters, diags := build(t, clientProxy, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: svc}
spec:
  hosts: [ratings]
  location: MESH_INTERNAL
  resolution: STATIC
  subjectAltNames: [spiffe://cluster.local/ns/svc/sa/ratings]
  ports:
  - {number: 9080, name: http, protocol: http, targetPort: 7000}
  - {number: 9090, name: grpc-api}
  - {number: 5353, name: dns, protocol: UDP}
  endpoints:
  - address: 10.0.0.1
    ports: {http: 8080}
    labels: {version: v1, security.istio.io/tlsMode: istio}
    locality: us-east/zone1/a
    network: net1
    serviceAccount: ratings
    weight: 3
  - address: 10.0.0.2
    labels: {version: v2}
  - address: unix:///var/run/ratings.sock
    labels: {version: v3}`,
		dr("svc", "ratings", "host: ratings\nsubsets: [{name: v1, labels: {version: v1}}, {name: none, labels: {version: v9}}]"),
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: client}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls-api}, {number: 80, name: http2-api}, {number: 81, name: plain}]`,
		dr("client", "api", "host: api.example.com\nsubsets: [{name: v1, labels: {version: v1}}]"),
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: rr, namespace: client}
spec:
  hosts: [rr.example.com]
  resolution: DNS_ROUND_ROBIN
  ports: [{number: 443, name: https, protocol: HTTPS}]`,
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: passthrough, namespace: client}
spec:
  hosts: [pass.example.com]
  resolution: NONE
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.9.9.9}]`,
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dyn, namespace: client}
spec:
  hosts: ['*.dyn.example.com']
  resolution: DYNAMIC_DNS
  ports: [{number: 443, name: tls, protocol: TLS}]`,
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hidden, namespace: other}
spec:
  hosts: [hidden.example.com]
  exportTo: [.]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.8.8.8}]`,
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shared-theirs, namespace: other}
spec:
  hosts: [shared.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.7.7.1}]`,
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shared-mine, namespace: client}
spec:
  hosts: [shared.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.7.7.2}]`,
	)
	if len(diags) != 0 {
		t.Errorf("diagnostics: %v", diags)
	}

	const ratings = "ratings.svc.svc.cluster.local"
	v1 := routing.Endpoint{
		Address:        "10.0.0.1:8080", // the workload's own port for "http"
		Labels:         map[string]string{"version": "v1", "security.istio.io/tlsMode": "istio"},
		Locality:       "us-east/zone1/a",
		Weight:         3,
		Network:        "net1",
		ServiceAccount: "ratings",
		TLSMode:        "istio",
	}
	want := &routing.Cluster{
		Name:            "outbound|9080||" + ratings,
		Host:            ratings,
		Port:            9080,
		Namespace:       "svc",
		Protocol:        "HTTP",
		Discovery:       routing.DiscoveryStatic,
		SubjectAltNames: []string{"spiffe://cluster.local/ns/svc/sa/ratings"},
		Endpoints: []routing.Endpoint{
			v1,
			{Address: "10.0.0.2:7000", Labels: map[string]string{"version": "v2"}, Weight: 1}, // the service's targetPort
			{Address: "unix:///var/run/ratings.sock", Labels: map[string]string{"version": "v3"}, Weight: 1},
		},
		Policy:          defaultPolicy(),
		DestinationRule: "svc/ratings",
	}
	if diff := cmp.Diff(want, cluster(t, clusters, want.Name)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", want.Name, diff)
	}
	subset := cluster(t, clusters, "outbound|9080|v1|"+ratings)
	if diff := cmp.Diff([]routing.Endpoint{v1}, subset.Endpoints); diff != "" {
		t.Errorf("subset v1 endpoints (-want +got):\n%s", diff)
	}
	if subset.Subset != "v1" || subset.Name != "outbound|9080|v1|"+ratings {
		t.Errorf("subset cluster named %q with subset %q, want outbound|9080|v1|%s and v1", subset.Name, subset.Subset, ratings)
	}
	if got := cluster(t, clusters, "outbound|9080|none|"+ratings).Endpoints; len(got) != 0 {
		t.Errorf("static subset selecting nothing has endpoints %v, want none", got)
	}

	tests := []struct {
		name      string
		cluster   string
		protocol  string
		discovery routing.Discovery
		lb        routing.LBPolicy
		addresses []string
		absent    bool
	}{
		{name: "protocol from a grpc port name", cluster: "outbound|9090||" + ratings, protocol: "GRPC", discovery: routing.DiscoveryStatic,
			lb: routing.LBLeastRequest, addresses: []string{"10.0.0.1:9090", "10.0.0.2:9090", "unix:///var/run/ratings.sock"}},
		{name: "no cluster for UDP", cluster: "outbound|5353||" + ratings, absent: true},
		{name: "DNS resolves the host", cluster: "outbound|443||api.example.com", protocol: "TLS", discovery: routing.DiscoveryDNS,
			lb: routing.LBLeastRequest, addresses: []string{"api.example.com:443"}},
		{name: "protocol from an http2 port name", cluster: "outbound|80||api.example.com", protocol: "HTTP2", discovery: routing.DiscoveryDNS,
			lb: routing.LBLeastRequest, addresses: []string{"api.example.com:80"}},
		{name: "unknown port name leaves the protocol to sniffing", cluster: "outbound|81||api.example.com", protocol: "", discovery: routing.DiscoveryDNS,
			lb: routing.LBLeastRequest, addresses: []string{"api.example.com:81"}},
		{name: "no DNS cluster for a subset without endpoints", cluster: "outbound|443|v1|api.example.com", absent: true},
		{name: "DNS round robin is logical DNS", cluster: "outbound|443||rr.example.com", protocol: "HTTPS", discovery: routing.DiscoveryLogicalDNS,
			lb: routing.LBLeastRequest, addresses: []string{"rr.example.com:443"}},
		{name: "resolution NONE forwards to the original destination", cluster: "outbound|5432||pass.example.com", protocol: "TCP",
			discovery: routing.DiscoveryOriginalDst, lb: routing.LBPassthrough, addresses: []string{}},
		{name: "DYNAMIC_DNS forwards to the requested host", cluster: "outbound|443||*.dyn.example.com", protocol: "TLS",
			discovery: routing.DiscoveryOriginalDst, lb: routing.LBPassthrough, addresses: []string{}},
		{name: "service not exported to the proxy", cluster: "outbound|80||hidden.example.com", absent: true},
		{name: "the proxy's own namespace wins a shared host", cluster: "outbound|80||shared.example.com", protocol: "HTTP",
			discovery: routing.DiscoveryStatic, lb: routing.LBLeastRequest, addresses: []string{"10.7.7.2:80"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := clusters[tc.cluster]
			if tc.absent {
				if c != nil {
					t.Fatalf("cluster %s exists, want none", tc.cluster)
				}
				return
			}
			c = cluster(t, clusters, tc.cluster)
			addresses := []string{}
			for _, ep := range c.Endpoints {
				addresses = append(addresses, ep.Address)
			}
			if c.Protocol != tc.protocol || c.Discovery != tc.discovery || c.Policy.LoadBalancer.Policy != tc.lb {
				t.Errorf("protocol, discovery, lb = %q, %s, %s; want %q, %s, %s", c.Protocol, c.Discovery, c.Policy.LoadBalancer.Policy,
					tc.protocol, tc.discovery, tc.lb)
			}
			if diff := cmp.Diff(tc.addresses, addresses); diff != "" {
				t.Errorf("endpoint addresses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPassthroughLoadBalancer(t *testing.T) {
	_, clusters, _ := build(t, clientProxy, reviewsSE, dr("svc", "reviews", `
host: reviews
subsets:
- name: direct
  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
- name: v1
  labels: {version: v1}`))
	direct := cluster(t, clusters, "outbound|9080|direct|"+reviewsHost)
	if direct.Discovery != routing.DiscoveryOriginalDst || direct.Policy.LoadBalancer.Policy != routing.LBPassthrough || len(direct.Endpoints) != 0 {
		t.Errorf("PASSTHROUGH subset: discovery %s, lb %s, %d endpoints; want ORIGINAL_DST, PASSTHROUGH, none",
			direct.Discovery, direct.Policy.LoadBalancer.Policy, len(direct.Endpoints))
	}
	v1 := cluster(t, clusters, "outbound|9080|v1|"+reviewsHost)
	if v1.Discovery != routing.DiscoveryStatic || len(v1.Endpoints) != 1 {
		t.Errorf("v1 subset: discovery %s, %d endpoints; want STATIC, 1", v1.Discovery, len(v1.Endpoints))
	}
}

// manyServices writes n ServiceEntries in namespace svc, each with two
// ports and three endpoints, and a DestinationRule with a policy and two
// subsets for every second one, plus a namespace-wide wildcard rule.
func manyServices(n int) string {
	var b strings.Builder
	for i := range n {
		host := "svc" + strconv.Itoa(i)
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: svc}
spec:
  hosts: [%[1]s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: tls, protocol: TLS}]
  endpoints:
  - {address: 10.%[2]d.%[3]d.1, labels: {version: v1}}
  - {address: 10.%[2]d.%[3]d.2, labels: {version: v2}}
  - {address: 10.%[2]d.%[3]d.3, labels: {version: v2}}
---
`, host, i/256%256, i%256)
		if i%2 == 0 {
			fmt.Fprintf(&b, "%s\n---\n", dr("svc", host, "host: "+host+`
trafficPolicy:
  connectionPool: {http: {http2MaxRequests: 100}}
  outlierDetection: {consecutive5xxErrors: 3}
subsets:
- {name: v1, labels: {version: v1}}
- {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}}`))
		}
	}
	b.WriteString(dr("svc", "wildcard", "host: '*.svc.svc.cluster.local'\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}"))
	return b.String()
}

// BenchmarkBuildClusters10kServices indexes 5,000 rules and builds the
// 40,000 clusters of 10,000 services (two ports each, two subsets on
// half of them).
func BenchmarkBuildClusters10kServices(b *testing.B) {
	set, diags := config.LoadBytes("bench.yaml", []byte(manyServices(10000)), config.LoadOptions{})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	reg := registry.Build(set, "")
	opts := Options{Proxy: clientProxy}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		drs, _ := newDestinationRules(set, reg, opts)
		clusters, _ := buildClusters(reg, drs, opts)
		if len(clusters) != 40000 {
			b.Fatalf("%d clusters, want 40000", len(clusters))
		}
	}
}

// BenchmarkHashPolicy is the per-destination lookup route compilation
// does.
func BenchmarkHashPolicy(b *testing.B) {
	set, diags := config.LoadBytes("bench.yaml", []byte(manyServices(10000)), config.LoadOptions{})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	reg := registry.Build(set, "")
	drs, _ := newDestinationRules(set, reg, Options{Proxy: clientProxy})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if drs.hashPolicy("svc"+strconv.Itoa(i%10000)+".svc.svc.cluster.local", "svc", "v2", 80) == nil && i%2 == 0 {
			b.Fatal("no hash policy for subset v2")
		}
	}
}
