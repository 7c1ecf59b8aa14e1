// Package safefs reads, copies and changes file trees that someone else
// controls (a task's outputs, its work directory, a volume or inputs
// fetched from a requestor) without ever leaving the tree.
//
// # What it promises
//
// Beneath a root directory, nothing is reached through a symbolic link: a
// path component that is a symlink is refused (never followed), a symlink
// inside a copied tree is copied as a symlink (its target kept verbatim as
// data), and Size and Chmod skip symlinks. A relative path may not hold a
// ".." element or start with "/", and a name given to a Dir method must be
// one plain element (not "", "." or "..", no "/" or NUL). So nothing
// outside the root is opened, read, created or changed, however the tree's
// owner arranges its links, and whatever it changes while the walk runs.
//
// Files that are neither regular files, directories nor symlinks (device
// nodes, fifos, sockets) are refused, and so are hard links (a regular file
// with more than one name): such a file may be a name for something outside
// the tree, and reading or changing it would act on that. Refusals wrap
// ErrUnsafe and name the path and the reason.
//
// Copy counts the bytes it writes while it copies them and stops with
// ErrQuota as soon as a Limit is passed; file data is always copied (never
// hard-linked), so the source's owner cannot change the copy afterwards.
//
// # How
//
// The root itself (srcRoot, dstDir, the path given to OpenDir) is trusted:
// it is opened as given, except that its last element must not be a
// symlink. Everything beneath it is reached one name at a time, relative to
// the already open parent directory (openat, mkdirat, symlinkat, readlinkat
// and fstatat on the parent's descriptor), with O_NOFOLLOW and
// AT_SYMLINK_NOFOLLOW, so the kernel never follows a link on our behalf and
// no path is resolved twice. On Linux a relative path of several elements
// is first resolved in one openat2 call with RESOLVE_BENEATH,
// RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS; where openat2 is missing
// (before Linux 5.6, or filtered) or refuses, the path is walked one
// element at a time as above, which also names the element at fault.
//
// Files are classified with fstatat before they are opened and checked again
// with fstat on the open descriptor. Opens use O_NONBLOCK and O_NOCTTY, so a
// fifo swapped in after the check does not block and is refused; a device
// node swapped in between the check and the open is opened (by its driver)
// but refused before a byte is read or changed. Against an owner that no
// longer runs, as a finished task, there is no such window.
//
// The package works on Unix systems; elsewhere every call fails with
// errors.ErrUnsupported.
package safefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

var (
	// ErrUnsafe marks a path or file refused because using it could reach
	// outside the root: a symlink where a directory or file was expected, a
	// hard link, a device node, a fifo, a socket, a ".." or empty name, or a
	// tree deeper than MaxDepth.
	ErrUnsafe = errors.New("refused")
	// ErrQuota is returned by Copy once the bytes copied passed its Limit.
	ErrQuota = errors.New("over the byte limit")
)

// MaxDepth is how many directories deep a tree may nest below its root;
// deeper trees are refused (each level holds an open descriptor).
const MaxDepth = 256

// Limit bounds the file bytes written by one or more Copy calls that share
// it. It is not safe for concurrent use.
type Limit struct {
	// Max is the most bytes allowed; zero or less means no bound.
	Max  int64
	used int64
}

// Used is the number of file bytes copied so far under l.
func (l *Limit) Used() int64 { return l.used }

// Kind is the type of an entry that the package accepts.
type Kind uint8

// The kinds of entries. Everything else is refused.
const (
	KindFile Kind = iota + 1
	KindDir
	KindSymlink
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "directory"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is one accepted entry of a directory, as fstatat saw it.
type Entry struct {
	Name string
	Kind Kind
	// Size is the length in bytes of a file (of a symlink: of its target).
	Size int64
}

// Dir is an open directory beneath (or at) a root. Its methods take one
// name, never a path, and never follow a symlink at that name. Close it
// when done.
type Dir struct {
	f *os.File
	// fd is f's descriptor, kept to pass to the *at calls.
	fd int
	// rel is the directory's path relative to the root ("." for the root),
	// for messages.
	rel   string
	depth int
}

// Path is the directory's path relative to the root it was opened from
// ("." for the root itself).
func (d *Dir) Path() string { return d.rel }

// Close releases the directory.
func (d *Dir) Close() error { return d.f.Close() }

// relName is the root-relative path of name inside d.
func (d *Dir) relName(name string) string { return path.Join(d.rel, name) }

// checkName refuses anything but a single path element.
func (d *Dir) checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: %q in %s is not a plain name", ErrUnsafe, name, d.rel)
	}
	return nil
}

// unsafef formats a refusal.
func unsafef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsafe}, args...)...)
}

// splitRel splits a slash-separated path relative to a root into its
// elements, dropping empty and "." elements. An absolute path or a ".."
// element is refused.
func splitRel(rel string) ([]string, error) {
	if strings.HasPrefix(rel, "/") {
		return nil, unsafef("%q is not a relative path", rel)
	}
	if strings.ContainsRune(rel, 0) {
		return nil, unsafef("%q contains NUL", rel)
	}
	var out []string
	for _, c := range strings.Split(rel, "/") {
		switch c {
		case "", ".":
		case "..":
			return nil, unsafef("%q leaves its root (\"..\")", rel)
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

// OpenPath opens the directory at rel beneath d (slash-separated, relative;
// "" or "." is d itself, opened anew). No element of rel may be a symlink or
// "..".
func (d *Dir) OpenPath(rel string) (*Dir, error) {
	comps, err := splitRel(rel)
	if err != nil {
		return nil, err
	}
	return d.openPath(comps)
}

func (d *Dir) openPath(comps []string) (*Dir, error) {
	if d.depth+len(comps) > MaxDepth {
		return nil, unsafef("%s is more than %d directories deep", path.Join(append([]string{d.rel}, comps...)...), MaxDepth)
	}
	if len(comps) == 0 {
		return d.reopen()
	}
	rel := strings.Join(comps, "/")
	if nd, err := d.openBeneath(rel, len(comps)); err == nil {
		return nd, nil
	}
	// openat2 is missing or refused: walk one element at a time, which is
	// as safe and says which element is at fault.
	cur := d
	for _, c := range comps {
		next, err := cur.openComponent(c)
		if cur != d {
			cur.Close()
		}
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// openComponent opens the directory name inside d as one element of a
// longer path, saying what is wrong with it when it is no directory.
func (d *Dir) openComponent(name string) (*Dir, error) {
	e, err := d.Lstat(name)
	if err != nil {
		return nil, err
	}
	switch e.Kind {
	case KindSymlink:
		return nil, unsafef("path component %q is a symbolic link", d.relName(name))
	case KindFile:
		return nil, &fs.PathError{Op: "open", Path: d.relName(name), Err: errNotDir}
	}
	return d.OpenDir(name)
}

// Copy copies the file or directory tree at rel beneath srcRoot to the same
// rel beneath dstDir, creating the directories on the way in dstDir (mode
// 0755; files get 0644). rel "" or "." copies srcRoot's entries into dstDir.
//
// rel must not be, or pass through, a symlink: that is refused. Inside a
// copied tree, symlinks are recreated as symlinks with the same target,
// which is never followed. Hard links, device nodes, fifos and sockets are
// refused (ErrUnsafe). Nothing at the destination is replaced: an entry
// that exists there already fails with an error wrapping fs.ErrExist. A
// missing rel fails with an error wrapping fs.ErrNotExist. File bytes are
// counted into lim (nil: no bound) as they are copied; once they pass
// lim.Max the copy stops with ErrQuota, leaving what it wrote.
func Copy(srcRoot, rel, dstDir string, lim *Limit) error {
	comps, err := splitRel(rel)
	if err != nil {
		return err
	}
	src, err := OpenDir(srcRoot)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := OpenDir(dstDir)
	if err != nil {
		return err
	}
	defer dst.Close()
	if len(comps) == 0 {
		return copyDir(src, dst, lim)
	}
	sp, err := src.openPath(comps[:len(comps)-1])
	if err != nil {
		return err
	}
	defer sp.Close()
	dp, err := makePath(dst, comps[:len(comps)-1])
	if err != nil {
		return err
	}
	defer dp.Close()
	name := comps[len(comps)-1]
	e, err := sp.Lstat(name)
	if err != nil {
		return err
	}
	if e.Kind == KindSymlink {
		return unsafef("%q is a symbolic link", sp.relName(name))
	}
	return copyEntry(sp, dp, e, lim)
}

// makePath opens (creating as needed) the directories comps beneath d.
func makePath(d *Dir, comps []string) (*Dir, error) {
	cur, err := d.reopen()
	if err != nil {
		return nil, err
	}
	for _, c := range comps {
		next, err := cur.OpenDir(c)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			next, err = cur.Mkdir(c, 0o755)
		case err != nil:
			err = fmt.Errorf("%w: %s is in the way (%w)", fs.ErrExist, cur.relName(c), err)
		}
		cur.Close()
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// copyEntry copies entry e of src into dst under the same name.
func copyEntry(src, dst *Dir, e Entry, lim *Limit) error {
	switch e.Kind {
	case KindFile:
		return copyFile(src, dst, e.Name, lim)
	case KindDir:
		sd, err := src.OpenDir(e.Name)
		if err != nil {
			return err
		}
		defer sd.Close()
		dd, err := dst.Mkdir(e.Name, 0o755)
		if err != nil {
			return err
		}
		defer dd.Close()
		return copyDir(sd, dd, lim)
	default: // KindSymlink
		target, err := src.Readlink(e.Name)
		if err != nil {
			return err
		}
		return dst.Symlink(target, e.Name)
	}
}

func copyDir(src, dst *Dir, lim *Limit) error {
	entries, err := src.ReadDir()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := copyEntry(src, dst, e, lim); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst *Dir, name string, lim *Limit) error {
	in, err := src.Open(name)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := dst.Create(name, 0o644)
	if err != nil {
		return err
	}
	if err := copyBytes(out, in, lim, src.relName(name)); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("%s: %w", dst.relName(name), err)
	}
	return nil
}

// copyBytes copies r to w, counting into lim and stopping once it passed.
func copyBytes(w io.Writer, r io.Reader, lim *Limit, rel string) error {
	if lim == nil {
		lim = &Limit{}
	}
	src := r
	if lim.Max > 0 {
		// One byte past the room left tells "exactly full" from "over".
		src = io.LimitReader(r, max(lim.Max-lim.used, 0)+1)
	}
	n, err := io.Copy(w, src)
	lim.used += n
	if err != nil {
		return fmt.Errorf("copy %s: %w", rel, err)
	}
	if lim.Max > 0 && lim.used > lim.Max {
		return fmt.Errorf("%w: copying %s passed %d bytes", ErrQuota, rel, lim.Max)
	}
	return nil
}

// Size sums the sizes of the regular files in the tree at root (a directory
// or a file; not a symlink). Symlinks are not counted; hard links, device
// nodes, fifos and sockets are refused (ErrUnsafe).
func Size(root string) (int64, error) {
	d, f, err := openRoot(root)
	if err != nil {
		return 0, err
	}
	if f != nil {
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	defer d.Close()
	return dirSize(d)
}

func dirSize(d *Dir) (int64, error) {
	entries, err := d.ReadDir()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range entries {
		switch e.Kind {
		case KindFile:
			n += e.Size
		case KindDir:
			sd, err := d.OpenDir(e.Name)
			if err != nil {
				return n, err
			}
			m, err := dirSize(sd)
			sd.Close()
			n += m
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Chmod sets the permission bits of every directory (dirMode) and regular
// file (fileMode) in the tree at root (a directory or a file; not a
// symlink), root included. Each is changed through its own open descriptor
// (fchmod); symlinks are skipped, never followed; hard links, device nodes,
// fifos and sockets are refused (ErrUnsafe) and stop the walk.
func Chmod(root string, dirMode, fileMode fs.FileMode) error {
	d, f, err := openRoot(root)
	if err != nil {
		return err
	}
	if f != nil {
		defer f.Close()
		return f.Chmod(fileMode.Perm())
	}
	defer d.Close()
	return chmodDir(d, dirMode.Perm(), fileMode.Perm())
}

func chmodDir(d *Dir, dirMode, fileMode fs.FileMode) error {
	if err := d.Chmod(dirMode); err != nil {
		return err
	}
	entries, err := d.ReadDir()
	if err != nil {
		return err
	}
	for _, e := range entries {
		switch e.Kind {
		case KindFile:
			f, err := d.Open(e.Name)
			if err != nil {
				return err
			}
			err = f.Chmod(fileMode)
			f.Close()
			if err != nil {
				return err
			}
		case KindDir:
			sd, err := d.OpenDir(e.Name)
			if err != nil {
				return err
			}
			err = chmodDir(sd, dirMode, fileMode)
			sd.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}
