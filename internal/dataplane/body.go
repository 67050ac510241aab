package dataplane

import (
	"io"
	"sync"
)

// replayBody lets a streamed request body be sent more than once, for
// retries and mirrors, without buffering it up front: each try reads the
// bytes earlier tries already pulled from the client, then continues from
// the client. At most limit bytes are kept; past that the body streams on
// but can no longer be replayed, and the request is not retried, as in
// Envoy when a request exceeds the buffer limit.
type replayBody struct {
	src   io.ReadCloser
	limit int

	mu       sync.Mutex
	buf      []byte
	overflow bool  // more than limit bytes were read; no replay possible
	srcErr   error // io.EOF once the client's body is complete
	current  *tryBody
}

func newReplayBody(src io.ReadCloser, limit int) *replayBody {
	return &replayBody{src: src, limit: limit}
}

// replayable reports whether another try could send the whole body.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow
}

// complete reports whether the whole body has been read and kept, so it
// can be copied for a mirror.
func (b *replayBody) complete() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf, !b.overflow && b.srcErr == io.EOF
}

// newTry returns the body for the next try. The previous try's body must
// have been closed (the transport always closes it, maybe asynchronously),
// so that two tries never read the client's body at once; wait bounds how
// long to wait for that.
func (b *replayBody) newTry(wait func(<-chan struct{}) bool) (*tryBody, bool) {
	b.mu.Lock()
	prev := b.current
	b.mu.Unlock()
	if prev != nil && !wait(prev.closed) {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overflow {
		return nil, false
	}
	t := &tryBody{b: b, closed: make(chan struct{})}
	b.current = t
	return t, true
}

// tryBody is the request body of one try.
type tryBody struct {
	b         *replayBody
	pos       int
	closeOnce sync.Once
	closed    chan struct{}
}

func (t *tryBody) Read(p []byte) (int, error) {
	b := t.b
	b.mu.Lock()
	if t.pos < len(b.buf) {
		n := copy(p, b.buf[t.pos:])
		t.pos += n
		b.mu.Unlock()
		return n, nil
	}
	if err := b.srcErr; err != nil {
		b.mu.Unlock()
		return 0, err
	}
	b.mu.Unlock()
	// Only one try reads at a time (newTry waits for the previous one to
	// be closed), so the client's body is read without the lock and a
	// slow client never blocks replayable or complete.
	n, err := b.src.Read(p)
	b.mu.Lock()
	if n > 0 {
		if !b.overflow && len(b.buf)+n <= b.limit {
			b.buf = append(b.buf, p[:n]...)
			t.pos += n
		} else {
			b.overflow = true
			b.buf = nil
		}
	}
	if err != nil {
		b.srcErr = err
	}
	b.mu.Unlock()
	return n, err
}

func (t *tryBody) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return nil
}
