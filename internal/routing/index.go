package routing

import "strings"

// routeIndex finds the first matching route without testing every route.
//
// Istio's semantics are "first match wins" over an ordered list, so the
// index never reorders: it narrows the list to the routes whose path
// condition can hold (exact paths by hash, prefixes by a radix tree walk
// along the request path) plus the routes it cannot index (regex and
// path-less matches), and evaluates those candidates in their original
// order. A host with 1,000 path rules costs a hash lookup and a walk of the
// path's length, not 1,000 comparisons.
type routeIndex struct {
	exact    map[string][]int32
	exactCI  map[string][]int32 // keys lower-cased (ignoreUriCase)
	prefix   *radixNode
	prefixCI *radixNode // lower-cased
	others   []int32
}

func newRouteIndex(routes []*Route) *routeIndex {
	ix := &routeIndex{}
	for i, rt := range routes {
		id := int32(i)
		m := &rt.Match
		switch {
		case m.PathKind == PathExact && !m.Path.IgnoreCase:
			if ix.exact == nil {
				ix.exact = map[string][]int32{}
			}
			ix.exact[m.Path.Value] = append(ix.exact[m.Path.Value], id)
		case m.PathKind == PathExact:
			if ix.exactCI == nil {
				ix.exactCI = map[string][]int32{}
			}
			ix.exactCI[m.Path.Value] = append(ix.exactCI[m.Path.Value], id)
		case m.PathKind == PathPrefix && !m.Path.IgnoreCase:
			if ix.prefix == nil {
				ix.prefix = &radixNode{}
			}
			ix.prefix.insert(m.Path.Value, id)
		case m.PathKind == PathPrefix:
			if ix.prefixCI == nil {
				ix.prefixCI = &radixNode{}
			}
			ix.prefixCI.insert(m.Path.Value, id)
		default:
			ix.others = append(ix.others, id)
		}
	}
	return ix
}

// maxCandidateLists bounds the lists merged on the stack; a path that
// meets more prefix nodes than this falls back to a scan.
const maxCandidateLists = 32

// first returns the index of the first route that matches r, or -1.
func (ix *routeIndex) first(routes []*Route, r *Request) int {
	var buf [maxCandidateLists][]int32
	lists := buf[:0]
	add := func(l []int32) bool {
		if len(l) == 0 {
			return true
		}
		if len(lists) == cap(lists) {
			return false
		}
		lists = append(lists, l)
		return true
	}
	path := r.Path
	ok := true
	if ix.exact != nil {
		ok = add(ix.exact[path])
	}
	if ix.exactCI != nil {
		ok = ok && add(ix.exactCI[lowerASCII(path)])
	}
	if ix.prefix != nil && ok {
		ok = ix.prefix.walk(path, false, add)
	}
	if ix.prefixCI != nil && ok {
		ok = ix.prefixCI.walk(path, true, add)
	}
	ok = ok && add(ix.others)
	if !ok {
		for i, rt := range routes {
			if rt.Match.Matches(r) {
				return i
			}
		}
		return -1
	}
	// Merge the sorted candidate lists, lowest route index first.
	for {
		best := -1
		var bestID int32
		for li, l := range lists {
			if len(l) > 0 && (best < 0 || l[0] < bestID) {
				best, bestID = li, l[0]
			}
		}
		if best < 0 {
			return -1
		}
		lists[best] = lists[best][1:]
		if routes[bestID].Match.Matches(r) {
			return int(bestID)
		}
	}
}

// radixNode is a compressed prefix tree over route path prefixes.
type radixNode struct {
	label    string // edge label leading to this node
	children []*radixNode
	routes   []int32 // routes whose prefix ends exactly here
}

func (n *radixNode) insert(key string, id int32) {
	for {
		if key == "" {
			n.routes = append(n.routes, id)
			return
		}
		var child *radixNode
		for _, c := range n.children {
			if c.label[0] == key[0] {
				child = c
				break
			}
		}
		if child == nil {
			n.children = append(n.children, &radixNode{label: key, routes: []int32{id}})
			return
		}
		common := commonPrefixLen(child.label, key)
		if common < len(child.label) {
			// Split the edge: child becomes a grandchild under the common part.
			split := &radixNode{label: child.label[:common], children: []*radixNode{child}}
			child.label = child.label[common:]
			for i, c := range n.children {
				if c == child {
					n.children[i] = split
				}
			}
			child = split
		}
		n = child
		key = key[common:]
	}
}

func commonPrefixLen(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// walk calls add with the routes of every node whose prefix is a prefix of
// path, shortest first. With fold, labels (stored lower-case) are compared
// case-insensitively. It returns false if add refused a list.
func (n *radixNode) walk(path string, fold bool, add func([]int32) bool) bool {
	if !add(n.routes) {
		return false
	}
	for path != "" {
		var next *radixNode
		c0 := path[0]
		if fold && c0 >= 'A' && c0 <= 'Z' {
			c0 += 'a' - 'A'
		}
		for _, c := range n.children {
			if c.label[0] == c0 {
				next = c
				break
			}
		}
		if next == nil || len(path) < len(next.label) {
			return true
		}
		if fold {
			if !strings.EqualFold(path[:len(next.label)], next.label) {
				return true
			}
		} else if path[:len(next.label)] != next.label {
			return true
		}
		if !add(next.routes) {
			return false
		}
		path = path[len(next.label):]
		n = next
	}
	return true
}
