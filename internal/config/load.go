package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// LoadOptions controls how manifests become resources.
type LoadOptions struct {
	// DefaultNamespace is given to resources without metadata.namespace.
	// Empty means "default".
	DefaultNamespace string
	// Cache, when set, keeps decoded documents between loads so that a
	// reload decodes only the documents whose bytes changed.
	Cache *DocCache
}

func (o LoadOptions) namespace() string {
	if o.DefaultNamespace == "" {
		return "default"
	}
	return o.DefaultNamespace
}

// ManifestExtensions are the file name endings read when a directory is
// walked.
var ManifestExtensions = []string{".yaml", ".yml", ".json"}

// ListFiles expands paths: a file stands for itself (whatever its name), a
// directory for every manifest below it, in lexical order.
func ListFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				// Skip hidden directories such as .git, but not the root itself.
				if path != p && strings.HasPrefix(name, ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasPrefix(name, ".") {
				return nil // editor swap files, .#locks
			}
			if isManifest(name) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

func isManifest(name string) bool {
	for _, ext := range ManifestExtensions {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// Load reads every manifest under paths and decodes the Istio networking
// resources in them. It never stops at the first problem: every finding is
// returned, and the Set holds every resource that decoded. A resource with a
// decode error is left out of the Set.
func Load(paths []string, opts LoadOptions) (*Set, Diagnostics) {
	files, err := ListFiles(paths)
	if err != nil {
		return &Set{}, Diagnostics{{File: pathOf(err), Severity: Error, Message: err.Error()}}
	}
	var l loader
	l.opts = opts
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			l.diags = append(l.diags, Diagnostic{File: f, Severity: Error, Message: err.Error()})
			continue
		}
		l.file(f, data)
	}
	return l.finish()
}

// LoadBytes decodes one manifest held in memory; name is used in messages.
func LoadBytes(name string, data []byte, opts LoadOptions) (*Set, Diagnostics) {
	var l loader
	l.opts = opts
	l.file(name, data)
	return l.finish()
}

func pathOf(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path
	}
	return ""
}

type loader struct {
	opts  LoadOptions
	set   Set
	diags Diagnostics
	seen  map[string]*Resource
	used  map[docKey][]decoded // cache entries this load used or made
	// broken are resources whose spec did not decode: they are not used,
	// but a later copy with the same name is still reported.
	broken []*Resource
	// keepLines keeps every resource's line map (see lazyLines).
	keepLines bool
}

func (l *loader) finish() (*Set, Diagnostics) {
	if c := l.opts.Cache; c != nil {
		c.replace(l.used)
	}
	return &l.set, l.diags
}

func (l *loader) errorf(file string, line int, format string, args ...any) {
	l.diags = append(l.diags, Diagnostic{File: file, Line: line, Severity: Error, Message: fmt.Sprintf(format, args...)})
}

// decoded is one resource, or one finding, of a document, with lines
// counted from the start of the document and no file name: the document
// may be cached and reused at another place.
type decoded struct {
	res    *Resource // nil for a finding about no resource
	broken bool      // res did not decode; it only reserves its name
	diag   Diagnostic
}

// file decodes a manifest file document by document. Each document is
// decoded on its own, so that a syntax error in one does not lose the
// others, and so that unchanged documents can come from the cache.
func (l *loader) file(name string, data []byte) {
	for _, doc := range splitDocuments(data) {
		key := docKey{sum: xxhash.Sum64(doc.data), size: len(doc.data), ns: l.opts.namespace()}
		out, ok := l.used[key]
		if !ok && l.opts.Cache != nil {
			out, ok = l.opts.Cache.get(key)
		}
		if !ok {
			out = l.decodeDocument(doc.data)
		}
		if l.opts.Cache != nil {
			if l.used == nil {
				l.used = map[docKey][]decoded{}
			}
			l.used[key] = out
		}
		l.place(name, doc.line-1, out)
	}
}

// decodeDocument decodes the objects of one YAML document (a "kind: List"
// gives several). Lines are relative to the document.
func (l *loader) decodeDocument(data []byte) []decoded {
	sub := &loader{opts: l.opts}
	sub.opts.Cache = nil
	sub.seen = nil
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			sub.errorf("", yamlErrorLine(err), "invalid YAML: %s", trimYAMLError(err))
			break // the decoder cannot resynchronise after a syntax error
		}
		if len(doc.Content) == 0 {
			continue // empty document, e.g. a trailing "---"
		}
		sub.object("", doc.Content[0], "")
	}
	out := make([]decoded, 0, len(sub.set.Resources)+len(sub.diags))
	// Findings come before the resource they are about in sub.diags;
	// keep every finding, then the resources that decoded cleanly.
	for _, d := range sub.diags {
		out = append(out, decoded{diag: d})
	}
	for _, r := range sub.set.Resources {
		if !l.keepLines {
			r.lines = nil
			r.lazy = &lazyLines{doc: data, ns: l.opts.namespace(), key: r.Key()}
		}
		out = append(out, decoded{res: r})
	}
	for _, r := range sub.broken {
		out = append(out, decoded{res: r, broken: true})
	}
	return out
}

// place adds a document's findings and resources to the load, at line
// offset base in file.
func (l *loader) place(file string, base int, out []decoded) {
	for _, d := range out {
		if d.res != nil {
			continue
		}
		diag := d.diag
		diag.File = file
		if diag.Line > 0 {
			diag.Line += base
		}
		l.diags = append(l.diags, diag)
	}
	for _, d := range out {
		if d.res == nil {
			continue
		}
		r := *d.res // the cached resource stays as decoded
		r.Pos = Position{File: file, Line: d.res.Pos.Line + base}
		r.lineBase = base
		r.Order = len(l.set.Resources) + len(l.diags)
		// Names are checked for duplicates even when the spec is broken,
		// so that a second copy of a broken resource is not silently used.
		if r.Name != "" {
			if prev, ok := l.seen[r.Key()]; ok {
				var diags Diagnostics
				NewReporter(&r, &diags).Errorf("metadata.name", "duplicate %s; first defined at %s:%d", r.Key(), prev.Pos.File, prev.Pos.Line)
				l.diags = append(l.diags, diags...)
				continue
			}
			if l.seen == nil {
				l.seen = map[string]*Resource{}
			}
			l.seen[r.Key()] = &r
		}
		if !d.broken {
			l.set.Resources = append(l.set.Resources, &r)
		}
	}
}

// object decodes one manifest object; listPath is set for items of a List.
func (l *loader) object(file string, n *yaml.Node, listPath string) {
	n = resolveAlias(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.errorf(file, n.Line, "%smanifest must be a mapping with apiVersion and kind, found %s", listPrefix(listPath), nodeKindName(n))
		return
	}
	fields := mappingFields(n)
	apiVersion := scalar(fields["apiVersion"])
	kind := scalar(fields["kind"])
	if kind == "" {
		l.errorf(file, n.Line, "%smissing kind", listPrefix(listPath))
		return
	}
	if kind == "List" || strings.HasSuffix(kind, "List") && apiVersion == "v1" {
		items := fields["items"]
		if items == nil {
			return
		}
		items = resolveAlias(items)
		if items.Kind != yaml.SequenceNode {
			l.errorf(file, items.Line, "%s.items: must be a list", kind)
			return
		}
		for i, it := range items.Content {
			l.object(file, it, fmt.Sprintf("items[%d]", i))
		}
		return
	}
	group, version, _ := strings.Cut(apiVersion, "/")
	if group != Group {
		l.diags = append(l.diags, Diagnostic{File: file, Line: n.Line, Kind: kind, Name: scalar(mappingFields(fields["metadata"])["name"]),
			Severity: Info, Message: fmt.Sprintf("skipping %s %s: not an Istio networking kind", apiVersion, kind)})
		return
	}
	msg := newSpec(Kind(kind))
	if msg == nil {
		l.diags = append(l.diags, Diagnostic{File: file, Line: n.Line, Kind: kind, Name: scalar(mappingFields(fields["metadata"])["name"]),
			Severity: Info, Message: fmt.Sprintf("skipping %s %s: michi does not use this kind", apiVersion, kind)})
		return
	}
	if !validVersion(version) {
		l.errorf(file, fieldLine(fields, "apiVersion", n), "%s: apiVersion %q is not served; use %s/%s", kind, apiVersion, Group, strings.Join(Versions, ", "+Group+"/"))
		return
	}
	r := &Resource{
		Kind:       Kind(kind),
		APIVersion: apiVersion,
		Pos:        Position{File: file, Line: n.Line},
		Order:      len(l.set.Resources) + len(l.diags), // unique and increasing
		lines:      map[string]int{},
	}
	var diags Diagnostics
	rep := NewReporter(r, &diags)

	// Name the resource before decoding anything, so that every finding,
	// including those about fields ahead of metadata, says which one.
	meta := mappingFields(fields["metadata"])
	r.Name = scalar(meta["name"])
	r.Namespace = scalar(meta["namespace"])
	if r.Namespace == "" {
		r.Namespace = l.opts.namespace()
	}

	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "apiVersion", "kind", "spec":
		case "metadata":
			l.metadata(r, rep, resolveAlias(v))
		case "status":
			// Written by controllers; carries nothing michi uses.
		default:
			r.lines[k.Value] = k.Line
			rep.Errorf(k.Value, "unknown field %q%s", k.Value, suggest(k.Value, []string{"apiVersion", "kind", "metadata", "spec", "status"}))
		}
	}
	if r.Name == "" {
		r.lines["metadata.name"] = n.Line
		rep.Errorf("metadata.name", "required")
	}
	if r.Namespace == "" {
		r.Namespace = l.opts.namespace()
	}
	if spec := fields["spec"]; spec != nil {
		r.lines["spec"] = spec.Line
		d := &decoder{res: r, rep: rep}
		if d.message(resolveAlias(spec), msg.ProtoReflect().Descriptor(), "spec", nil, msg) {
			// decoded
		}
	}
	r.Spec = msg
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		l.broken = append(l.broken, r)
		return
	}
	l.set.Resources = append(l.set.Resources, r)
}

func listPrefix(p string) string {
	if p == "" {
		return ""
	}
	return p + ": "
}

func validVersion(v string) bool {
	for _, ok := range Versions {
		if v == ok {
			return true
		}
	}
	return false
}

func newSpec(k Kind) proto.Message {
	switch k {
	case KindVirtualService:
		return &networking.VirtualService{}
	case KindDestinationRule:
		return &networking.DestinationRule{}
	case KindServiceEntry:
		return &networking.ServiceEntry{}
	case KindWorkloadEntry:
		return &networking.WorkloadEntry{}
	case KindGateway:
		return &networking.Gateway{}
	}
	return nil
}

// objectMetaFields are the Kubernetes ObjectMeta fields. Only name,
// namespace, labels, annotations and creationTimestamp mean anything to
// michi; the rest are accepted so that `kubectl get -o yaml` output loads.
var objectMetaFields = []string{
	"name", "namespace", "labels", "annotations", "creationTimestamp",
	"generateName", "selfLink", "uid", "resourceVersion", "generation",
	"deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences",
	"finalizers", "managedFields",
}

func (l *loader) metadata(r *Resource, rep *Reporter, n *yaml.Node) {
	r.lines["metadata"] = n.Line
	if n.Kind != yaml.MappingNode {
		rep.Errorf("metadata", "must be a mapping, found %s", nodeKindName(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		path := "metadata." + k.Value
		r.lines[path] = k.Line
		switch k.Value {
		case "name":
			r.Name = scalar(v)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!str" && r.Name != "" {
				rep.Errorf(path, "must be a string")
			}
		case "namespace":
			r.Namespace = scalar(v)
		case "labels", "annotations":
			m, ok := stringMap(v)
			if !ok {
				rep.Errorf(path, "must be a map of strings to strings")
				continue
			}
			if k.Value == "labels" {
				r.Labels = m
			} else {
				r.Annotations = m
			}
		case "creationTimestamp":
			s := scalar(v)
			if s == "" || v.Tag == "!!null" {
				continue
			}
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				rep.Errorf(path, "invalid timestamp %q: want RFC 3339, like 2024-05-01T10:00:00Z", s)
				continue
			}
			r.CreationTimestamp = t
		default:
			known := false
			for _, f := range objectMetaFields {
				if f == k.Value {
					known = true
				}
			}
			if !known {
				rep.Errorf(path, "unknown field %q%s", k.Value, suggest(k.Value, objectMetaFields))
			}
		}
	}
}

func stringMap(n *yaml.Node) (map[string]string, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		return nil, false
	}
	m := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		v := resolveAlias(n.Content[i+1])
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
			return nil, false
		}
		m[n.Content[i].Value] = v.Value
	}
	return m, true
}

func mappingFields(n *yaml.Node) map[string]*yaml.Node {
	m := map[string]*yaml.Node{}
	if n == nil {
		return m
	}
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		return m
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = n.Content[i+1]
	}
	return m
}

func fieldLine(fields map[string]*yaml.Node, name string, fallback *yaml.Node) int {
	if n := fields[name]; n != nil {
		return n.Line
	}
	return fallback.Line
}

func scalar(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		}
		return fmt.Sprintf("a string (%q)", n.Value)
	}
	return "an unexpected node"
}

func yamlErrorLine(err error) int {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	// go-yaml reports "yaml: line N: ..."
	if i := strings.Index(msg, "line "); i >= 0 {
		var line int
		if _, err := fmt.Sscanf(msg[i:], "line %d", &line); err == nil {
			return line
		}
	}
	return 0
}

func trimYAMLError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if i := strings.Index(msg, "line "); i == 0 {
		if j := strings.Index(msg, ": "); j > 0 {
			return msg[j+2:]
		}
	}
	return msg
}
