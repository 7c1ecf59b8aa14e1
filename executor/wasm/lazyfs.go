package wasm

import (
	"errors"
	"io/fs"
	"os"
	"sync"

	expsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// lazyFS is a writable mount whose host directory is made on the guest's
// first use of the mount, so that a run that never touches it costs no
// directory to make and remove (file system calls that most small tasks
// never need): the run's /tmp (a fresh temporary directory, removed with
// all in it after the run) and its /outputs (the caller's directory, made
// there if missing and kept). Every sys.FS method passes to the rootFS; if
// the directory cannot be made, each reports the error.
type lazyFS struct {
	expsys.UnimplementedFS

	// make makes (or finds) the host directory; keep leaves it in place
	// after the run.
	make      func() (string, error)
	keep      bool
	guestPath string
	quota     *diskQuota

	mu    sync.Mutex
	fs    *rootFS
	dir   string // the host directory, once made
	errno expsys.Errno
}

var _ expsys.FS = (*lazyFS)(nil)

// newLazyFS returns a mount at guest whose directory will be made with
// os.MkdirTemp(parent, pattern) when first used, and removed after the
// run. Writes count against q.
func newLazyFS(parent, pattern, guest string, q *diskQuota) *lazyFS {
	return &lazyFS{make: func() (string, error) { return os.MkdirTemp(parent, pattern) }, guestPath: guest, quota: q}
}

// newLazyDir returns a mount at guest of the host directory dir, made
// (mode 0700) when first used if it does not exist yet, and kept after
// the run. Writes count against q.
func newLazyDir(dir, guest string, q *diskQuota) *lazyFS {
	return &lazyFS{make: func() (string, error) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		return dir, nil
	}, keep: true, guestPath: guest, quota: q}
}

// root makes and opens the directory on first use.
func (l *lazyFS) root() (*rootFS, expsys.Errno) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fs != nil || l.errno != 0 {
		return l.fs, l.errno
	}
	dir, err := l.make()
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

// close closes the directory, if it was made, and, unless it is kept,
// removes it with all the guest left in it. It returns the directory's
// path ("" if never made).
func (l *lazyFS) close() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fs != nil {
		_ = l.fs.close()
		l.fs = nil
	}
	l.errno = expsys.EBADF // no use after the run
	if l.dir == "" || l.keep {
		return l.dir, nil
	}
	return l.dir, os.RemoveAll(l.dir)
}

// String returns the guest path of the mount.
func (l *lazyFS) String() string { return l.guestPath }

// OpenFile implements sys.FS. The root opened read-only before the
// directory is made is a lazyRoot: wazero opens each preopen's root so to
// answer fd_prestat_get, which a guest's runtime (Go's wasip1 among them)
// calls for every preopen at start.
func (l *lazyFS) OpenFile(p string, flag expsys.Oflag, perm fs.FileMode) (expsys.File, expsys.Errno) {
	if p == "." && flag == expsys.O_RDONLY {
		l.mu.Lock()
		made := l.fs != nil || l.errno != 0
		l.mu.Unlock()
		if !made {
			return newLazyRoot(l), 0
		}
	}
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

// lazyRoot is a lazyFS's root directory opened before the directory is
// made: it says it is a directory without making it, and makes it (and
// opens the real root) on any other use.
type lazyRoot struct {
	// File answers the methods lazyRoot does not declare: Seek (go vet
	// reserves the name for io.Seeker's signature, see guestFile), reads,
	// writes and append mode. It is expsys.UnimplementedFile (ENOSYS)
	// until the directory is made, then the real root. wazero calls a
	// file's methods from the guest's goroutine only.
	expsys.File
	l *lazyFS

	mu sync.Mutex
	f  expsys.File
}

var _ expsys.File = (*lazyRoot)(nil)

func newLazyRoot(l *lazyFS) *lazyRoot {
	return &lazyRoot{File: expsys.UnimplementedFile{}, l: l}
}

// file makes the directory and opens its root, once.
func (d *lazyRoot) file() (expsys.File, expsys.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f != nil {
		return d.f, 0
	}
	r, errno := d.l.root()
	if errno != 0 {
		return nil, errno
	}
	f, errno := r.OpenFile(".", expsys.O_RDONLY, 0)
	if errno != 0 {
		return nil, errno
	}
	d.f, d.File = f, f
	return f, 0
}

// IsDir implements sys.File without making the directory.
func (d *lazyRoot) IsDir() (bool, expsys.Errno) { return true, 0 }

// Dev implements sys.File.
func (d *lazyRoot) Dev() (uint64, expsys.Errno) {
	f, errno := d.file()
	if errno != 0 {
		return 0, errno
	}
	return f.Dev()
}

// Ino implements sys.File.
func (d *lazyRoot) Ino() (sys.Inode, expsys.Errno) {
	f, errno := d.file()
	if errno != 0 {
		return 0, errno
	}
	return f.Ino()
}

// Stat implements sys.File.
func (d *lazyRoot) Stat() (sys.Stat_t, expsys.Errno) {
	f, errno := d.file()
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return f.Stat()
}

// Readdir implements sys.File.
func (d *lazyRoot) Readdir(n int) ([]expsys.Dirent, expsys.Errno) {
	f, errno := d.file()
	if errno != 0 {
		return nil, errno
	}
	return f.Readdir(n)
}

// Sync implements sys.File.
func (d *lazyRoot) Sync() expsys.Errno {
	f, errno := d.file()
	if errno != 0 {
		return errno
	}
	return f.Sync()
}

// Datasync implements sys.File.
func (d *lazyRoot) Datasync() expsys.Errno {
	f, errno := d.file()
	if errno != 0 {
		return errno
	}
	return f.Datasync()
}

// Utimens implements sys.File.
func (d *lazyRoot) Utimens(atim, mtim int64) expsys.Errno {
	f, errno := d.file()
	if errno != 0 {
		return errno
	}
	return f.Utimens(atim, mtim)
}

// Close implements sys.File: it closes the real root if it was opened.
func (d *lazyRoot) Close() expsys.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return 0
	}
	errno := d.f.Close()
	d.f, d.File = nil, expsys.UnimplementedFile{}
	return errno
}
