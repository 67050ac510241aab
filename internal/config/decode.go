package config

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// decoder turns a YAML spec into an istio.io/api message.
//
// It walks the YAML nodes alongside the message descriptor, so that every
// problem is reported with its field path and line, and produces canonical
// protojson input that protojson then decodes strictly. Two things differ
// from plain protojson, both to match what Istio accepts:
//
//   - Durations use Go syntax ("3m", "1h30m", "1500ms", "0.5s"). Istio's CRD
//     decoder (golang/protobuf jsonpb) parses them with time.ParseDuration;
//     protojson alone accepts only "180s".
//   - Field names may be the JSON (camelCase) or the proto (snake_case) name,
//     as jsonpb allows.
//
// Everything else Istio rejects stays an error: unknown fields, wrong types,
// unknown enum names, two members of one oneof.
type decoder struct {
	res *Resource
	rep *Reporter
	// values counts the YAML values decoded so far, aliases expanded.
	values int
}

// maxSpecValues bounds how many values one spec may hold once YAML
// aliases are expanded. Without a bound, a few kilobytes that name the
// same subtree through nested aliases expand exponentially ("billion
// laughs") and stall the loader. Real specs are far smaller: a
// ServiceEntry with the API's maximum of 4096 endpoints holds about 50k.
const maxSpecValues = 1 << 17

// count records one more decoded value and reports whether the spec is
// still within maxSpecValues.
func (d *decoder) count(path string, n *yaml.Node) bool {
	d.values++
	if d.values == maxSpecValues+1 {
		d.errorf(path, n, "the spec holds more than %d values once YAML aliases are expanded; use fewer aliases", maxSpecValues)
	}
	return d.values <= maxSpecValues
}

type frame struct {
	md   protoreflect.MessageDescriptor
	path string
}

func (d *decoder) errorf(path string, n *yaml.Node, format string, args ...any) {
	if _, ok := d.res.lines[path]; !ok && n != nil {
		d.res.lines[path] = n.Line
	}
	d.rep.Errorf(path, format, args...)
}

// message decodes n into msg. It reports whether decoding succeeded.
func (d *decoder) message(n *yaml.Node, md protoreflect.MessageDescriptor, path string, ancestors []frame, msg proto.Message) bool {
	before := len(*d.rep.diags)
	v, ok := d.messageValue(n, md, path, ancestors)
	if !ok || len(*d.rep.diags) > before && diagsHaveErrors((*d.rep.diags)[before:]) {
		return false
	}
	if v == nil {
		return true
	}
	data, err := json.Marshal(v)
	if err != nil {
		d.errorf(path, n, "internal error encoding: %v", err)
		return false
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, msg); err != nil {
		// The walk above should have caught everything protojson rejects;
		// this is the backstop, reported against the whole spec.
		d.errorf(path, n, "%v", err)
		return false
	}
	return true
}

func diagsHaveErrors(ds Diagnostics) bool { return ds.HasErrors() }

func (d *decoder) messageValue(n *yaml.Node, md protoreflect.MessageDescriptor, path string, ancestors []frame) (any, bool) {
	n = resolveAlias(n)
	if isNull(n) {
		return nil, true
	}
	switch md.FullName() {
	case "google.protobuf.Duration":
		return d.duration(n, path)
	case "google.protobuf.BoolValue":
		return d.scalarValue(n, protoreflect.BoolKind, nil, path)
	case "google.protobuf.UInt32Value":
		return d.scalarValue(n, protoreflect.Uint32Kind, nil, path)
	case "google.protobuf.UInt64Value":
		return d.scalarValue(n, protoreflect.Uint64Kind, nil, path)
	case "google.protobuf.Int32Value":
		return d.scalarValue(n, protoreflect.Int32Kind, nil, path)
	case "google.protobuf.Int64Value":
		return d.scalarValue(n, protoreflect.Int64Kind, nil, path)
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
		return d.scalarValue(n, protoreflect.DoubleKind, nil, path)
	case "google.protobuf.StringValue":
		return d.scalarValue(n, protoreflect.StringKind, nil, path)
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue":
		return d.anyJSON(n, path)
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(path, n, "must be a mapping (%s), found %s", md.Name(), nodeKindName(n))
		return nil, false
	}
	out := map[string]any{}
	oneofs := map[protoreflect.FullName]string{}
	fields := md.Fields()
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		fd := fields.ByJSONName(name)
		if fd == nil {
			fd = fields.ByTextName(name)
		}
		fpath := joinPath(path, jsonName(fd, name))
		d.res.lines[fpath] = k.Line
		if fd == nil {
			d.errorf(fpath, k, "unknown field %q in %s%s", name, md.Name(), d.hint(name, md, ancestors))
			ok = false
			continue
		}
		if _, dup := out[fd.JSONName()]; dup {
			d.errorf(fpath, k, "field %q is set twice", fd.JSONName())
			ok = false
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, taken := oneofs[od.FullName()]; taken {
				d.errorf(fpath, k, "only one of %s may be set; %q is already set", oneofMembers(od), other)
				ok = false
				continue
			}
			oneofs[od.FullName()] = fd.JSONName()
		}
		val, fok := d.fieldValue(v, fd, fpath, append(ancestors, frame{md: md, path: path}))
		if !fok {
			ok = false
			continue
		}
		if val != nil {
			out[fd.JSONName()] = val
		}
	}
	return out, ok
}

func jsonName(fd protoreflect.FieldDescriptor, fallback string) string {
	if fd == nil {
		return fallback
	}
	return fd.JSONName()
}

func oneofMembers(od protoreflect.OneofDescriptor) string {
	var names []string
	for i := 0; i < od.Fields().Len(); i++ {
		names = append(names, od.Fields().Get(i).JSONName())
	}
	return strings.Join(names, ", ")
}

// hint explains an unknown field: a near-miss spelling in this message, or
// the same name in an enclosing message (the usual sign of YAML indented one
// level too deep, as in istio/istio#17438).
func (d *decoder) hint(name string, md protoreflect.MessageDescriptor, ancestors []frame) string {
	if s := suggest(name, fieldNames(md)); s != "" {
		return s
	}
	for i := len(ancestors) - 1; i >= 0; i-- {
		a := ancestors[i]
		fs := a.md.Fields()
		if fd := fs.ByJSONName(name); fd != nil || fs.ByTextName(name) != nil {
			where := a.path
			return fmt.Sprintf("; %q is a field of %s (%s): check the indentation", name, a.md.Name(), where)
		}
	}
	// A field of a child message written one level too high.
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		fd := fs.Get(i)
		if fd.Message() == nil || fd.IsMap() {
			continue
		}
		cf := fd.Message().Fields()
		if cf.ByJSONName(name) != nil || cf.ByTextName(name) != nil {
			return fmt.Sprintf("; %q is a field of %s: did you mean to put it under %q?", name, fd.Message().Name(), fd.JSONName())
		}
	}
	return ""
}

func fieldNames(md protoreflect.MessageDescriptor) []string {
	fs := md.Fields()
	names := make([]string, 0, fs.Len())
	for i := 0; i < fs.Len(); i++ {
		names = append(names, fs.Get(i).JSONName())
	}
	return names
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (d *decoder) fieldValue(n *yaml.Node, fd protoreflect.FieldDescriptor, path string, ancestors []frame) (any, bool) {
	n = resolveAlias(n)
	if isNull(n) {
		return nil, true
	}
	switch {
	case fd.IsMap():
		if n.Kind != yaml.MappingNode {
			d.errorf(path, n, "must be a map, found %s", nodeKindName(n))
			return nil, false
		}
		out := map[string]any{}
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kpath := path + "[" + strconv.Quote(k.Value) + "]"
			if isSimpleKey(k.Value) {
				kpath = path + "." + k.Value
			}
			d.res.lines[kpath] = k.Line
			if _, err := d.mapKey(k, fd.MapKey().Kind()); err != nil {
				d.errorf(kpath, k, "invalid key %q: %v", k.Value, err)
				ok = false
				continue
			}
			val, vok := d.singular(v, fd.MapValue(), kpath, ancestors)
			if !vok {
				ok = false
				continue
			}
			if val == nil {
				// protojson rejects null map values; an empty message is
				// what `{}` would give.
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					val = map[string]any{}
				} else {
					d.errorf(kpath, v, "must not be null")
					ok = false
					continue
				}
			}
			out[k.Value] = val
		}
		return out, ok
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			d.errorf(path, n, "must be a list, found %s", nodeKindName(n))
			return nil, false
		}
		out := make([]any, 0, len(n.Content))
		ok := true
		for i, item := range n.Content {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			d.res.lines[ipath] = item.Line
			val, iok := d.singular(item, fd, ipath, ancestors)
			if !iok {
				ok = false
				continue
			}
			if val == nil {
				d.errorf(ipath, item, "list items must not be null")
				ok = false
				continue
			}
			out = append(out, val)
		}
		return out, ok
	}
	return d.singular(n, fd, path, ancestors)
}

func isSimpleKey(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (d *decoder) singular(n *yaml.Node, fd protoreflect.FieldDescriptor, path string, ancestors []frame) (any, bool) {
	n = resolveAlias(n)
	if isNull(n) {
		return nil, true
	}
	if !d.count(path, n) {
		return nil, false
	}
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return d.messageValue(n, fd.Message(), path, ancestors)
	}
	return d.scalarValue(n, fd.Kind(), fd.Enum(), path)
}

func (d *decoder) mapKey(k *yaml.Node, kind protoreflect.Kind) (any, error) {
	switch kind {
	case protoreflect.StringKind:
		return k.Value, nil
	case protoreflect.BoolKind:
		return strconv.ParseBool(k.Value)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.ParseInt(k.Value, 10, 32)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.ParseUint(k.Value, 10, 32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.ParseInt(k.Value, 10, 64)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.ParseUint(k.Value, 10, 64)
	}
	return nil, fmt.Errorf("unsupported key kind %s", kind)
}

// scalarValue checks a YAML scalar against a proto scalar kind and returns
// its canonical protojson form. YAML's own typing decides what the value
// is, as it does when Kubernetes converts a manifest to JSON: `1` is a
// number, `"1"` a string, `true` a boolean.
func (d *decoder) scalarValue(n *yaml.Node, kind protoreflect.Kind, ed protoreflect.EnumDescriptor, path string) (any, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(path, n, "must be %s, found %s", kindName(kind, ed), nodeKindName(n))
		return nil, false
	}
	bad := func() (any, bool) {
		d.errorf(path, n, "must be %s, found %s", kindName(kind, ed), nodeKindName(n))
		return nil, false
	}
	switch kind {
	case protoreflect.StringKind:
		if n.Tag != "!!str" {
			return bad()
		}
		return n.Value, true
	case protoreflect.BytesKind:
		if n.Tag != "!!str" && n.Tag != "!!binary" {
			return bad()
		}
		if _, err := base64.StdEncoding.DecodeString(n.Value); err != nil {
			if _, err2 := base64.URLEncoding.DecodeString(n.Value); err2 != nil {
				d.errorf(path, n, "must be base64-encoded bytes: %v", err)
				return nil, false
			}
		}
		return n.Value, true
	case protoreflect.BoolKind:
		if n.Tag != "!!bool" {
			return bad()
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			return bad()
		}
		return b, true
	case protoreflect.EnumKind:
		if n.Tag == "!!int" {
			i, err := strconv.ParseInt(n.Value, 0, 32)
			if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(i)) == nil {
				d.errorf(path, n, "unknown %s value %s; valid values: %s", ed.Name(), n.Value, enumNames(ed))
				return nil, false
			}
			return i, true
		}
		if n.Tag != "!!str" {
			return bad()
		}
		if ed.Values().ByName(protoreflect.Name(n.Value)) == nil {
			d.errorf(path, n, "unknown %s value %q%s; valid values: %s", ed.Name(), n.Value, suggest(n.Value, enumNameList(ed)), enumNames(ed))
			return nil, false
		}
		return n.Value, true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		bits := 64
		if kind == protoreflect.Int32Kind || kind == protoreflect.Sint32Kind || kind == protoreflect.Sfixed32Kind {
			bits = 32
		}
		if n.Tag != "!!int" && n.Tag != "!!str" {
			return bad()
		}
		i, err := strconv.ParseInt(n.Value, 10, bits)
		if err != nil {
			d.errorf(path, n, "must be an integer that fits in %d bits, found %q", bits, n.Value)
			return nil, false
		}
		return i, true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		bits := 64
		if kind == protoreflect.Uint32Kind || kind == protoreflect.Fixed32Kind {
			bits = 32
		}
		if n.Tag != "!!int" && n.Tag != "!!str" {
			return bad()
		}
		u, err := strconv.ParseUint(n.Value, 10, bits)
		if err != nil {
			if strings.HasPrefix(n.Value, "-") {
				d.errorf(path, n, "must not be negative, found %s", n.Value)
			} else {
				d.errorf(path, n, "must be a non-negative integer that fits in %d bits, found %q", bits, n.Value)
			}
			return nil, false
		}
		return u, true
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		if n.Tag != "!!int" && n.Tag != "!!float" && n.Tag != "!!str" {
			return bad()
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(path, n, "must be a finite number, found %q", n.Value)
			return nil, false
		}
		return f, true
	}
	d.errorf(path, n, "unsupported field kind %s", kind)
	return nil, false
}

// duration accepts what Istio's decoder accepts: Go duration syntax.
func (d *decoder) duration(n *yaml.Node, path string) (any, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.errorf(path, n, "must be a duration string such as \"1.5s\", \"300ms\" or \"3m\", found %s", nodeKindName(n))
		return nil, false
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(path, n, "invalid duration %q: use a number with a unit (ms, s, m, h), such as \"1.5s\", \"300ms\" or \"3m\"", n.Value)
		return nil, false
	}
	return formatProtoDuration(dur), true
}

// formatProtoDuration renders d the way protojson reads it: seconds with up
// to nine fractional digits and an "s" suffix.
func formatProtoDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign = "-"
		d = -d
	}
	secs := int64(d / time.Second)
	nanos := int64(d % time.Second)
	if nanos == 0 {
		return fmt.Sprintf("%s%ds", sign, secs)
	}
	frac := strings.TrimRight(fmt.Sprintf("%09d", nanos), "0")
	return fmt.Sprintf("%s%d.%ss", sign, secs, frac)
}

func (d *decoder) anyJSON(n *yaml.Node, path string) (any, bool) {
	var v any
	if err := n.Decode(&v); err != nil {
		d.errorf(path, n, "%v", err)
		return nil, false
	}
	return v, true
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(kind protoreflect.Kind, ed protoreflect.EnumDescriptor) string {
	switch kind {
	case protoreflect.StringKind:
		return "a string"
	case protoreflect.BytesKind:
		return "base64-encoded bytes"
	case protoreflect.BoolKind:
		return "a boolean"
	case protoreflect.EnumKind:
		return "one of " + enumNames(ed)
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		return "a number"
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		return "a non-negative integer"
	}
	return "an integer"
}

func enumNameList(ed protoreflect.EnumDescriptor) []string {
	var names []string
	for i := 0; i < ed.Values().Len(); i++ {
		names = append(names, string(ed.Values().Get(i).Name()))
	}
	return names
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	return strings.Join(enumNameList(ed), ", ")
}
