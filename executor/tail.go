package executor

import (
	"io"
	"sync"
)

// TailBuffer is an io.Writer that keeps only the last Cap bytes written to it
// and counts every byte, so that a task's stdout or stderr can be capped
// without losing its size. The zero value keeps nothing; use NewTailBuffer.
// It is safe for concurrent use.
type TailBuffer struct {
	mu    sync.Mutex
	cap   int
	buf   []byte // ring of at most cap bytes
	start int    // index of the oldest byte once buf is full
	total int64
}

// NewTailBuffer returns a TailBuffer keeping the last capBytes bytes;
// capBytes <= 0 means DefaultOutputCap.
func NewTailBuffer(capBytes int64) *TailBuffer {
	if capBytes <= 0 {
		capBytes = DefaultOutputCap
	}
	return &TailBuffer{cap: int(capBytes)}
}

// Write keeps the tail of p and always reports len(p) written.
func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.total += int64(n)
	if t.cap == 0 {
		return n, nil
	}
	if n >= t.cap {
		// p alone fills the buffer: keep its last cap bytes.
		if cap(t.buf) < t.cap {
			t.buf = make([]byte, t.cap)
		}
		t.buf = t.buf[:t.cap]
		copy(t.buf, p[n-t.cap:])
		t.start = 0
		return n, nil
	}
	if free := t.cap - len(t.buf); free > 0 {
		// Still filling up: append what fits.
		k := min(free, len(p))
		t.buf = append(t.buf, p[:k]...)
		p = p[k:]
	}
	// Full: overwrite the oldest bytes, wrapping around.
	for len(p) > 0 {
		k := copy(t.buf[t.start:], p)
		p = p[k:]
		t.start = (t.start + k) % t.cap
	}
	return n, nil
}

// Bytes returns a copy of the kept tail, oldest byte first.
func (t *TailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]byte, 0, len(t.buf))
	out = append(out, t.buf[t.start:]...)
	return append(out, t.buf[:t.start]...)
}

// Len is the number of bytes kept (at most the cap).
func (t *TailBuffer) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.buf)
}

// Total is the number of bytes written so far, kept or not.
func (t *TailBuffer) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// Tee returns a writer that writes to tail and, when log is set, hands
// every write to log as the stream's live output (Spec.Log).
func Tee(tail *TailBuffer, stream string, log func(stream string, p []byte)) io.Writer {
	if log == nil {
		return tail
	}
	return teeWriter{tail: tail, stream: stream, log: log}
}

type teeWriter struct {
	tail   *TailBuffer
	stream string
	log    func(string, []byte)
}

func (t teeWriter) Write(p []byte) (int, error) {
	t.log(t.stream, p)
	return t.tail.Write(p)
}
