//go:build !linux

package main

import "errors"

var errNoSpecialFiles = errors.New("special files are not supported on this platform")

func mkfifo(string) error { return errNoSpecialFiles }

func mknod(string, bool, uint32, uint32) error { return errNoSpecialFiles }

// bindSocket: WASI preview 1 cannot create sockets (Go's wasip1 net
// package listens on an in-process network that leaves no file).
func bindSocket(string) error { return errNoSpecialFiles }
