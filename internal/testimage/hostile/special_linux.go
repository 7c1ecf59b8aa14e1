package main

import (
	"net"
	"syscall"
)

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o666) }

func mknod(p string, block bool, major, minor uint32) error {
	mode := uint32(syscall.S_IFCHR | 0o666)
	if block {
		mode = syscall.S_IFBLK | 0o666
	}
	// The encoding of dev_t for small major and minor numbers.
	dev := int(major<<8 | minor)
	return syscall.Mknod(p, mode, dev)
}

// bindSocket leaves a unix socket file at p.
func bindSocket(p string) error {
	l, err := net.Listen("unix", p)
	if err != nil {
		return err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	return l.Close()
}
