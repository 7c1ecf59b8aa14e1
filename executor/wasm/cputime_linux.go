//go:build linux

package wasm

import "golang.org/x/sys/unix"

// threadCPU returns the CPU time consumed by the calling OS thread in
// nanoseconds; the caller must have locked its goroutine to the thread.
func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
