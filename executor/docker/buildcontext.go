package docker

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// A build context travels as one tarball (content by CID), not as a
// directory: a tarball keeps the files' modes (an executable stays
// executable), which a unixfs directory does not. ContextTar writes it on
// the requestor's side; the provider indexes it with readContext, which
// treats every byte as a stranger's.

// Bounds on a build context.
const (
	// DefaultMaxContextBytes bounds the file bytes of a build context.
	DefaultMaxContextBytes = 512 << 20
	// maxContextEntries bounds the entries of a build context.
	maxContextEntries = 100_000
	// maxLinkHops bounds the symlinks followed to resolve one path.
	maxLinkHops = 40
)

// ErrBadContext: the build context is malformed, over its bounds, or a
// COPY reaches outside it.
var ErrBadContext = errors.New("build context refused")

// ContextTar writes the directory dir as a build context tarball to w:
// regular files (modes kept), directories and symlinks (targets kept as
// they are, never followed), in lexical order, with zeroed times and
// owners, so the same tree always gives the same bytes (and CID). Other
// kinds of files are refused, and so is a tree with more than maxBytes of
// file data (DefaultMaxContextBytes when 0).
//
// A .dockerignore at dir's root (see ParseDockerignore) leaves out what
// it excludes: an excluded file is never opened, an excluded directory is
// not even walked unless an exception may re-include something below it.
// The dockerfile (its path in the context, "Dockerfile" when empty) and
// the .dockerignore are sent even when a pattern matches them, as Docker
// does. A .dockerignore that cannot be read or parsed is an error: the
// build stops rather than send what it was meant to keep back.
func ContextTar(dir, dockerfile string, w io.Writer, maxBytes int64) error {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxContextBytes
	}
	ign, err := readDockerignore(dir, dockerfile)
	if err != nil {
		return fmt.Errorf("build context %s: %w", dir, err)
	}
	tw := tar.NewWriter(w)
	var total int64
	var n int
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if _, out := ign.Excludes(rel); out {
			if d.IsDir() && !ign.mayReinclude(rel) {
				return filepath.SkipDir
			}
			// A directory walked for what an exception re-includes
			// below it: its entry stays out (readContext implies it).
			return nil
		}
		if n++; n > maxContextEntries {
			return fmt.Errorf("%w: more than %d entries", ErrBadContext, maxContextEntries)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: rel, Mode: int64(fi.Mode().Perm()), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			if total += fi.Size(); total > maxBytes {
				return fmt.Errorf("%w: more than %d bytes of files", ErrBadContext, maxBytes)
			}
		case fi.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case fi.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %s is a %s (only files, directories and symlinks)", ErrBadContext, rel, fi.Mode().Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w (did it change while being read?)", rel, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("build context %s: %w", dir, err)
	}
	return tw.Close()
}

// readDockerignore reads and parses dir's .dockerignore, if it has one,
// and keeps the dockerfile and the .dockerignore itself. A .dockerignore
// that is there and cannot be read (a dangling link, a directory) is an
// error, not a file to do without.
func readDockerignore(dir, dockerfile string) (*Dockerignore, error) {
	p := filepath.Join(dir, DockerignoreName)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", DockerignoreName, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxDockerignoreBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", DockerignoreName, err)
	}
	ign, err := ParseDockerignore(data)
	if err != nil {
		return nil, err
	}
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if df, err := contextPath(dockerfile); err == nil && df != "" {
		ign.Keep(df)
	}
	ign.Keep(DockerignoreName)
	return ign, nil
}

// ctxEntry is one entry of a build context.
type ctxEntry struct {
	name string // clean, relative; "" is the context's root
	typ  byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode int64
	size int64
	link string
	// children of a directory, sorted.
	children []string
}

// buildContext is the index of a build context tarball.
type buildContext struct {
	path    string
	entries map[string]*ctxEntry
	bytes   int64
}

// readContext indexes the build context tarball at p: entry names must be
// clean and relative, kinds files, directories or symlinks, names unique,
// and the whole within maxBytes of file data.
func readContext(p string, maxBytes int64) (*buildContext, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	defer f.Close()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadContext, fmt.Sprintf(format, args...))
	}
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, bad("not a tarball (a directory or a special file)")
	} else if fi.Size() > maxBytes+maxBytes/4+(64<<20) {
		return nil, bad("the tarball is %d bytes, over the limit of %d bytes of files", fi.Size(), maxBytes)
	}
	bc := &buildContext{path: p, entries: map[string]*ctxEntry{"": {typ: tar.TypeDir, mode: 0o755}}}
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, bad("not a tar archive: %v", err)
		}
		if n >= maxContextEntries {
			return nil, bad("more than %d entries", maxContextEntries)
		}
		name, err := cleanEntryName(h.Name)
		if err != nil || name == "." {
			return nil, bad("entry %q: not a clean relative name", h.Name)
		}
		e := &ctxEntry{name: name, mode: h.Mode & 0o777}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			e.typ, e.size = tar.TypeReg, h.Size
			if h.Size < 0 || h.Size > maxBytes-bc.bytes {
				return nil, bad("more than %d bytes of files", maxBytes)
			}
			bc.bytes += h.Size
		case tar.TypeDir:
			e.typ = tar.TypeDir
		case tar.TypeSymlink:
			e.typ, e.link = tar.TypeSymlink, h.Linkname
			if h.Linkname == "" || len(h.Linkname) > 4096 || strings.IndexByte(h.Linkname, 0) >= 0 {
				return nil, bad("symlink %s has a bad target", name)
			}
		default:
			return nil, bad("%s: entry type %q is not a file, directory or symlink", name, h.Typeflag)
		}
		if err := bc.add(e); err != nil {
			return nil, err
		}
	}
	for _, e := range bc.entries {
		sort.Strings(e.children)
	}
	return bc, nil
}

// add puts e in the index, with the directories above it.
func (bc *buildContext) add(e *ctxEntry) error {
	if old, ok := bc.entries[e.name]; ok {
		if old.typ == tar.TypeDir && e.typ == tar.TypeDir && old.children != nil {
			old.mode = e.mode // a directory implied by an earlier entry
			return nil
		}
		return fmt.Errorf("%w: %s appears twice", ErrBadContext, e.name)
	}
	bc.entries[e.name] = e
	child := e.name
	for child != "" {
		parent := path.Dir(child)
		if parent == "." {
			parent = ""
		}
		pe, ok := bc.entries[parent]
		if !ok {
			pe = &ctxEntry{name: parent, typ: tar.TypeDir, mode: 0o755}
			bc.entries[parent] = pe
		} else if pe.typ != tar.TypeDir {
			return fmt.Errorf("%w: %s is below %s, which is not a directory", ErrBadContext, e.name, parent)
		}
		pe.children = append(pe.children, child)
		if ok {
			return nil
		}
		child = parent
	}
	return nil
}

// joinInside joins the relative path rel to the context directory dir,
// lexically, and reports false when it climbs above the context's root.
func joinInside(dir, rel string) (string, bool) {
	if strings.HasPrefix(rel, "/") {
		return "", false
	}
	var stack []string
	if dir != "" {
		stack = strings.Split(dir, "/")
	}
	for _, el := range strings.Split(rel, "/") {
		switch el {
		case "", ".":
		case "..":
			if len(stack) == 0 {
				return "", false
			}
			stack = stack[:len(stack)-1]
		default:
			stack = append(stack, el)
		}
	}
	return strings.Join(stack, "/"), true
}

// resolve follows the symlinks along name (clean, relative) inside the
// context and returns the entry it names. A link whose target is absolute
// or climbs out of the context is refused: nothing outside the context is
// ever named.
func (bc *buildContext) resolve(name string) (*ctxEntry, error) {
	hops := 0
	cur := ""
	rest := []string{}
	if name != "" {
		rest = strings.Split(name, "/")
	}
	for len(rest) > 0 {
		next := path.Join(cur, rest[0])
		rest = rest[1:]
		e, ok := bc.entries[next]
		if !ok {
			return nil, &missingError{name: name, missing: next}
		}
		if e.typ == tar.TypeSymlink {
			if hops++; hops > maxLinkHops {
				return nil, fmt.Errorf("%w: %s: too many levels of symlinks", ErrBadContext, name)
			}
			target, ok := joinInside(cur, e.link)
			if !ok {
				return nil, fmt.Errorf("%w: %s is a symlink to %q, which points out of the build context", ErrBadContext, next, e.link)
			}
			cur = ""
			if target != "" {
				rest = append(strings.Split(target, "/"), rest...)
			}
			continue
		}
		if len(rest) > 0 && e.typ != tar.TypeDir {
			return nil, fmt.Errorf("%w: %s: %s is not a directory", ErrBadContext, name, next)
		}
		cur = next
	}
	return bc.entries[cur], nil
}

// missingError: a path is not in the build context. It wraps
// ErrBadContext.
type missingError struct {
	name    string // the path asked for
	missing string // the path that is not there, symlinks resolved
}

func (e *missingError) Error() string {
	return fmt.Sprintf("%v: %s is not in the build context", ErrBadContext, e.name)
}

func (e *missingError) Unwrap() error { return ErrBadContext }

// whyMissing adds to err, when it says a path is not in the context, the
// pattern of the context's .dockerignore that left the path out, if one
// did: a requestor then sees at once why the COPY fails. Any trouble
// reading the .dockerignore (on a provider, a stranger's) leaves err as
// it is.
func (bc *buildContext) whyMissing(err error) error {
	var me *missingError
	if !errors.As(err, &me) {
		return err
	}
	data, rerr := bc.readFile(DockerignoreName, MaxDockerignoreBytes)
	if rerr != nil {
		return err
	}
	ign, perr := ParseDockerignore(data)
	if perr != nil {
		return err
	}
	p, out := ign.Excludes(me.missing)
	if !out {
		return err
	}
	return fmt.Errorf("%w: %s line %d (%q) leaves it out", err, DockerignoreName, p.Line, p.String())
}

// readFile returns the bytes of the regular file name (symlinks followed
// inside the context), at most max bytes.
func (bc *buildContext) readFile(name string, max int64) ([]byte, error) {
	e, err := bc.resolve(name)
	if err != nil {
		return nil, err
	}
	if e.typ != tar.TypeReg {
		return nil, fmt.Errorf("%w: %s is not a file", ErrBadContext, name)
	}
	if e.size > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrBadContext, name, max)
	}
	var out []byte
	err = bc.each(func(h *tar.Header, r io.Reader) (bool, error) {
		if n, _ := cleanEntryName(h.Name); n != e.name {
			return true, nil
		}
		out, err = io.ReadAll(io.LimitReader(r, max))
		return false, err
	})
	return out, err
}

// each calls fn with every regular file and symlink of the tarball, in
// order, until fn returns false or an error.
func (bc *buildContext) each(fn func(h *tar.Header, r io.Reader) (bool, error)) error {
	f, err := os.Open(bc.path)
	if err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadContext, err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		more, err := fn(h, tr)
		if err != nil || !more {
			return err
		}
	}
}

// copyItem is one entry a COPY puts into the image: the context entry
// (resolved) and where it goes (an absolute path in the image).
type copyItem struct {
	from *ctxEntry
	to   string
}

// plan lists what COPY srcs dest puts where. dest is absolute; destDir
// says it names a directory (it ends with / or there are several
// sources). A source directory's contents go into dest; a symlink inside
// a copied directory is copied as a symlink, and refused if its target
// leaves the context.
func (bc *buildContext) plan(srcs []string, dest string, destDir bool) ([]copyItem, error) {
	var items []copyItem
	for _, src := range srcs {
		rel, err := contextPath(src)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadContext, err)
		}
		e, err := bc.resolve(rel)
		if err != nil {
			return nil, err
		}
		switch e.typ {
		case tar.TypeDir:
			items = append(items, copyItem{from: e, to: dest})
			if err := bc.tree(e, dest, &items); err != nil {
				return nil, err
			}
		default:
			to := dest
			if destDir {
				to = path.Join(dest, path.Base("/"+rel))
			}
			items = append(items, copyItem{from: e, to: to})
		}
		if len(items) > maxContextEntries {
			return nil, fmt.Errorf("%w: more than %d entries in one COPY", ErrBadContext, maxContextEntries)
		}
	}
	return items, nil
}

// tree lists the entries beneath directory d, placed under to.
func (bc *buildContext) tree(d *ctxEntry, to string, items *[]copyItem) error {
	for _, c := range d.children {
		e := bc.entries[c]
		dst := path.Join(to, path.Base(c))
		if e.typ == tar.TypeSymlink {
			if _, ok := joinInside(path.Dir("/" + c)[1:], e.link); !ok {
				return fmt.Errorf("%w: %s is a symlink to %q, which points out of the build context", ErrBadContext, c, e.link)
			}
		}
		*items = append(*items, copyItem{from: e, to: dst})
		if e.typ == tar.TypeDir {
			if err := bc.tree(e, dst, items); err != nil {
				return err
			}
		}
	}
	return nil
}
