package main

import (
	"fmt"
	"os"
	"syscall"
)

// raiseFileLimit lifts the process's open-file limit as far as the kernel
// allows (fs.nr_open; raising the hard limit needs root) and returns the
// limit in force. Hundreds of nodes in one process hold two descriptors
// per connection.
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
	up := syscall.Rlimit{Cur: want, Max: want}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err != nil {
		// Not root: the soft limit up to the hard one is still ours.
		up = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err != nil {
			return lim.Cur, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return up.Cur, nil
}

// fileLimit is the open-file limit in force (20,000 when it cannot be read).
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 20000
	}
	return lim.Cur
}
