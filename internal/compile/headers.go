package compile

import (
	"net/textproto"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/michi-mesh/michi/internal/routing"
)

// headerOps translates Istio header operations (istio route.go
// TranslateHeadersOperations). Names are canonicalised and each list is
// sorted by name. Pseudo headers and Host cannot be set, added or removed;
// setting or adding Host or :authority on the request instead becomes a
// host rewrite, the value from set winning over add.
func headerOps(h *networking.Headers) routing.HeaderOps {
	var out routing.HeaderOps
	if h == nil {
		return out
	}
	req, resp := h.GetRequest(), h.GetResponse()
	var setAuthority, addAuthority string
	out.RequestSet, setAuthority = headerList(req.GetSet())
	out.RequestAdd, addAuthority = headerList(req.GetAdd())
	out.RequestRemove = removeList(req.GetRemove())
	out.ResponseSet, _ = headerList(resp.GetSet())
	out.ResponseAdd, _ = headerList(resp.GetAdd())
	out.ResponseRemove = removeList(resp.GetRemove())
	out.HostRewrite = addAuthority
	if setAuthority != "" {
		out.HostRewrite = setAuthority
	}
	return out
}

// headerList returns the settable headers of m sorted by canonical name,
// and the value given for the authority, if any.
func headerList(m map[string]string) ([]routing.Header, string) {
	var out []routing.Header
	authority := ""
	// Iterate in key order so that the result does not depend on map order
	// when two keys differ only in case.
	for _, k := range sortedKeys(m) {
		if isAuthorityHeader(k) {
			authority = m[k]
		}
		if isInternalHeader(k) {
			continue
		}
		out = append(out, routing.Header{Name: textproto.CanonicalMIMEHeaderKey(k), Value: m[k]})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, authority
}

func removeList(names []string) []string {
	var out []string
	for _, n := range names {
		if isInternalHeader(n) {
			continue
		}
		out = append(out, textproto.CanonicalMIMEHeaderKey(n))
	}
	sort.Strings(out)
	return out
}

// isInternalHeader reports headers a route cannot touch directly: pseudo
// headers and Host.
func isInternalHeader(name string) bool {
	return strings.HasPrefix(name, ":") || strings.EqualFold(name, "host")
}

func isAuthorityHeader(name string) bool {
	return strings.EqualFold(name, ":authority") || strings.EqualFold(name, "host")
}
