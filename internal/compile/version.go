package compile

import (
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math"
	"reflect"
	"sort"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/michi-mesh/michi/internal/routing"
)

// tableVersion is a short hash of the table's content, so that two
// compilations of the same configuration carry the same version and the
// engine can skip publishing an identical table. It hashes a compact
// binary walk of the table rather than its JSON form: on a 10,000-service
// mesh the JSON is tens of megabytes and encoding it took longer than
// compiling. xxhash keeps the hashing itself a small part of the walk.
func tableVersion(t *routing.Table) string {
	w := contentHasher{h: xxhash.New(), buf: make([]byte, 0, 64<<10)}
	w.value(reflect.ValueOf(t))
	w.flush()
	return hex.EncodeToString(w.h.Sum(nil))
}

// contentHasher feeds a deterministic, unambiguous encoding of a value to
// a hash: exported struct fields in declaration order, map entries in key
// order, and lengths and nil markers so that distinct values never encode
// alike. Unexported fields (compiled regexes, lookup indexes) are derived
// from exported ones and are skipped.
//
// Writes go through a buffer: hashing many small writes directly costs
// more than the walk itself.
type contentHasher struct {
	h   hash.Hash64
	buf []byte
}

func (w *contentHasher) uint(v uint64) {
	w.buf = binary.LittleEndian.AppendUint64(w.buf, v)
	w.maybeFlush()
}

func (w *contentHasher) bytes(b string) {
	w.uint(uint64(len(b)))
	w.buf = append(w.buf, b...)
	w.maybeFlush()
}

func (w *contentHasher) maybeFlush() {
	if len(w.buf) >= cap(w.buf)/2 {
		w.flush()
	}
}

func (w *contentHasher) flush() {
	w.h.Write(w.buf)
	w.buf = w.buf[:0]
}

func (w *contentHasher) value(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			w.uint(0)
			return
		}
		w.uint(1)
		w.value(v.Elem())
	case reflect.Struct:
		for _, i := range exportedFields(v.Type()) {
			w.value(v.Field(i))
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			w.bytes(string(v.Bytes()))
			return
		}
		w.uint(uint64(v.Len()))
		for i := 0; i < v.Len(); i++ {
			w.value(v.Index(i))
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return lessKey(keys[i], keys[j]) })
		w.uint(uint64(len(keys)))
		for _, k := range keys {
			w.value(k)
			w.value(v.MapIndex(k))
		}
	case reflect.String:
		w.bytes(v.String())
	case reflect.Bool:
		if v.Bool() {
			w.uint(1)
		} else {
			w.uint(0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		w.uint(uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		w.uint(v.Uint())
	case reflect.Float32, reflect.Float64:
		w.uint(math.Float64bits(v.Float()))
	}
}

// lessKey orders map keys of the kinds the table uses: strings and
// integers.
func lessKey(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.String:
		return a.String() < b.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() < b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() < b.Uint()
	}
	return false
}

var fieldCache sync.Map // reflect.Type -> []int

// exportedFields lists the indexes of a struct type's exported fields.
func exportedFields(t reflect.Type) []int {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]int)
	}
	var idx []int
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).IsExported() {
			idx = append(idx, i)
		}
	}
	fieldCache.Store(t, idx)
	return idx
}
