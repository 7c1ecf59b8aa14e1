//go:build wasip1

// Command attack is a hostile WASI guest for the escape tests of package
// wasm (escape_test.go). It tries to read, write or create host files
// outside its mounts and prints one line per attempt:
//
//	ATTACK <name>: refused: <ERRNO>
//	ATTACK <name>: ESCAPED <what happened>
//
// "ok" lines report steps that are allowed and expected to work (such as
// creating a symbolic link that stays inside a mount).
//
// Usage: attack escape | attack fill
//
// escape expects /tmp, /outputs and /work writable and /inputs read-only,
// the environment variable MARKER (the absolute host path of a secret file
// outside every mount, which sits in SECRETDIR next to the mounts' parent
// directory OUTSIDEDIR), and these planted links (made by the test on the
// host): /inputs/abs -> MARKER, /inputs/up -> ../secret/marker.txt,
// /inputs/chain -> abs, /work/outdir -> OUTSIDEDIR, /work/secretdir ->
// ../secret. /tmp is two levels below the mounts' parent (tmproot/run-dir).
//
// fill writes into /outputs and /work until the disk quota refuses, then
// tries the ways around it; it exits 3.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: attack escape|fill")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "escape":
		escape()
	case "fill":
		fill()
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}

// errName names the WASI errno inside err.
func errName(err error) string {
	var en syscall.Errno
	if !errors.As(err, &en) {
		return "unknown(" + err.Error() + ")"
	}
	names := map[syscall.Errno]string{
		syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.EROFS: "EROFS",
		syscall.EXDEV: "EXDEV", syscall.ENOSPC: "ENOSPC", syscall.ELOOP: "ELOOP",
		syscall.EBADF: "EBADF", syscall.ENOTDIR: "ENOTDIR", syscall.EIO: "EIO",
		syscall.ENOSYS: "ENOSYS", syscall.EACCES: "EACCES", syscall.EINVAL: "EINVAL",
		syscall.EEXIST: "EEXIST", syscall.EISDIR: "EISDIR", syscall.ENOTCAPABLE: "ENOTCAPABLE",
		syscall.ENOTEMPTY: "ENOTEMPTY",
	}
	if n, ok := names[en]; ok {
		return n
	}
	return fmt.Sprintf("errno(%d)", uint16(en))
}

// report prints the outcome of one attack: refused when err is set,
// ESCAPED (with what) otherwise.
func report(name string, err error, escaped string) {
	if err != nil {
		fmt.Printf("ATTACK %s: refused: %s\n", name, errName(err))
		return
	}
	fmt.Printf("ATTACK %s: ESCAPED %s\n", name, escaped)
}

// ok prints a step that is allowed, or fails the run when it was not.
func ok(name string, err error) {
	if err != nil {
		fmt.Printf("ATTACK %s: unexpected error: %s\n", name, errName(err))
		return
	}
	fmt.Printf("ATTACK %s: ok\n", name)
}

// read tries to read path; reading anything at all is an escape.
func read(name, path string) {
	b, err := os.ReadFile(path)
	report(name, err, fmt.Sprintf("read %q", b))
}

// create tries to create path; success is an escape (the test checks the
// host for the file as well).
func create(name, path string) {
	report(name, os.WriteFile(path, []byte("pwned"), 0o644), "created "+path)
}

func escape() {
	marker := os.Getenv("MARKER")

	// Links the guest makes itself. Absolute or climbing targets are refused.
	err := os.Symlink(marker, "/tmp/abs")
	report("symlink-abs", err, "made /tmp/abs -> "+marker)
	if err == nil {
		read("symlink-abs-read", "/tmp/abs")
	}
	err = os.Symlink("../../../../../../../.."+marker, "/tmp/dd")
	report("symlink-dotdot", err, "made /tmp/dd")
	if err == nil {
		read("symlink-dotdot-read", "/tmp/dd")
	}

	// A chain whose every target stays inside when read as text, but which
	// climbs out when followed: l1 -> ".", l2 -> "l1/..", l3 -> "l2/.."
	// (the mounts' parent), l4 -> "l3/secret/marker.txt".
	ok("chain-make-l1", os.Symlink(".", "/tmp/l1"))
	ok("chain-make-l2", os.Symlink("l1/..", "/tmp/l2"))
	ok("chain-make-l3", os.Symlink("l2/..", "/tmp/l3"))
	ok("chain-make-l4", os.Symlink("l3/secret/marker.txt", "/tmp/l4"))
	ok("chain-make-lo", os.Symlink("l3/outside", "/tmp/lo"))
	read("symlink-chain-read", "/tmp/l4")
	read("symlink-chain-path", "/tmp/l3/secret/marker.txt")
	_, err = os.Stat("/tmp/l4")
	report("symlink-chain-stat", err, "stat of the marker")
	create("symlink-chain-create", "/tmp/lo/pwned")
	create("symlink-chain-create-path", "/tmp/l3/outside/pwned2")
	report("symlink-chain-mkdir", os.Mkdir("/tmp/lo/dir", 0o755), "mkdir outside")
	_, err = os.ReadDir("/tmp/l3")
	report("symlink-chain-readdir", err, "listed the mounts' parent")
	f, err := os.OpenFile("/tmp/l4", os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if f != nil {
		f.Close()
	}
	report("symlink-nofollow", err, "opened a link with O_NOFOLLOW")

	// Links planted on the host (inputs can come from a requester).
	read("planted-abs-read", "/inputs/abs")
	read("planted-up-read", "/inputs/up")
	read("planted-chain-read", "/inputs/chain")
	_, err = os.Stat("/inputs/abs")
	report("planted-abs-stat", err, "stat of the marker")
	create("planted-dir-create", "/work/outdir/pwned")
	report("planted-dir-mkdir", os.Mkdir("/work/outdir/dir", 0o755), "mkdir outside")
	report("planted-dir-symlink", os.Symlink("x", "/work/outdir/lnk"), "symlink outside")
	fd, err := syscall.Open("/work/outdir", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err == nil {
		syscall.Close(fd)
	}
	report("planted-dir-open-directory", err, "opened the outside dir")
	_, err = os.ReadDir("/work/outdir")
	report("planted-dir-readdir", err, "listed the outside dir")
	report("planted-truncate", os.Truncate("/work/secretdir/marker.txt", 0), "truncated the marker")
	report("planted-unlink", os.Remove("/work/secretdir/marker.txt"), "removed the marker")
	report("planted-chtimes", os.Chtimes("/work/secretdir/marker.txt", nowish, nowish), "touched the marker")

	// Hard links.
	tmpFD := preopen("/tmp")
	report("hardlink-dotdot", pathLink(tmpFD, "../../secret/marker.txt", tmpFD, "h1"), "linked the marker")
	report("hardlink-via-dirlink", os.Link("/work/secretdir/marker.txt", "/work/h2"), "linked the marker")
	// A hard link to the chain's last link links the link itself (allowed);
	// reading through it must still stop.
	ok("hardlink-of-symlink-made", os.Link("/tmp/l4", "/tmp/h3"))
	read("hardlink-of-symlink-read", "/tmp/h3")

	// Renames.
	ok("rename-prepare", os.WriteFile("/tmp/x", []byte("x"), 0o644))
	report("rename-cross-mount", os.Rename("/tmp/x", "/outputs/x"), "moved /tmp/x to /outputs")
	report("rename-link-cross-mount", os.Rename("/tmp/l4", "/outputs/l4"), "moved a link to /outputs")
	report("rename-raw-dotdot", pathRename(tmpFD, "../../secret/marker.txt", tmpFD, "stolen"), "moved the marker")
	report("rename-through-link", os.Rename("/work/secretdir/marker.txt", "/work/stolen"), "moved the marker")
	ok("rename-prepare-2", os.WriteFile("/work/f", []byte("f"), 0o644))
	report("rename-into-outside", os.Rename("/work/f", "/work/outdir/f"), "moved a file outside")

	// Directory descriptors and "..".
	fd, err = syscall.Open("/tmp", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	ok("dirfd-open", err)
	if err == nil {
		d, err := syscall.Openat(fd, "..", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err == nil {
			syscall.Close(d)
		}
		report("dirfd-dotdot", err, "opened .. of /tmp")
		d, err = syscall.Openat(fd, "../../secret/marker.txt", syscall.O_RDONLY, 0)
		if err == nil {
			syscall.Close(d)
		}
		report("dirfd-dotdot-marker", err, "opened the marker")
		syscall.Close(fd)
	}
	ok("subdir-make", os.Mkdir("/tmp/sub", 0o755))
	fd, err = syscall.Open("/tmp/sub", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	ok("subdir-open", err)
	if err == nil {
		d, err := syscall.Openat(fd, "../..", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err == nil {
			syscall.Close(d)
		}
		report("subdir-dotdot-dotdot", err, "opened ../.. of /tmp/sub")
		syscall.Close(fd)
	}
	d, err := pathOpen(tmpFD, "..", oflagDirectory)
	if err == nil {
		syscall.Close(int(d))
	}
	report("preopen-dotdot", err, "opened .. of the /tmp preopen")
	d, err = pathOpen(tmpFD, "l3", oflagDirectory)
	if err == nil {
		syscall.Close(int(d))
	}
	report("preopen-link-directory", err, "opened the chain link as a directory")
	ents, err := os.ReadDir("/tmp/..")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	report("tmp-dotdot-list", err, fmt.Sprintf("listed %v", names))

	// The read-only mount refuses every change. (WASI preview 1 has no
	// chmod: Go's os.Chmod only stats there, so the file system's Chmod is
	// tested directly, in guestfs_test.go.)
	report("ro-write", os.WriteFile("/inputs/data.txt", []byte("changed"), 0o644), "wrote /inputs/data.txt")
	report("ro-create", os.WriteFile("/inputs/new", []byte("new"), 0o644), "created /inputs/new")
	f, err = os.OpenFile("/inputs/data.txt", os.O_WRONLY|os.O_APPEND, 0)
	if f != nil {
		f.Close()
	}
	report("ro-append", err, "opened /inputs/data.txt for appending")
	report("ro-truncate", os.Truncate("/inputs/data.txt", 0), "truncated /inputs/data.txt")
	report("ro-mkdir", os.Mkdir("/inputs/dir", 0o755), "made /inputs/dir")
	report("ro-unlink", syscall.Unlink("/inputs/data.txt"), "removed /inputs/data.txt")
	report("ro-rmdir", syscall.Rmdir("/inputs/sub"), "removed /inputs/sub")
	report("ro-rename", os.Rename("/inputs/data.txt", "/inputs/moved"), "renamed /inputs/data.txt")
	report("ro-link", os.Link("/inputs/data.txt", "/inputs/hard"), "linked /inputs/data.txt")
	report("ro-symlink", os.Symlink("data.txt", "/inputs/soft"), "made /inputs/soft")
	report("ro-chtimes", os.Chtimes("/inputs/data.txt", nowish, nowish), "touched /inputs/data.txt")
	b, err := os.ReadFile("/inputs/data.txt")
	if err == nil && string(b) != "input!" {
		err = fmt.Errorf("content %q", b)
	}
	ok("ro-read", err)
}

// fill exhausts the disk quota and tries ways around it.
func fill() {
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'q'
	}
	a, err := os.Create("/outputs/a")
	ok("fill-open-a", err)
	b, err := os.Create("/work/b")
	ok("fill-open-b", err)
	var total int64
	var werr error
	for i := 0; werr == nil; i++ {
		f := a
		if i%2 == 1 {
			f = b
		}
		var n int
		n, werr = f.Write(chunk)
		total += int64(n)
		if total > 1<<30 {
			break
		}
	}
	fmt.Printf("wrote %d bytes\n", total)
	report("quota-fill", werr, fmt.Sprintf("wrote %d bytes", total))

	_, err = a.WriteAt([]byte{1}, 1<<40)
	report("quota-pwrite-hole", err, "wrote at 1 TiB")
	report("quota-truncate-grow", a.Truncate(1<<40), "grew a file to 1 TiB")
	report("quota-tmp", os.WriteFile("/tmp/c", chunk, 0o644), "wrote /tmp/c")
	report("quota-mkdir", mkdirMany("/tmp/d"), "made thousands of directories")

	// Removing a file that is still open frees nothing on the host yet.
	ok("quota-unlink-open", os.Remove("/outputs/a"))
	_, err = b.Write(chunk)
	report("quota-after-unlink-open", err, "wrote after removing an open file")
	ok("quota-close", a.Close())
	_, err = b.Write(chunk)
	ok("quota-after-close", err)
	b.Close()
	os.Exit(3)
}

// mkdirMany makes directories until an error.
func mkdirMany(prefix string) error {
	for i := 0; i < 1<<20; i++ {
		if err := os.Mkdir(fmt.Sprintf("%s%d", prefix, i), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// nowish is a time to set on files (any will do).
var nowish = time.Unix(1_000_000_000, 0)

// Raw WASI calls, for paths Go's os package would clean before sending.

const oflagDirectory = 2

//go:wasmimport wasi_snapshot_preview1 fd_prestat_get
func fdPrestatGet(fd int32, buf unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_prestat_dir_name
func fdPrestatDirName(fd int32, path unsafe.Pointer, pathLen uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_open
func wasiPathOpen(fd int32, dirflags uint32, path unsafe.Pointer, pathLen uint32, oflags uint32, rightsBase uint64, rightsInheriting uint64, fdflags uint32, result unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_link
func wasiPathLink(oldFD int32, oldFlags uint32, oldPath unsafe.Pointer, oldLen uint32, newFD int32, newPath unsafe.Pointer, newLen uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_rename
func wasiPathRename(oldFD int32, oldPath unsafe.Pointer, oldLen uint32, newFD int32, newPath unsafe.Pointer, newLen uint32) uint32

// preopen returns the descriptor of the preopened directory named name.
func preopen(name string) int32 {
	for fd := int32(3); fd < 64; fd++ {
		var st [8]byte // tag u8, then the name length u32 at offset 4
		if fdPrestatGet(fd, unsafe.Pointer(&st[0])) != 0 {
			continue
		}
		n := uint32(st[4]) | uint32(st[5])<<8 | uint32(st[6])<<16 | uint32(st[7])<<24
		buf := make([]byte, n)
		if n == 0 || fdPrestatDirName(fd, unsafe.Pointer(&buf[0]), n) != 0 {
			continue
		}
		if strings.TrimRight(string(buf), "\x00") == name {
			return fd
		}
	}
	fmt.Fprintln(os.Stderr, "no preopen", name)
	os.Exit(2)
	return -1
}

func errOf(errno uint32) error {
	if errno == 0 {
		return nil
	}
	return syscall.Errno(errno)
}

func pathOpen(fd int32, p string, oflags uint32) (int32, error) {
	b := []byte(p)
	var out int32
	errno := wasiPathOpen(fd, 1, unsafe.Pointer(&b[0]), uint32(len(b)), oflags, 0x1fffffff, 0x1fffffff, 0, unsafe.Pointer(&out))
	return out, errOf(errno)
}

func pathLink(oldFD int32, oldPath string, newFD int32, newPath string) error {
	o, n := []byte(oldPath), []byte(newPath)
	return errOf(wasiPathLink(oldFD, 0, unsafe.Pointer(&o[0]), uint32(len(o)), newFD, unsafe.Pointer(&n[0]), uint32(len(n))))
}

func pathRename(oldFD int32, oldPath string, newFD int32, newPath string) error {
	o, n := []byte(oldPath), []byte(newPath)
	return errOf(wasiPathRename(oldFD, unsafe.Pointer(&o[0]), uint32(len(o)), newFD, unsafe.Pointer(&n[0]), uint32(len(n))))
}
