package main

import (
	"fmt"
	"os"
	"syscall"
)

// raiseFileLimit lifts the process's open-file limit as far as the kernel
// allows (fs.nr_open; raising the hard limit needs root, and a container
// may refuse it even to root) and returns the limit in force. Hundreds of
// nodes in one process hold two descriptors per connection. (Go's runtime
// has already raised the soft limit to the hard one at start.)
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	want := lim.Max
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		var n uint64
		if _, err := fmt.Sscan(string(b), &n); err == nil && n > want {
			want = n
		}
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err != nil {
		return lim.Cur, fmt.Errorf("setrlimit to %d: %w", want, err)
	}
	return want, nil
}
