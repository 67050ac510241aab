package compile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/config"
	"github.com/michi-mesh/michi/internal/registry"
	"github.com/michi-mesh/michi/internal/routing"
)

func exact(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

func prefix(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
}

func regex(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
}

func TestStringMatchConflict(t *testing.T) {
	tests := []struct {
		name       string
		root, leaf *networking.StringMatch
		want       bool
	}{
		{"root unset", nil, exact("/a"), false},
		{"leaf unset", prefix("/a"), nil, false},
		{"same exact", exact("/a"), exact("/a"), false},
		{"different exact", exact("/a"), exact("/b"), true},
		{"exact root, prefix leaf", exact("/a"), prefix("/a"), true},
		{"prefix root, narrower prefix leaf", prefix("/a"), prefix("/a/b"), false},
		{"prefix root, wider prefix leaf", prefix("/a/b"), prefix("/a"), true},
		{"prefix root, exact leaf inside", prefix("/a"), exact("/a/b"), false},
		{"prefix root, exact leaf outside", prefix("/a"), exact("/b"), true},
		{"regex root", regex(".*"), prefix("/a"), true},
		{"regex leaf", prefix("/a"), regex("/a/.*"), true},
		{"regex root, presence leaf", regex(".*"), &networking.StringMatch{}, true},
		{"presence root, exact leaf", &networking.StringMatch{}, exact("x"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stringMatchConflict(tt.root, tt.leaf); got != tt.want {
				t.Errorf("stringMatchConflict = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatchConflict(t *testing.T) {
	tests := []struct {
		name       string
		root, leaf *networking.HTTPMatchRequest
		want       bool
	}{
		{"nested uri", &networking.HTTPMatchRequest{Uri: prefix("/a")}, &networking.HTTPMatchRequest{Uri: prefix("/a/b")}, false},
		{"ignoreUriCase differs", &networking.HTTPMatchRequest{Uri: prefix("/a"), IgnoreUriCase: true}, &networking.HTTPMatchRequest{Uri: prefix("/a/b")}, true},
		{"ports differ", &networking.HTTPMatchRequest{Port: 80}, &networking.HTTPMatchRequest{Port: 8080}, true},
		{"port only on leaf", &networking.HTTPMatchRequest{}, &networking.HTTPMatchRequest{Port: 8080}, false},
		{"header values differ", &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"x": exact("1")}},
			&networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"x": exact("2")}}, true},
		{"header only on leaf", &networking.HTTPMatchRequest{}, &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"x": exact("2")}}, false},
		{"sourceNamespace differs", &networking.HTTPMatchRequest{SourceNamespace: "a"}, &networking.HTTPMatchRequest{SourceNamespace: "b"}, true},
		{"sourceNamespace only on leaf", &networking.HTTPMatchRequest{}, &networking.HTTPMatchRequest{SourceNamespace: "b"}, false},
		{"sourceLabels disagree", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "a"}},
			&networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "b"}}, true},
		{"sourceLabels extend", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "a"}},
			&networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "a", "v": "1"}}, false},
		{"leaf gateway outside root's", &networking.HTTPMatchRequest{Gateways: []string{"gw"}}, &networking.HTTPMatchRequest{Gateways: []string{"other"}}, true},
		{"leaf gateway resolves to root's", &networking.HTTPMatchRequest{Gateways: []string{"root/gw"}}, &networking.HTTPMatchRequest{Gateways: []string{"root/gw", "mesh"}}, true},
		{"same gateway written two ways", &networking.HTTPMatchRequest{Gateways: []string{"gw", "mesh"}}, &networking.HTTPMatchRequest{Gateways: []string{"root/gw"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchConflict(tt.root, tt.leaf, "root", "leaf"); got != tt.want {
				t.Errorf("matchConflict = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResolveGatewayName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"mesh", "mesh"},
		{"gw", "ns/gw"},
		{"./gw", "ns/gw"},
		{"other/gw", "other/gw"},
		{"gw.other", "other/gw"},
		{"gw.other.svc.cluster.local", "other/gw"},
	}
	for _, tt := range tests {
		if got := resolveGatewayName(tt.in, "ns"); got != tt.want {
			t.Errorf("resolveGatewayName(%q, ns) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestKubeAltHosts(t *testing.T) {
	tests := []struct {
		host, proxyNS string
		want          []string
	}{
		{"reviews.default.svc.cluster.local", "default", []string{"reviews", "reviews.default.svc", "reviews.default"}},
		{"reviews.bookinfo.svc.cluster.local", "default", []string{"reviews.bookinfo", "reviews.bookinfo.svc"}},
		{"reviews.default.svc.other.domain", "default", nil},
		{"httpbin.org", "default", nil},
		{"svc.cluster.local", "default", nil},
	}
	for _, tt := range tests {
		got := kubeAltHosts(tt.host, tt.proxyNS, "cluster.local")
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("kubeAltHosts(%q, %q) mismatch (-want +got):\n%s", tt.host, tt.proxyNS, diff)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	def := routing.DefaultRetryPolicy()
	hashDefault := routing.DefaultRetryPolicy()
	hashDefault.RetryOtherHosts, hashDefault.HostSelectionAttempts = false, 0
	tests := []struct {
		name        string
		in          *networking.HTTPRetry
		hash        bool
		want        *routing.RetryPolicy
		wantUnknown []string
	}{
		{name: "unset", want: def},
		{name: "unset with consistent hash", hash: true, want: hashDefault},
		{name: "attempts 0 disables", in: &networking.HTTPRetry{Attempts: 0, RetryOn: "5xx"}, want: nil},
		{
			name: "status codes add retriable-status-codes",
			in:   &networking.HTTPRetry{Attempts: 3, RetryOn: "5xx,429,not-a-token,999"},
			want: &routing.RetryPolicy{
				NumRetries: 3, RetryOn: routing.Retry5xx | routing.RetryRetriableStatusCodes, RetriableStatusCodes: []int{429},
				BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond, RetryOtherHosts: true, HostSelectionAttempts: 5,
			},
			wantUnknown: []string{"not-a-token", "999"},
		},
		{
			name: "backoff, per-try timeout, explicit host predicate under hashing",
			in: &networking.HTTPRetry{
				Attempts: 1, Backoff: durationpb.New(40 * time.Millisecond), PerTryTimeout: durationpb.New(time.Second),
				RetryIgnorePreviousHosts: wrapperspb.Bool(true), RetryRemoteLocalities: wrapperspb.Bool(true),
			},
			hash: true,
			want: &routing.RetryPolicy{
				NumRetries: 1, RetryOn: def.RetryOn, PerTryTimeout: time.Second,
				BackoffBase: 40 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
				RetryOtherHosts: true, HostSelectionAttempts: 5, RetryRemoteLocalities: true,
			},
		},
		{
			name: "previous hosts off",
			in:   &networking.HTTPRetry{Attempts: 2, RetryIgnorePreviousHosts: wrapperspb.Bool(false)},
			want: &routing.RetryPolicy{NumRetries: 2, RetryOn: def.RetryOn, BackoffBase: def.BackoffBase, BackoffMax: def.BackoffMax},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, unknown := retryPolicy(tt.in, tt.hash)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("retryPolicy mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantUnknown, unknown); diff != "" {
				t.Errorf("unknown tokens mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPercentPerMillion(t *testing.T) {
	tests := []struct {
		in   float64
		want uint32
	}{
		{0, 0}, {0.0001, 1}, {0.1, 1000}, {12.5, 125000}, {100, routing.Million}, {150, routing.Million}, {-1, 0},
	}
	for _, tt := range tests {
		if got := percentPerMillion(&networking.Percent{Value: tt.in}); got != tt.want {
			t.Errorf("percentPerMillion(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// compileYAML loads, builds the registry and compiles for opts.
func compileYAML(t *testing.T, yaml string, opts Options) (*routing.Table, config.Diagnostics) {
	t.Helper()
	set, diags := config.LoadBytes("test.yaml", []byte(yaml), config.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags.Errors())
	}
	return Compile(set, registry.Build(set, ""), opts)
}

const versionBase = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.example.com]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a.example.com]
  http: [{route: [{destination: {host: a.example.com}}], timeout: TIMEOUT}]
`

func TestTableVersion(t *testing.T) {
	opts := Options{Proxy: routing.Proxy{Namespace: "default"}}
	v1, _ := compileYAML(t, strings.Replace(versionBase, "TIMEOUT", "1s", 1), opts)
	again, _ := compileYAML(t, strings.Replace(versionBase, "TIMEOUT", "1s", 1), opts)
	v2, _ := compileYAML(t, strings.Replace(versionBase, "TIMEOUT", "2s", 1), opts)
	if v1.Version == "" {
		t.Fatal("version is empty")
	}
	if v1.Version != again.Version {
		t.Errorf("same configuration: versions %s and %s differ", v1.Version, again.Version)
	}
	if v1.Version == v2.Version {
		t.Errorf("timeout 1s and 2s: both versions are %s, want different", v1.Version)
	}
	other := opts
	other.Proxy.Namespace = "other"
	v3, _ := compileYAML(t, strings.Replace(versionBase, "TIMEOUT", "1s", 1), other)
	if v1.Version == v3.Version {
		t.Errorf("proxy namespace default and other: both versions are %s, want different", v1.Version)
	}
}

func TestDefaults(t *testing.T) {
	table, _ := compileYAML(t, strings.Replace(versionBase, "TIMEOUT", "1s", 1), Options{})
	want := routing.Proxy{Role: routing.RoleMesh, Namespace: DefaultNamespace}
	if diff := cmp.Diff(want, table.Proxy); diff != "" {
		t.Errorf("Proxy mismatch (-want +got):\n%s", diff)
	}
	if table.OutboundPolicy != routing.AllowAny {
		t.Errorf("OutboundPolicy = %q, want %q", table.OutboundPolicy, routing.AllowAny)
	}
	if table.HTTP == nil || table.Clusters == nil {
		t.Errorf("HTTP and Clusters must be non-nil maps, got %v and %v", table.HTTP, table.Clusters)
	}
}

// TestOddResources feeds Compile and Analyze resources that the loader
// accepts but that are missing parts Validate would ask for: they must
// compile without panicking, and what cannot be used must be reported.
func TestOddResources(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		wantField string // a compile finding expected at this field
	}{
		{"empty match", `http: [{match: [{}], route: [{destination: {host: a.example.com}}]}]`, ""},
		{"rule without action", `http: [{name: nothing}]`, "spec.http[0]"},
		{"destination missing", `http: [{route: [{weight: 10}]}]`, "spec.http[0].route"},
		{"all weights zero", `http: [{route: [{destination: {host: a.example.com}}, {destination: {host: a.example.com}}]}]`, "spec.http[0].route"},
		{"bad uri regex", `http: [{match: [{uri: {regex: "("}}], route: [{destination: {host: a.example.com}}]}]`, "spec.http[0].match[0].uri"},
		{"bad header regex", `http: [{match: [{headers: {x: {regex: "["}}}], route: [{destination: {host: a.example.com}}]}]`, "spec.http[0].match[0].headers[x]"},
		{"jwt claim match", `http: [{match: [{headers: {"@request.auth.claims.sub": {exact: me}}}], route: [{destination: {host: a.example.com}}]}]`,
			"spec.http[0].match[0].headers[@request.auth.claims.sub]"},
		{"bad rewrite regex", `http: [{rewrite: {uriRegexRewrite: {match: "(", rewrite: x}}, route: [{destination: {host: a.example.com}}]}]`,
			"spec.http[0].rewrite.uriRegexRewrite.match"},
		{"unknown grpc status", `http: [{fault: {abort: {grpcStatus: NOPE, percentage: {value: 1}}}, route: [{destination: {host: a.example.com}}]}]`,
			"spec.http[0].fault.abort.grpcStatus"},
		{"empty tcp rule", `tcp: [{}]`, "spec.tcp[0].route"},
		{"empty tls rule", `tls: [{match: [{sniHosts: [a.example.com]}]}]`, "spec.tls[0].route"},
		{"delegate without name", `http: [{delegate: {}}]`, "spec.http[0].delegate"},
	}
	const se = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.example.com]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: tls, protocol: TLS}, {number: 5000, name: tcp, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a.example.com]
  `
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, diags := config.LoadBytes("odd.yaml", []byte(se+tt.yaml+"\n"), config.LoadOptions{})
			if diags.HasErrors() {
				t.Fatalf("load: %v", diags.Errors())
			}
			reg := registry.Build(set, "")
			for _, role := range []routing.Role{routing.RoleMesh, routing.RoleGateway} {
				_, cdiags := Compile(set, reg, Options{Proxy: routing.Proxy{Role: role, Namespace: "default"}})
				Analyze(set, reg, Options{})
				if tt.wantField == "" || role != routing.RoleMesh {
					continue
				}
				found := false
				for _, d := range cdiags {
					if d.Field == tt.wantField {
						found = true
					}
				}
				if !found {
					t.Errorf("no compile finding at %s; got %v", tt.wantField, cdiags)
				}
			}
		})
	}
}

// TestGoldenInputsAnyProxy compiles every golden input for other proxy
// identities than the golden's own: whatever the proxy, compiling must
// not panic and must be deterministic.
func TestGoldenInputsAnyProxy(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*"+inSuffix))
	if err != nil {
		t.Fatal(err)
	}
	proxies := []routing.Proxy{
		{Role: routing.RoleMesh, Namespace: "istio-system", Labels: map[string]string{"app": "web"}},
		{Role: routing.RoleGateway, Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}},
		{Role: routing.RoleGateway, Namespace: "default", Gateways: []string{"istio-system/edge", "public"}},
	}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		set, _ := config.LoadBytes(in, data, config.LoadOptions{})
		reg := registry.Build(set, "")
		for _, p := range proxies {
			a, _ := Compile(set, reg, Options{Proxy: p})
			b, _ := Compile(set, reg, Options{Proxy: p})
			if a.Version != b.Version {
				t.Errorf("%s as %s in %s: versions %s and %s differ between two compilations", in, p.Role, p.Namespace, a.Version, b.Version)
			}
		}
	}
}

// FuzzCompile checks that nothing the loader accepts makes Compile or
// Analyze panic, for a sidecar and for a gateway. The seeds are the golden
// inputs.
func FuzzCompile(f *testing.F) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*"+inSuffix))
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	proxies := []routing.Proxy{
		{Role: routing.RoleMesh, Namespace: "default", Labels: map[string]string{"app": "web"}},
		{Role: routing.RoleGateway, Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, _ := config.LoadBytes("fuzz.yaml", data, config.LoadOptions{})
		reg := registry.Build(set, "")
		for _, p := range proxies {
			if table, _ := Compile(set, reg, Options{Proxy: p}); table == nil {
				t.Fatal("Compile returned a nil table")
			}
		}
		Analyze(set, reg, Options{})
	})
}
