package wasm

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	expsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"
)

// entryBytes is what the quota charges for each name a guest creates (file,
// directory, symbolic or hard link), so that a guest cannot exhaust inodes
// with empty files. Removing the name gives it back.
const entryBytes = 512

// permMask keeps the permission bits a guest may set on the host: no setuid,
// setgid or sticky bit ever reaches a host file.
const permMask fs.FileMode = 0o777

// rootFS is one mount: a sys.FS confined to one host directory through
// os.Root. Every path operation goes through the Root, which resolves each
// component with openat and O_NOFOLLOW, follows a symbolic link only when
// its target stays beneath the directory, and fails with an error of its
// own (mapped to EPERM here) when a link or ".." would leave it.
type rootFS struct {
	expsys.UnimplementedFS

	root      *os.Root
	guestPath string // where the guest sees it, for String
	readOnly  bool
	quota     *diskQuota // shared by the run's writable mounts
}

var _ expsys.FS = (*rootFS)(nil)

// openRootFS opens host as a mount seen by the guest at guest. Writes to a
// writable mount are counted against q.
func openRootFS(host, guest string, readOnly bool, q *diskQuota) (*rootFS, error) {
	root, err := os.OpenRoot(host)
	if err != nil {
		return nil, err
	}
	return &rootFS{root: root, guestPath: guest, readOnly: readOnly, quota: q}, nil
}

// String returns the guest path of the mount.
func (r *rootFS) String() string { return r.guestPath }

// close releases the directory descriptor. Files opened from the mount stay
// usable; wazero closes them when the module closes.
func (r *rootFS) close() error { return r.root.Close() }

// guestPath turns a path that wazero hands to a mount into a path relative to
// the mount's directory, as os.Root wants it. wazero cleans the guest's path,
// but it joins a directory descriptor's name to it unchecked, so this cleans
// again: leading slashes go (the path is always relative to the mount), "."
// and ".." are folded lexically, and a path that would climb above the mount
// is refused with EPERM. A trailing slash is kept, since it asks for a
// directory. The result is never absolute and never starts with "..".
func guestPath(p string) (string, expsys.Errno) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", expsys.EINVAL
	}
	dir := strings.HasSuffix(p, "/")
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return ".", 0
	}
	p = path.Clean(p)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", expsys.EPERM
	}
	if dir && p != "." {
		p += "/"
	}
	return p, 0
}

// linkEscapes reports whether a symbolic link at name (relative to the mount)
// with the given target would point out of the mount when read lexically:
// absolute targets and ones that climb above the mount. Following a link is
// confined by os.Root in any case; refusing such links as well keeps them
// out of directories (such as /outputs) that host code reads later.
func linkEscapes(name, target string) bool {
	if path.IsAbs(target) {
		return true
	}
	j := path.Join(path.Dir(strings.TrimSuffix(name, "/")), target)
	return j == ".." || strings.HasPrefix(j, "../")
}

// pathErrno maps an error of an os.Root operation to an Errno. os.Root
// reports a path that would leave the root with an error that is not a
// syscall.Errno ("path escapes from parent"): that becomes EPERM.
func pathErrno(err error) expsys.Errno { return errnoOr(err, expsys.EPERM) }

// fileErrno maps an error of an operation on an open file to an Errno.
func fileErrno(err error) expsys.Errno { return errnoOr(err, expsys.EIO) }

func errnoOr(err error, fallback expsys.Errno) expsys.Errno {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &en):
		return expsys.UnwrapOSError(en)
	case errors.Is(err, fs.ErrNotExist):
		return expsys.ENOENT
	case errors.Is(err, fs.ErrExist):
		return expsys.EEXIST
	case errors.Is(err, fs.ErrClosed):
		return expsys.EBADF
	case errors.Is(err, fs.ErrInvalid):
		return expsys.EINVAL
	}
	return fallback
}

// OpenFile implements sys.FS. A read-only mount refuses any open that could
// write (EROFS). O_NOFOLLOW refuses a final symbolic link (ELOOP). O_TRUNC
// is applied after the open so that the freed bytes return to the quota, and
// creating a name costs entryBytes. O_APPEND is emulated by the file (see
// guestFile.Write), so the host descriptor never has it.
func (r *rootFS) OpenFile(p string, flag expsys.Oflag, perm fs.FileMode) (expsys.File, expsys.Errno) {
	name, errno := guestPath(p)
	if errno != 0 {
		return nil, errno
	}
	access := flag & (expsys.O_RDONLY | expsys.O_RDWR | expsys.O_WRONLY)
	if r.readOnly && (access != expsys.O_RDONLY || flag&(expsys.O_CREAT|expsys.O_TRUNC|expsys.O_APPEND) != 0) {
		return nil, expsys.EROFS
	}
	excl := flag&(expsys.O_CREAT|expsys.O_EXCL) == expsys.O_CREAT|expsys.O_EXCL
	if flag&expsys.O_NOFOLLOW != 0 && !excl {
		// os.Root follows a final link that stays inside; the guest asked
		// not to follow it at all.
		if fi, err := r.root.Lstat(name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, expsys.ELOOP
		}
	}

	osFlag := os.O_RDONLY
	switch access {
	case expsys.O_RDWR:
		osFlag = os.O_RDWR
	case expsys.O_WRONLY:
		osFlag = os.O_WRONLY
	}
	if flag&(expsys.O_SYNC|expsys.O_DSYNC) != 0 {
		osFlag |= os.O_SYNC
	}

	var f *os.File
	var err error
	if !excl {
		f, err = r.root.OpenFile(name, osFlag, 0)
	}
	if flag&expsys.O_CREAT != 0 && (excl || errors.Is(err, fs.ErrNotExist)) {
		if !r.quota.reserve(entryBytes) {
			return nil, errQuota
		}
		create := osFlag | os.O_CREATE
		if excl {
			create |= os.O_EXCL
		}
		f, err = r.root.OpenFile(name, create, perm&permMask)
		if err != nil {
			r.quota.release(entryBytes)
		}
	}
	if err != nil {
		return nil, pathErrno(err)
	}

	return r.wrap(f, name, flag)
}

// wrap finishes OpenFile on the opened f: it checks O_DIRECTORY, registers a
// regular file of a writable mount with the quota, applies O_TRUNC, and
// wraps f as a sys.File.
func (r *rootFS) wrap(f *os.File, name string, flag expsys.Oflag) (expsys.File, expsys.Errno) {
	gf := &guestFile{fs: r, os: f, append: flag&expsys.O_APPEND != 0}
	fail := func(errno expsys.Errno) (expsys.File, expsys.Errno) {
		if gf.tracked {
			r.quota.closed(gf.id)
		}
		_ = f.Close()
		return nil, errno
	}
	if flag&expsys.O_DIRECTORY != 0 || !r.readOnly {
		fi, err := f.Stat()
		if err != nil {
			return fail(fileErrno(err))
		}
		if flag&expsys.O_DIRECTORY != 0 && !fi.IsDir() {
			return fail(expsys.ENOTDIR)
		}
		if !r.readOnly && fi.Mode().IsRegular() {
			if st := sys.NewStat_t(fi); st.Ino != 0 {
				gf.id, gf.tracked = inodeOf(st), true
				r.quota.opened(gf.id)
			}
			if flag&expsys.O_TRUNC != 0 && fi.Size() > 0 {
				if err := f.Truncate(0); err != nil {
					return fail(fileErrno(err))
				}
				r.quota.release(fi.Size())
			}
		}
	}
	adapted := &sysfs.AdaptFS{FS: &openedFS{root: r.root, file: f}}
	file, errno := adapted.OpenFile(name, expsys.O_RDONLY, 0)
	if errno != 0 {
		return fail(errno)
	}
	gf.File = file
	return gf, 0
}

// Lstat implements sys.FS.
func (r *rootFS) Lstat(p string) (sys.Stat_t, expsys.Errno) {
	name, errno := guestPath(p)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	fi, err := r.root.Lstat(name)
	if err != nil {
		return sys.Stat_t{}, pathErrno(err)
	}
	return sys.NewStat_t(fi), 0
}

// Stat implements sys.FS; a link is followed only while it stays inside.
func (r *rootFS) Stat(p string) (sys.Stat_t, expsys.Errno) {
	name, errno := guestPath(p)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	fi, err := r.root.Stat(name)
	if err != nil {
		return sys.Stat_t{}, pathErrno(err)
	}
	return sys.NewStat_t(fi), 0
}

// Mkdir implements sys.FS.
func (r *rootFS) Mkdir(p string, perm fs.FileMode) expsys.Errno {
	name, errno := r.writablePath(p)
	if errno != 0 {
		return errno
	}
	if !r.quota.reserve(entryBytes) {
		return errQuota
	}
	if err := r.root.Mkdir(name, perm&permMask); err != nil {
		r.quota.release(entryBytes)
		return pathErrno(err)
	}
	return 0
}

// Chmod implements sys.FS; only the permission bits are applied.
func (r *rootFS) Chmod(p string, perm fs.FileMode) expsys.Errno {
	name, errno := r.writablePath(p)
	if errno != 0 {
		return errno
	}
	return pathErrno(r.root.Chmod(name, perm&permMask))
}

// Rename implements sys.FS within this mount. (wazero refuses a rename
// between two mounts before it gets here; the executor reports it as EXDEV.)
// A file replaced by the rename gives its bytes back to the quota.
func (r *rootFS) Rename(from, to string) expsys.Errno {
	src, errno := r.writablePath(from)
	if errno != 0 {
		return errno
	}
	dst, errno := r.writablePath(to)
	if errno != 0 {
		return errno
	}
	srcInfo, err := r.root.Lstat(src)
	if err != nil {
		return pathErrno(err)
	}
	dstInfo, dstErr := r.root.Lstat(dst)
	if err := r.root.Rename(src, dst); err != nil {
		return pathErrno(err)
	}
	if dstErr == nil && !os.SameFile(srcInfo, dstInfo) {
		r.removed(dstInfo)
	}
	return 0
}

// Rmdir implements sys.FS.
func (r *rootFS) Rmdir(p string) expsys.Errno {
	name, errno := r.writablePath(p)
	if errno != 0 {
		return errno
	}
	fi, err := r.root.Lstat(name)
	if err != nil {
		return pathErrno(err)
	}
	if !fi.IsDir() {
		return expsys.ENOTDIR
	}
	if err := r.root.Remove(name); err != nil {
		return pathErrno(err)
	}
	r.removed(fi)
	return 0
}

// Unlink implements sys.FS.
func (r *rootFS) Unlink(p string) expsys.Errno {
	name, errno := r.writablePath(p)
	if errno != 0 {
		return errno
	}
	fi, err := r.root.Lstat(name)
	if err != nil {
		return pathErrno(err)
	}
	if fi.IsDir() {
		return expsys.EISDIR
	}
	if err := r.root.Remove(name); err != nil {
		return pathErrno(err)
	}
	r.removed(fi)
	return 0
}

// Link implements sys.FS. Both names resolve inside this mount; a final
// symbolic link in oldPath is linked itself, not followed.
func (r *rootFS) Link(oldPath, newPath string) expsys.Errno {
	oldName, errno := r.writablePath(oldPath)
	if errno != 0 {
		return errno
	}
	newName, errno := r.writablePath(newPath)
	if errno != 0 {
		return errno
	}
	if !r.quota.reserve(entryBytes) {
		return errQuota
	}
	if err := r.root.Link(oldName, newName); err != nil {
		r.quota.release(entryBytes)
		return pathErrno(err)
	}
	return 0
}

// Symlink implements sys.FS. A target that is absolute or climbs above the
// mount is refused with EPERM (see linkEscapes).
func (r *rootFS) Symlink(target, link string) expsys.Errno {
	name, errno := r.writablePath(link)
	if errno != 0 {
		return errno
	}
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return expsys.EINVAL
	}
	if linkEscapes(name, target) {
		return expsys.EPERM
	}
	if !r.quota.reserve(entryBytes) {
		return errQuota
	}
	if err := r.root.Symlink(target, strings.TrimSuffix(name, "/")); err != nil {
		r.quota.release(entryBytes)
		return pathErrno(err)
	}
	return 0
}

// Readlink implements sys.FS. It reads the link; it never follows it.
func (r *rootFS) Readlink(p string) (string, expsys.Errno) {
	name, errno := guestPath(p)
	if errno != 0 {
		return "", errno
	}
	target, err := r.root.Readlink(name)
	if err != nil {
		return "", pathErrno(err)
	}
	return target, 0
}

// Utimens implements sys.FS.
func (r *rootFS) Utimens(p string, atim, mtim int64) expsys.Errno {
	name, errno := r.writablePath(p)
	if errno != 0 {
		return errno
	}
	return pathErrno(r.root.Chtimes(name, timeOf(atim), timeOf(mtim)))
}

// timeOf converts a wazero timestamp; the zero time leaves it unchanged.
func timeOf(ns int64) time.Time {
	if ns == expsys.UTIME_OMIT {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// writablePath is guestPath for operations that change the mount: EROFS on
// a read-only one.
func (r *rootFS) writablePath(p string) (string, expsys.Errno) {
	if r.readOnly {
		return "", expsys.EROFS
	}
	return guestPath(p)
}

// removed gives back to the quota what a name removed from this mount held:
// its entry, and a regular file's bytes when that was its last name. The
// bytes of a file still open in this run are given back when it is closed,
// since the host frees them only then.
func (r *rootFS) removed(fi fs.FileInfo) {
	r.quota.release(entryBytes)
	if !fi.Mode().IsRegular() {
		return
	}
	st := sys.NewStat_t(fi)
	if st.Nlink > 1 || st.Ino == 0 {
		return // other names keep the bytes, or the platform cannot tell
	}
	if !r.quota.orphan(inodeOf(st)) {
		r.quota.release(st.Size)
	}
}

// openedFS is the fs.FS through which wazero's adapter (sysfs.AdaptFS) gets
// a file that OpenFile has already opened, safely, through the mount's
// os.Root. The adapter asks for it once; it opens a name again only to
// rewind a directory (Seek to 0 before Readdir), and that goes through the
// same os.Root.
type openedFS struct {
	root *os.Root
	file *os.File // handed out by the first Open
}

// Open implements fs.FS.
func (o *openedFS) Open(name string) (fs.File, error) {
	if f := o.file; f != nil {
		o.file = nil
		return f, nil
	}
	return o.root.Open(name)
}

// guestFile is a file or directory opened by the guest in a rootFS.
//
// Reading, seeking, listing and stat come from wazero's own adapter of an
// fs.File (sysfs.AdaptFS, embedded as File). That is also why this package
// declares no Seek method: go vet's stdmethods check rejects a method named
// Seek that does not return error, and sys.File's returns sys.Errno. What
// changes the host is written here, around the quota: Write, Pwrite,
// Truncate, append mode, and Close, which may give bytes back.
type guestFile struct {
	expsys.File

	fs      *rootFS
	os      *os.File // the same file (a regular file is never reopened)
	append  bool     // writes go to the end (emulated: see Write)
	id      inode    // set when tracked
	tracked bool     // registered as open with the quota
	closed  bool
}

// IsAppend implements sys.File.
func (f *guestFile) IsAppend() bool { return f.append }

// SetAppend implements sys.File.
func (f *guestFile) SetAppend(enable bool) expsys.Errno {
	f.append = enable
	return 0
}

// size returns the file's current size on the host.
func (f *guestFile) size() (int64, expsys.Errno) {
	fi, err := f.os.Stat()
	if err != nil {
		return 0, fileErrno(err)
	}
	return fi.Size(), 0
}

// Write implements sys.File. The bytes that would grow the file are
// reserved from the quota first; when they do not fit, nothing is written
// and the call fails (ENOSPC for the guest). In append mode the data goes to
// the current end of the file and the offset moves past it, as O_APPEND
// would do; the host descriptor itself is never in append mode, so that
// SetAppend can turn it off again.
func (f *guestFile) Write(buf []byte) (int, expsys.Errno) {
	if f.fs.readOnly {
		return 0, expsys.EROFS
	}
	if len(buf) == 0 {
		return 0, 0
	}
	size, errno := f.size()
	if errno != 0 {
		return 0, errno
	}
	if f.append {
		n, errno := f.writeAt(buf, size, size)
		if _, err := f.os.Seek(size+int64(n), io.SeekStart); err != nil && errno == 0 {
			errno = fileErrno(err)
		}
		return n, errno
	}
	off, err := f.os.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, fileErrno(err)
	}
	reserved := max(off+int64(len(buf))-size, 0)
	if !f.fs.quota.reserve(reserved) {
		return 0, errQuota
	}
	n, err := f.os.Write(buf)
	f.settle(reserved, off+int64(n)-size)
	return n, fileErrno(err)
}

// Pwrite implements sys.File, with the quota as for Write; writing past the
// end counts the hole too.
func (f *guestFile) Pwrite(buf []byte, off int64) (int, expsys.Errno) {
	if f.fs.readOnly {
		return 0, expsys.EROFS
	}
	if off < 0 {
		return 0, expsys.EINVAL
	}
	if len(buf) == 0 {
		return 0, 0
	}
	size, errno := f.size()
	if errno != 0 {
		return 0, errno
	}
	return f.writeAt(buf, off, size)
}

// writeAt writes buf at off in a file of the given size, within the quota.
func (f *guestFile) writeAt(buf []byte, off, size int64) (int, expsys.Errno) {
	reserved := max(off+int64(len(buf))-size, 0)
	if !f.fs.quota.reserve(reserved) {
		return 0, errQuota
	}
	n, err := f.os.WriteAt(buf, off)
	f.settle(reserved, off+int64(n)-size)
	return n, fileErrno(err)
}

// settle gives back the part of a reservation that a short or failed write
// did not use.
func (f *guestFile) settle(reserved, grown int64) {
	if used := max(grown, 0); used < reserved {
		f.fs.quota.release(reserved - used)
	}
}

// Truncate implements sys.File: growth is reserved from the quota, and
// shrinking gives bytes back.
func (f *guestFile) Truncate(size int64) expsys.Errno {
	if f.fs.readOnly {
		return expsys.EROFS
	}
	if size < 0 {
		return expsys.EINVAL
	}
	cur, errno := f.size()
	if errno != 0 {
		return errno
	}
	grow := size - cur
	if !f.fs.quota.reserve(grow) {
		return errQuota
	}
	if err := f.os.Truncate(size); err != nil {
		f.fs.quota.release(max(grow, 0))
		return fileErrno(err)
	}
	if grow < 0 {
		f.fs.quota.release(-grow)
	}
	return 0
}

// Sync implements sys.File.
func (f *guestFile) Sync() expsys.Errno { return fileErrno(f.os.Sync()) }

// Datasync implements sys.File.
func (f *guestFile) Datasync() expsys.Errno { return fileErrno(f.os.Sync()) }

// Utimens implements sys.File: EROFS on a read-only mount, else ENOSYS
// (os.File cannot set times through a descriptor portably; setting them by
// path, FS.Utimens, works).
func (f *guestFile) Utimens(atim, mtim int64) expsys.Errno {
	if f.fs.readOnly {
		return expsys.EROFS
	}
	return expsys.ENOSYS
}

// Close implements sys.File. Closing the last descriptor of a file whose
// last name is gone gives its bytes back to the quota.
func (f *guestFile) Close() expsys.Errno {
	if f.tracked && !f.closed && f.fs.quota.closed(f.id) {
		if size, errno := f.size(); errno == 0 {
			f.fs.quota.release(size)
		}
	}
	f.closed = true
	return f.File.Close()
}
