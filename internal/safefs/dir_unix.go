//go:build unix

package safefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

var errNotDir error = unix.ENOTDIR

// errOpenat2Off says openat2 was not tried.
var errOpenat2Off = errors.New("openat2 not used")

// readFlags open an existing entry for reading: never through a symlink at
// its name, without blocking on a fifo, without taking a terminal.
const readFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC

// maxLinkTarget bounds a symlink target Readlink accepts.
const maxLinkTarget = 64 << 10

func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// retry runs a system call again while it is interrupted.
func retry(call func() error) error {
	for {
		if err := call(); err != unix.EINTR {
			return err
		}
	}
}

// isLink tells whether an open with O_NOFOLLOW failed on a symlink (ELOOP;
// EMLINK on FreeBSD).
func isLink(err error) bool { return err == unix.ELOOP || err == unix.EMLINK }

// classify turns what fstatat or fstat saw into an Entry, refusing every
// kind but regular files with one name, directories and symlinks.
func classify(rel, name string, st *unix.Stat_t) (Entry, error) {
	e := Entry{Name: name, Size: st.Size}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if n := uint64(st.Nlink); n > 1 {
			return e, unsafef("%q is a hard link (a file with %d names)", rel, n)
		}
		e.Kind = KindFile
	case unix.S_IFDIR:
		e.Kind = KindDir
	case unix.S_IFLNK:
		e.Kind = KindSymlink
	case unix.S_IFIFO:
		return e, unsafef("%q is a named pipe (fifo)", rel)
	case unix.S_IFSOCK:
		return e, unsafef("%q is a socket", rel)
	case unix.S_IFCHR:
		return e, unsafef("%q is a character device", rel)
	case unix.S_IFBLK:
		return e, unsafef("%q is a block device", rel)
	default:
		return e, unsafef("%q has an unknown file type %#o", rel, st.Mode&unix.S_IFMT)
	}
	return e, nil
}

func newDir(fd int, rel string, depth int) *Dir {
	return &Dir{f: os.NewFile(uintptr(fd), rel), fd: fd, rel: rel, depth: depth}
}

// OpenDir opens the directory at p as a root. p is trusted and resolved as
// any path is, except that its last element must not be a symlink; use the
// returned Dir's methods for what lies beneath it.
func OpenDir(p string) (*Dir, error) {
	fd, err := openat(unix.AT_FDCWD, p, readFlags|unix.O_DIRECTORY, 0)
	if err != nil {
		if isLink(err) {
			return nil, unsafef("root %s is a symbolic link", p)
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return newDir(fd, ".", 0), nil
}

// openRoot opens p, a directory or a regular file with one name (its last
// element not a symlink), for Size and Chmod.
func openRoot(p string) (*Dir, *os.File, error) {
	var st unix.Stat_t
	if err := retry(func() error { return unix.Lstat(p, &st) }); err != nil {
		return nil, nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	e, err := classify(p, p, &st)
	if err != nil {
		return nil, nil, err
	}
	switch e.Kind {
	case KindDir:
		d, err := OpenDir(p)
		return d, nil, err
	case KindFile:
		fd, err := openat(unix.AT_FDCWD, p, readFlags, 0)
		if err != nil {
			if isLink(err) {
				return nil, nil, unsafef("root %s is a symbolic link", p)
			}
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		f, err := checkFile(fd, p)
		return nil, f, err
	default:
		return nil, nil, unsafef("root %s is a symbolic link", p)
	}
}

// checkFile makes an *os.File of fd when it is a regular file with one
// name; otherwise it closes fd and refuses it.
func checkFile(fd int, rel string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: rel, Err: err}
	}
	e, err := classify(rel, rel, &st)
	if err == nil && e.Kind != KindFile {
		err = unsafef("%q changed from a file to a %s while it was opened", rel, e.Kind)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	_ = unix.SetNonblock(fd, false) // a regular file: plain blocking reads
	return os.NewFile(uintptr(fd), rel), nil
}

// reopen opens d once more (a descriptor of its own).
func (d *Dir) reopen() (*Dir, error) {
	fd, err := openat(d.fd, ".", readFlags|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.rel, Err: err}
	}
	return newDir(fd, d.rel, d.depth), nil
}

// Lstat describes the entry name of d without following it, refusing the
// kinds the package does not accept (ErrUnsafe). A missing entry fails with
// an error wrapping fs.ErrNotExist.
func (d *Dir) Lstat(name string) (Entry, error) {
	if err := d.checkName(name); err != nil {
		return Entry{}, err
	}
	var st unix.Stat_t
	err := retry(func() error { return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if err != nil {
		return Entry{}, &fs.PathError{Op: "lstat", Path: d.relName(name), Err: err}
	}
	return classify(d.relName(name), name, &st)
}

// ReadDir lists d's entries sorted by name. An entry of a kind the package
// does not accept fails the listing (ErrUnsafe); one that vanished since
// the directory was read is left out.
func (d *Dir) ReadDir() ([]Entry, error) {
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read directory %s: %w", d.rel, err)
	}
	names, err := d.f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", d.rel, err)
	}
	slices.Sort(names)
	out := make([]Entry, 0, len(names))
	for _, n := range names {
		e, err := d.Lstat(n)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// OpenDir opens the subdirectory name of d; a symlink there is refused
// (ErrUnsafe), and so is a directory more than MaxDepth deep below the root.
func (d *Dir) OpenDir(name string) (*Dir, error) {
	if err := d.checkName(name); err != nil {
		return nil, err
	}
	rel := d.relName(name)
	if d.depth+1 > MaxDepth {
		return nil, unsafef("%s is more than %d directories deep", rel, MaxDepth)
	}
	fd, err := openat(d.fd, name, readFlags|unix.O_DIRECTORY, 0)
	if err != nil {
		if isLink(err) {
			return nil, unsafef("%q is a symbolic link", rel)
		}
		return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	return newDir(fd, rel, d.depth+1), nil
}

// Open opens the regular file name of d for reading. A symlink, a hard
// link, a device node, a fifo or a socket there is refused (ErrUnsafe); so
// is an entry that changes into one while it is opened.
func (d *Dir) Open(name string) (*os.File, error) {
	e, err := d.Lstat(name)
	if err != nil {
		return nil, err
	}
	rel := d.relName(name)
	switch e.Kind {
	case KindSymlink:
		return nil, unsafef("%q is a symbolic link", rel)
	case KindDir:
		return nil, &fs.PathError{Op: "open", Path: rel, Err: unix.EISDIR}
	}
	fd, err := openat(d.fd, name, readFlags, 0)
	if err != nil {
		if isLink(err) {
			return nil, unsafef("%q is a symbolic link", rel)
		}
		return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	return checkFile(fd, rel)
}

// Readlink returns the target of the symlink name of d, without following
// it. It fails on anything that is not a symlink.
func (d *Dir) Readlink(name string) (string, error) {
	if err := d.checkName(name); err != nil {
		return "", err
	}
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		var n int
		err := retry(func() (err error) {
			n, err = unix.Readlinkat(d.fd, name, buf)
			return err
		})
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: d.relName(name), Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
		if size >= maxLinkTarget {
			return "", fmt.Errorf("readlink %s: target longer than %d bytes", d.relName(name), maxLinkTarget)
		}
	}
}

// Mkdir creates the directory name in d with perm (less the umask) and
// opens it. An existing entry of that name fails with an error wrapping
// fs.ErrExist.
func (d *Dir) Mkdir(name string, perm fs.FileMode) (*Dir, error) {
	if err := d.checkName(name); err != nil {
		return nil, err
	}
	rel := d.relName(name)
	if d.depth+1 > MaxDepth {
		return nil, unsafef("%s is more than %d directories deep", rel, MaxDepth)
	}
	if err := retry(func() error { return unix.Mkdirat(d.fd, name, uint32(perm.Perm())) }); err != nil {
		return nil, &fs.PathError{Op: "mkdir", Path: rel, Err: err}
	}
	return d.OpenDir(name)
}

// Create creates the regular file name in d with perm (less the umask),
// open for writing. An existing entry of that name, a symlink included,
// fails with an error wrapping fs.ErrExist; nothing is followed.
func (d *Dir) Create(name string, perm fs.FileMode) (*os.File, error) {
	if err := d.checkName(name); err != nil {
		return nil, err
	}
	rel := d.relName(name)
	fd, err := openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// Symlink creates the symlink name in d pointing at target. The target is
// stored as given and not checked: whoever follows the link later decides
// what it may reach. An existing entry of that name fails with an error
// wrapping fs.ErrExist.
func (d *Dir) Symlink(target, name string) error {
	if err := d.checkName(name); err != nil {
		return err
	}
	if err := retry(func() error { return unix.Symlinkat(target, d.fd, name) }); err != nil {
		return &fs.PathError{Op: "symlink", Path: d.relName(name), Err: err}
	}
	return nil
}

// Chmod sets d's own permission bits.
func (d *Dir) Chmod(mode fs.FileMode) error {
	if err := retry(func() error { return unix.Fchmod(d.fd, uint32(mode.Perm())) }); err != nil {
		return &fs.PathError{Op: "chmod", Path: d.rel, Err: err}
	}
	return nil
}
