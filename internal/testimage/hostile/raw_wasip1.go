//go:build wasip1

package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// Go's wasip1 port cleans every path before it calls the host, so ".."
// never reaches the runtime through package os. These calls hand the path
// to the WASI host as written, relative to a preopened directory.

//go:wasmimport wasi_snapshot_preview1 fd_prestat_get
//go:noescape
func fdPrestatGet(fd int32, buf unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_prestat_dir_name
//go:noescape
func fdPrestatDirName(fd int32, buf unsafe.Pointer, bufLen uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_open
//go:noescape
func pathOpen(dirFD int32, lookupFlags uint32, path unsafe.Pointer, pathLen uint32, oflags uint32, rightsBase, rightsInheriting uint64, fdFlags uint32, fd unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_link
//go:noescape
func pathLink(oldFD int32, oldFlags uint32, oldPath unsafe.Pointer, oldLen uint32, newFD int32, newPath unsafe.Pointer, newLen uint32) uint32

const (
	lookupSymlinkFollow = 1
	oflagDirectory      = 2
	allRights           = 1<<29 - 1
)

// preopen finds the file descriptor of the preopened directory name.
func preopen(name string) (int32, error) {
	for fd := int32(3); fd < 64; fd++ {
		var prestat [2]uint32 // tag, then the name's length
		if errno := fdPrestatGet(fd, unsafe.Pointer(&prestat)); errno != 0 {
			break
		}
		buf := make([]byte, prestat[1])
		if len(buf) == 0 {
			continue
		}
		if errno := fdPrestatDirName(fd, unsafe.Pointer(&buf[0]), uint32(len(buf))); errno != 0 {
			continue
		}
		if string(buf) == name {
			return fd, nil
		}
	}
	return -1, fmt.Errorf("no preopened directory %s", name)
}

func rawList(dir, name string) ([]string, error) {
	dirFD, err := preopen(dir)
	if err != nil {
		return nil, err
	}
	p := []byte(name)
	var fd int32
	errno := pathOpen(dirFD, lookupSymlinkFollow, unsafe.Pointer(&p[0]), uint32(len(p)), oflagDirectory, allRights, allRights, 0, unsafe.Pointer(&fd))
	if errno != 0 {
		return nil, syscall.Errno(errno)
	}
	f := os.NewFile(uintptr(fd), dir+"/"+name)
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	return entryNames(entries), nil
}

func rawLink(oldDir, oldName, newDir, newName string) error {
	oldFD, err := preopen(oldDir)
	if err != nil {
		return err
	}
	newFD, err := preopen(newDir)
	if err != nil {
		return err
	}
	o, n := []byte(oldName), []byte(newName)
	if errno := pathLink(oldFD, 0, unsafe.Pointer(&o[0]), uint32(len(o)), newFD, unsafe.Pointer(&n[0]), uint32(len(n))); errno != 0 {
		return syscall.Errno(errno)
	}
	return nil
}
