package wasm

import (
	"sync/atomic"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// cappedMemory backs one instance's linear memory, refusing to grow past
// limit bytes. memory.grow then returns -1 to the guest, which typically
// aborts with an out-of-memory error; hit records that this happened.
//
// The memory is one anonymous mapping of limit bytes, reserved without
// backing (MAP_NORESERVE) when the instance is made: the kernel gives it
// pages only as the guest touches them, growing never copies, and Free
// gives every page back to the system at once. Guest memory is thus never
// on the Go heap, where each run's growth by copying would be garbage the
// node's collector must catch up with (and resident memory it keeps).
// Where the mapping cannot be made, a Go slice grown geometrically serves.
type cappedMemory struct {
	limit  uint64
	mapped []byte // the whole mapping (nil when a Go slice serves)
	buf    []byte
	peak   atomic.Uint64
	hit    atomic.Bool
}

var _ experimental.LinearMemory = (*cappedMemory)(nil)

// allocator hands m to wazero for the one instance it is made for.
func (m *cappedMemory) allocator() experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
		reserve := min(max, m.limit)
		if reserve > 0 {
			if b, err := syscall.Mmap(-1, 0, int(reserve), syscall.PROT_READ|syscall.PROT_WRITE,
				syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE); err == nil {
				m.mapped = b
				m.buf = b[:0]
				return m
			}
		}
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
	switch {
	case m.mapped != nil:
		if size > uint64(len(m.mapped)) {
			m.hit.Store(true)
			return nil
		}
		m.buf = m.mapped[:size]
	case size > uint64(cap(m.buf)):
		// Grow geometrically, but never past the cap.
		newCap := min(max(size, 2*uint64(cap(m.buf))), m.limit)
		nb := make([]byte, size, newCap)
		copy(nb, m.buf)
		m.buf = nb
	default:
		// Memory only grows in wasm, but be exact about the length.
		m.buf = m.buf[:size]
	}
	if size > m.peak.Load() {
		m.peak.Store(size)
	}
	return m.buf
}

// Free implements experimental.LinearMemory.
func (m *cappedMemory) Free() {
	if m.mapped != nil {
		_ = syscall.Munmap(m.mapped)
		m.mapped = nil
	}
	m.buf = nil
}
