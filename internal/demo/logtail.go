package demo

import (
	"bytes"
	"strings"
	"sync"
)

// LogTail is an io.Writer that keeps the last lines written to it, for the
// live summary to show the proxy's log without letting it scroll the
// screen. It is safe for concurrent use; a nil *LogTail holds nothing.
type LogTail struct {
	mu      sync.Mutex
	max     int
	lines   []string
	partial []byte
}

// NewLogTail keeps the last n lines.
func NewLogTail(n int) *LogTail { return &LogTail{max: n} }

// Write appends p, which need not end a line.
func (t *LogTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.partial[:i]))
		t.partial = t.partial[i+1:]
	}
	if over := len(t.lines) - t.max; over > 0 {
		t.lines = append(t.lines[:0], t.lines[over:]...)
	}
	return len(p), nil
}

// Lines returns the kept lines, oldest first.
func (t *LogTail) Lines() []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, len(t.lines))
	for i, l := range t.lines {
		out[i] = strings.TrimRight(l, "\r")
	}
	return out
}
