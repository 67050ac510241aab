package registry

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/michi-mesh/michi/internal/config"
)

const manifests = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews, reviews-alias.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: http, targetPort: 8080}
  - {number: 9090, name: metrics, protocol: HTTP}
  endpoints:
  - {address: 10.0.0.1, ports: {http: 18080}, labels: {version: v1}, locality: us/east/a, weight: 3}
  - {address: 10.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings.bookinfo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-vm, namespace: bookinfo}
spec: {address: 10.0.1.1, labels: {app: ratings, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-elsewhere, namespace: other}
spec: {address: 10.0.9.9, labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: egress}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: team-a}
spec:
  hosts: [shared.example.com]
  exportTo: ["."]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 10.1.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: public, namespace: team-b}
spec:
  hosts: [shared.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 10.2.0.1}]
`

func build(t *testing.T) *Registry {
	t.Helper()
	set, diags := config.LoadBytes("registry.yaml", []byte(manifests), config.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return Build(set, "")
}

func TestBuild(t *testing.T) {
	r := build(t)
	var hosts []string
	for _, s := range r.Services() {
		hosts = append(hosts, s.Namespace+"/"+s.Hostname)
	}
	want := []string{
		"egress/api.example.com",
		"bookinfo/ratings.bookinfo.svc.cluster.local",
		"bookinfo/reviews-alias.example.com",
		"bookinfo/reviews.bookinfo.svc.cluster.local",
		"team-a/shared.example.com",
		"team-b/shared.example.com",
	}
	if diff := cmp.Diff(want, hosts); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}

	reviews := r.LookupAny("reviews.bookinfo.svc.cluster.local")
	if reviews == nil || reviews.Ports[0].Protocol != "HTTP" || reviews.MeshExternal {
		t.Fatalf("reviews = %+v", reviews)
	}
	// Port precedence: the endpoint's ports map, then targetPort, then the
	// service port (Istio WorkloadEntry.ports).
	http, metrics := reviews.Ports[0], reviews.Ports[1]
	if got := reviews.Endpoints[0].TargetPort(http); got != 18080 {
		t.Errorf("ports map: got %d, want 18080", got)
	}
	if got := reviews.Endpoints[1].TargetPort(http); got != 8080 {
		t.Errorf("targetPort: got %d, want 8080", got)
	}
	if got := reviews.Endpoints[1].TargetPort(metrics); got != 9090 {
		t.Errorf("service port: got %d, want 9090", got)
	}

	// workloadSelector picks WorkloadEntries in the ServiceEntry's
	// namespace only.
	ratings := r.LookupAny("ratings.bookinfo.svc.cluster.local")
	if len(ratings.Endpoints) != 1 || ratings.Endpoints[0].Address != "10.0.1.1" || ratings.Endpoints[0].WorkloadEntry != "bookinfo/ratings-vm" {
		t.Errorf("ratings endpoints = %+v", ratings.Endpoints)
	}

	// DNS resolution without endpoints resolves the host itself.
	api := r.LookupAny("api.example.com")
	if len(api.Endpoints) != 1 || api.Endpoints[0].Address != "api.example.com" || !api.MeshExternal {
		t.Errorf("api = %+v", api)
	}
}

func TestLookupVisibility(t *testing.T) {
	r := build(t)
	tests := []struct{ client, want string }{
		{"team-a", "team-a"}, // its own, private one wins
		{"team-b", "team-b"},
		{"default", "team-b"}, // team-a's is not exported to default
	}
	for _, tc := range tests {
		s := r.Lookup("shared.example.com", tc.client)
		if s == nil || s.Namespace != tc.want {
			t.Errorf("Lookup from %s = %v, want the service in %s", tc.client, s, tc.want)
		}
	}
	if got := r.Match("*.example.com", "default"); len(got) != 3 {
		t.Errorf("Match(*.example.com) found %d services, want 3 (api, reviews-alias, shared)", len(got))
	}
}

func TestLabelsMatch(t *testing.T) {
	if !LabelsMatch(map[string]string{"version": "v1"}, map[string]string{"version": "v1", "app": "x"}) {
		t.Error("superset did not match")
	}
	if LabelsMatch(map[string]string{"version": "v1"}, map[string]string{"version": "v2"}) {
		t.Error("different value matched")
	}
	if !LabelsMatch(nil, map[string]string{"a": "b"}) {
		t.Error("empty selector must match everything")
	}
}
