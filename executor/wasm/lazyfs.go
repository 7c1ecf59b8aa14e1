package wasm

import (
	"io/fs"
	"os"
	"sync"

	expsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// lazyFS is the run's /tmp: a writable rootFS over a host directory that is
// made in parent on the guest's first use of the mount, so that a run that
// never touches /tmp costs no directory to make and remove (two file system
// calls per run that most small tasks never need). Every sys.FS method
// passes to the rootFS; if the directory cannot be made, each reports the
// error.
type lazyFS struct {
	expsys.UnimplementedFS

	parent, pattern string // as for os.MkdirTemp
	guestPath       string
	quota           *diskQuota

	mu    sync.Mutex
	fs    *rootFS
	dir   string // the host directory, once made
	errno expsys.Errno
}

var _ expsys.FS = (*lazyFS)(nil)

// newLazyFS returns a mount at guest whose directory will be made with
// os.MkdirTemp(parent, pattern) when first used. Writes count against q.
func newLazyFS(parent, pattern, guest string, q *diskQuota) *lazyFS {
	return &lazyFS{parent: parent, pattern: pattern, guestPath: guest, quota: q}
}

// root makes and opens the directory on first use.
func (l *lazyFS) root() (*rootFS, expsys.Errno) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fs != nil || l.errno != 0 {
		return l.fs, l.errno
	}
	dir, err := os.MkdirTemp(l.parent, l.pattern)
	if err != nil {
		l.errno = errnoOr(err, expsys.EIO)
		return nil, l.errno
	}
	l.dir = dir
	r, err := openRootFS(dir, l.guestPath, false, l.quota)
	if err != nil {
		l.errno = errnoOr(err, expsys.EIO)
		return nil, l.errno
	}
	l.fs = r
	return r, 0
}

// close closes the directory, if it was made, and removes it with all the
// guest left in it. It returns the directory's path ("" if never made).
func (l *lazyFS) close() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fs != nil {
		_ = l.fs.close()
		l.fs = nil
	}
	l.errno = expsys.EBADF // no use after the run
	if l.dir == "" {
		return "", nil
	}
	return l.dir, os.RemoveAll(l.dir)
}

// String returns the guest path of the mount.
func (l *lazyFS) String() string { return l.guestPath }

// OpenFile implements sys.FS.
func (l *lazyFS) OpenFile(p string, flag expsys.Oflag, perm fs.FileMode) (expsys.File, expsys.Errno) {
	r, errno := l.root()
	if errno != 0 {
		return nil, errno
	}
	return r.OpenFile(p, flag, perm)
}

// Lstat implements sys.FS.
func (l *lazyFS) Lstat(p string) (sys.Stat_t, expsys.Errno) {
	r, errno := l.root()
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return r.Lstat(p)
}

// Stat implements sys.FS.
func (l *lazyFS) Stat(p string) (sys.Stat_t, expsys.Errno) {
	r, errno := l.root()
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return r.Stat(p)
}

// Mkdir implements sys.FS.
func (l *lazyFS) Mkdir(p string, perm fs.FileMode) expsys.Errno {
	r, errno := l.root()
	if errno != 0 {
		return errno
	}
	return r.Mkdir(p, perm)
}

// Chmod implements sys.FS.
func (l *lazyFS) Chmod(p string, perm fs.FileMode) expsys.Errno {
	r, errno := l.root()
	if errno != 0 {
		return errno
	}
	return r.Chmod(p, perm)
}

// Rename implements sys.FS.
func (l *lazyFS) Rename(from, to string) expsys.Errno {
	r, errno := l.root()
	if errno != 0 {
		return errno
	}
	return r.Rename(from, to)
}

// Rmdir implements sys.FS.
func (l *lazyFS) Rmdir(p string) expsys.Errno {
	r, errno := l.root()
	if errno != 0 {
		return errno
	}
	return r.Rmdir(p)
}

// Unlink implements sys.FS.
func (l *lazyFS) Unlink(p string) expsys.Errno {
	r, errno := l.root()
	if errno != 0 {
		return errno
	}
	return r.Unlink(p)
}

// Link implements sys.FS.
func (l *lazyFS) Link(oldPath, newPath string) expsys.Errno {
	r, errno := l.root()
	if errno != 0 {
		return errno
	}
	return r.Link(oldPath, newPath)
}

// Symlink implements sys.FS.
func (l *lazyFS) Symlink(target, link string) expsys.Errno {
	r, errno := l.root()
	if errno != 0 {
		return errno
	}
	return r.Symlink(target, link)
}

// Readlink implements sys.FS.
func (l *lazyFS) Readlink(p string) (string, expsys.Errno) {
	r, errno := l.root()
	if errno != 0 {
		return "", errno
	}
	return r.Readlink(p)
}

// Utimens implements sys.FS.
func (l *lazyFS) Utimens(p string, atim, mtim int64) expsys.Errno {
	r, errno := l.root()
	if errno != 0 {
		return errno
	}
	return r.Utimens(p, atim, mtim)
}
