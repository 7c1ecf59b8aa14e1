package wasm

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// cappedMemory backs one instance's linear memory, refusing to grow past
// limit bytes. memory.grow then returns -1 to the guest, which typically
// aborts with an out-of-memory error; hit records that this happened.
type cappedMemory struct {
	limit uint64
	buf   []byte
	peak  atomic.Uint64
	hit   atomic.Bool
}

var _ experimental.LinearMemory = (*cappedMemory)(nil)

// allocator hands m to wazero for the one instance it is made for.
func (m *cappedMemory) allocator() experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
		m.buf = make([]byte, 0, min(capacity, m.limit))
		return m
	})
}

// Reallocate implements experimental.LinearMemory.
func (m *cappedMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.hit.Store(true)
		return nil
	}
	if size > uint64(cap(m.buf)) {
		// Grow geometrically, but never past the cap.
		newCap := min(max(size, 2*uint64(cap(m.buf))), m.limit)
		nb := make([]byte, size, newCap)
		copy(nb, m.buf)
		m.buf = nb
	} else {
		// Memory only grows in wasm, but be exact about the length.
		m.buf = m.buf[:size]
	}
	if size > m.peak.Load() {
		m.peak.Store(size)
	}
	return m.buf
}

// Free implements experimental.LinearMemory.
func (m *cappedMemory) Free() { m.buf = nil }
