package config

import (
	"bytes"
	"sync"
)

// lazyLines holds what it takes to find a resource's field lines again:
// its document's bytes. A line map costs more memory than the resource it
// describes, and lines are only needed when something is reported, so a
// resource that decoded cleanly keeps the bytes instead and decodes them
// again on the first Line call.
type lazyLines struct {
	doc  []byte
	ns   string
	key  string // the resource's Key, to find it among the document's
	once sync.Once
	m    map[string]int
}

func (z *lazyLines) get() map[string]int {
	z.once.Do(func() {
		sub := &loader{opts: LoadOptions{DefaultNamespace: z.ns}, keepLines: true}
		for _, d := range sub.decodeDocument(z.doc) {
			if d.res != nil && d.res.Key() == z.key {
				z.m = d.res.lines
				return
			}
		}
	})
	return z.m
}

// DocCache remembers decoded YAML documents between loads of a
// configuration. A reload then decodes only the documents whose bytes
// changed: editing one VirtualService in a file of 10,000 resources costs
// one document, not the whole file. Entries a load does not use are
// dropped, so the cache holds no more than the current configuration.
// It is safe for concurrent use.
type DocCache struct {
	mu   sync.Mutex
	docs map[docKey][]decoded
}

// docKey identifies a document by its bytes and the namespace given to
// resources without one.
type docKey struct {
	sum  uint64
	size int
	ns   string
}

func (c *DocCache) get(k docKey) ([]decoded, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.docs[k]
	return d, ok
}

// replace makes used the cache's whole content.
func (c *DocCache) replace(used map[docKey][]decoded) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.docs = used
}

// document is one YAML document of a file and the line it starts on.
type document struct {
	data []byte
	line int // 1-based
}

// splitDocuments cuts a YAML stream into its documents at "---" marker
// lines. The YAML spec forbids a line starting with "---" followed by a
// space or the line's end inside any scalar (c-forbidden), so a textual
// cut is exact. Directives ("%YAML") before a marker stay with the
// document that follows them.
func splitDocuments(data []byte) []document {
	var docs []document
	start, startLine := 0, 1
	line := 1
	onlyDirectives := true // the current chunk holds only directives, comments and blanks
	for pos := 0; pos < len(data); {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		l := data[pos:next]
		if isDocumentStart(l) && pos > start && !onlyDirectives {
			docs = append(docs, document{data: data[start:pos], line: startLine})
			start, startLine = pos, line
			onlyDirectives = true
		}
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' && t[0] != '%' && !isDocumentStart(l) {
			onlyDirectives = false
		}
		pos = next
		line++
	}
	if start < len(data) {
		docs = append(docs, document{data: data[start:], line: startLine})
	}
	return docs
}

// isDocumentStart reports a "---" marker line.
func isDocumentStart(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	rest := l[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r'
}
