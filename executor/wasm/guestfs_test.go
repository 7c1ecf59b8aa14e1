package wasm

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	expsys "github.com/tetratelabs/wazero/experimental/sys"
)

const secret = "SECRET-7d2a"

// sandbox is a host layout for the file system tests: parent/secret.txt and
// parent/outside/ (which must stay as they are), and parent/root, the mount,
// holding links planted on the host that point out of it.
type sandbox struct {
	parent, root string
	before       []string // parent's tree outside root
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	parent := t.TempDir()
	s := &sandbox{parent: parent, root: filepath.Join(parent, "root")}
	for _, d := range []string{s.root, filepath.Join(parent, "outside"), filepath.Join(s.root, "dir")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	check(t, os.WriteFile(filepath.Join(parent, "secret.txt"), []byte(secret), 0o600))
	check(t, os.WriteFile(filepath.Join(s.root, "file"), []byte("inside"), 0o644))
	for name, target := range map[string]string{
		"abs":    filepath.Join(parent, "secret.txt"),
		"up":     "../secret.txt",
		"parent": "..",
		"absdir": filepath.Join(parent, "outside"),
		"l1":     ".",
		"l2":     "l1/..",
		"inside": "file",
	} {
		check(t, os.Symlink(target, filepath.Join(s.root, name)))
	}
	s.before = s.outsideTree(t)
	return s
}

// outsideTree lists parent without root, links not followed.
func (s *sandbox) outsideTree(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(s.parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == s.root {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprint(p, " ", fi.Mode(), " ", fi.ModTime(), " ", fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unchanged fails when anything outside the root changed.
func (s *sandbox) unchanged(t testing.TB) {
	t.Helper()
	if after := s.outsideTree(t); !slices.Equal(s.before, after) {
		t.Fatalf("outside the mount changed:\nbefore %q\nafter  %q", s.before, after)
	}
	if b, err := os.ReadFile(filepath.Join(s.parent, "secret.txt")); err != nil || string(b) != secret {
		t.Fatalf("secret: %q %v", b, err)
	}
}

func (s *sandbox) fs(t testing.TB, readOnly bool, quota int64) *rootFS {
	t.Helper()
	r, err := openRootFS(s.root, "/m", readOnly, newDiskQuota(quota))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.close() })
	return r
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readAll reads f to the end.
func readAll(f expsys.File) ([]byte, expsys.Errno) {
	var out []byte
	buf := make([]byte, 512)
	for {
		n, errno := f.Read(buf)
		out = append(out, buf[:n]...)
		if errno != 0 || n == 0 {
			return out, errno
		}
	}
}

func TestGuestPath(t *testing.T) {
	for in, want := range map[string]string{
		"":             ".",
		".":            ".",
		"/":            ".",
		"//a//b/":      "a/b/",
		"a/./b":        "a/b",
		"a/../b":       "b",
		"a/..":         ".",
		"/x":           "x",
		"dir/":         "dir/",
		"a/b/../../c/": "c/",
	} {
		if got, errno := guestPath(in); got != want || errno != 0 {
			t.Errorf("guestPath(%q) = %q, %v; want %q", in, got, errno, want)
		}
	}
	for _, in := range []string{"..", "../x", "/..", "a/../..", "a/../../b", "./../x", "x\x00y"} {
		if got, errno := guestPath(in); errno == 0 {
			t.Errorf("guestPath(%q) = %q, want an error", in, got)
		}
	}
}

// TestRootFSConfinement calls the file system directly with every path that
// leads out through a planted link or "..", for every operation.
func TestRootFSConfinement(t *testing.T) {
	s := newSandbox(t)
	r := s.fs(t, false, 1<<20)
	escaping := []string{
		"abs", "up", "parent/secret.txt", "absdir/x", "l2/secret.txt", "l2/outside/x",
		"../secret.txt", "/../secret.txt", "dir/../../secret.txt", "parent", "l2",
	}
	for _, p := range escaping {
		for _, flag := range []expsys.Oflag{expsys.O_RDONLY, expsys.O_RDWR, expsys.O_RDWR | expsys.O_CREAT, expsys.O_RDWR | expsys.O_CREAT | expsys.O_TRUNC, expsys.O_RDONLY | expsys.O_DIRECTORY} {
			if f, errno := r.OpenFile(p, flag, 0o644); errno != expsys.EPERM {
				if f != nil {
					b, _ := readAll(f)
					f.Close()
					t.Errorf("OpenFile(%q, %v) opened it (read %q)", p, flag, b)
				} else {
					t.Errorf("OpenFile(%q, %v) = %v, want EPERM", p, flag, errno)
				}
			}
		}
		if _, errno := r.Stat(p); errno != expsys.EPERM {
			t.Errorf("Stat(%q) = %v", p, errno)
		}
		for name, errno := range map[string]expsys.Errno{
			"Mkdir":    r.Mkdir(p+"/new", 0o755),
			"Chmod":    r.Chmod(p, 0o777),
			"Utimens":  r.Utimens(p, 0, 0),
			"Rename":   r.Rename(p+"/x", "stolen"),
			"RenameTo": r.Rename("file", p+"/moved"),
			"Link":     r.Link(p+"/x", "hard"),
			"LinkTo":   r.Link("file", p+"/hard"),
			"Symlink":  r.Symlink("file", p+"/soft"),
			"Unlink":   r.Unlink(p + "/x"),
			"Rmdir":    r.Rmdir(p + "/x"),
		} {
			if errno != expsys.EPERM && errno != expsys.ENOENT {
				t.Errorf("%s(%q) = %v, want EPERM (or ENOENT)", name, p, errno)
			}
		}
	}
	// The links themselves may be looked at, never through.
	if st, errno := r.Lstat("abs"); errno != 0 || st.Mode&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(abs) = %v, %v", st.Mode, errno)
	}
	if target, errno := r.Readlink("abs"); errno != 0 || target != filepath.Join(s.parent, "secret.txt") {
		t.Errorf("Readlink(abs) = %q, %v", target, errno)
	}
	if _, errno := r.OpenFile("abs", expsys.O_RDONLY|expsys.O_NOFOLLOW, 0); errno != expsys.ELOOP {
		t.Errorf("O_NOFOLLOW on a link: %v, want ELOOP", errno)
	}
	// A link that stays inside works.
	f, errno := r.OpenFile("inside", expsys.O_RDONLY, 0)
	if errno != 0 {
		t.Fatalf("open a link inside: %v", errno)
	}
	if b, _ := readAll(f); string(b) != "inside" {
		t.Errorf("read through an inside link: %q", b)
	}
	f.Close()
	// New links: absolute or climbing targets are refused, inside ones made.
	for _, target := range []string{"/etc/passwd", "..", "../x", "dir/../../x", filepath.Join(s.parent, "secret.txt")} {
		if errno := r.Symlink(target, "new"); errno != expsys.EPERM {
			t.Errorf("Symlink(%q) = %v, want EPERM", target, errno)
		}
	}
	if errno := r.Symlink("../file", "dir/ok"); errno != 0 {
		t.Errorf("Symlink(../file, dir/ok) = %v", errno)
	}
	s.unchanged(t)
}

// TestRootFSDirectoryDescriptor walks a directory opened by the guest: wazero
// joins the descriptor's name to what follows, so "dir" + "/" + "../.." must
// stop like any other path.
func TestRootFSDirectoryDescriptor(t *testing.T) {
	s := newSandbox(t)
	r := s.fs(t, true, 1)
	d, errno := r.OpenFile("dir", expsys.O_RDONLY|expsys.O_DIRECTORY, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	defer d.Close()
	for _, p := range []string{"dir/../..", "dir/../../secret.txt", "/dir/../../secret.txt"} {
		if _, errno := r.OpenFile(p, expsys.O_RDONLY, 0); errno != expsys.EPERM {
			t.Errorf("OpenFile(%q) = %v, want EPERM", p, errno)
		}
	}
	root, errno := r.OpenFile(".", expsys.O_RDONLY|expsys.O_DIRECTORY, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	defer root.Close()
	var names []string
	for {
		ents, errno := root.Readdir(3)
		if errno != 0 {
			t.Fatal(errno)
		}
		for _, e := range ents {
			names = append(names, e.Name)
			if e.Ino == 0 {
				t.Errorf("%s: no inode", e.Name)
			}
		}
		if len(ents) < 3 {
			break
		}
	}
	// Rewind, as a guest's rewinddir does, and list again.
	if _, errno := root.Seek(0, io.SeekStart); errno != 0 {
		t.Fatal(errno)
	}
	again, errno := root.Readdir(-1)
	if errno != 0 || len(again) != len(names) {
		t.Errorf("after rewind: %d entries (%v), want %d", len(again), errno, len(names))
	}
	slices.Sort(names)
	if want := []string{"abs", "absdir", "dir", "file", "inside", "l1", "l2", "parent", "up"}; !slices.Equal(names, want) {
		t.Errorf("root lists %v, want %v", names, want)
	}
	if _, errno := r.OpenFile("file", expsys.O_RDONLY|expsys.O_DIRECTORY, 0); errno != expsys.ENOTDIR {
		t.Errorf("O_DIRECTORY on a file: %v", errno)
	}
}

func TestRootFSReadOnly(t *testing.T) {
	s := newSandbox(t)
	r := s.fs(t, true, 1<<20)
	for name, errno := range map[string]expsys.Errno{
		"Mkdir":   r.Mkdir("new", 0o755),
		"Chmod":   r.Chmod("file", 0o777),
		"Utimens": r.Utimens("file", 0, 0),
		"Rename":  r.Rename("file", "moved"),
		"Link":    r.Link("file", "hard"),
		"Symlink": r.Symlink("file", "soft"),
		"Unlink":  r.Unlink("file"),
		"Rmdir":   r.Rmdir("dir"),
	} {
		if errno != expsys.EROFS {
			t.Errorf("%s on a read-only mount: %v, want EROFS", name, errno)
		}
	}
	for _, flag := range []expsys.Oflag{expsys.O_WRONLY, expsys.O_RDWR, expsys.O_RDONLY | expsys.O_CREAT, expsys.O_RDONLY | expsys.O_TRUNC, expsys.O_RDONLY | expsys.O_APPEND, expsys.O_RDWR | expsys.O_CREAT | expsys.O_EXCL} {
		if _, errno := r.OpenFile("file", flag, 0o644); errno != expsys.EROFS {
			t.Errorf("OpenFile(file, %v) = %v, want EROFS", flag, errno)
		}
	}
	f, errno := r.OpenFile("file", expsys.O_RDONLY, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	defer f.Close()
	if _, errno := f.Write([]byte("x")); errno != expsys.EROFS {
		t.Errorf("Write: %v", errno)
	}
	if _, errno := f.Pwrite([]byte("x"), 0); errno != expsys.EROFS {
		t.Errorf("Pwrite: %v", errno)
	}
	if errno := f.Truncate(0); errno != expsys.EROFS {
		t.Errorf("Truncate: %v", errno)
	}
	if errno := f.Utimens(0, 0); errno != expsys.EROFS {
		t.Errorf("Utimens: %v", errno)
	}
	if b, errno := readAll(f); errno != 0 || string(b) != "inside" {
		t.Errorf("read: %q %v", b, errno)
	}
	if b, err := os.ReadFile(filepath.Join(s.root, "file")); err != nil || string(b) != "inside" {
		t.Errorf("host file: %q %v", b, err)
	}
}

// TestQuotaAccounting checks what the quota counts and gives back.
func TestQuotaAccounting(t *testing.T) {
	s := newSandbox(t)
	const limit = 10_000
	r := s.fs(t, false, limit)
	q := r.quota
	want := func(used int64) {
		t.Helper()
		if got := q.usage(); got != used {
			t.Fatalf("quota used %d, want %d", got, used)
		}
	}
	f, errno := r.OpenFile("a", expsys.O_RDWR|expsys.O_CREAT, 0o644)
	check(t, errnoErr(errno))
	want(entryBytes)
	_, errno = f.Write(make([]byte, 4000))
	check(t, errnoErr(errno))
	want(entryBytes + 4000)
	_, errno = f.Pwrite(make([]byte, 100), 0) // inside: nothing added
	check(t, errnoErr(errno))
	want(entryBytes + 4000)
	if _, errno = f.Pwrite([]byte{1}, 20_000); errno != errQuota || !q.hit() {
		t.Fatalf("pwrite past the quota: %v", errno)
	}
	if errno = f.Truncate(50_000); errno != errQuota {
		t.Fatalf("truncate past the quota: %v", errno)
	}
	if fi, _ := os.Stat(filepath.Join(s.root, "a")); fi.Size() != 4000 {
		t.Fatalf("host file is %d bytes after refused writes", fi.Size())
	}
	check(t, errnoErr(f.Truncate(1000)))
	want(entryBytes + 1000)

	// Append mode writes at the end, whatever the offset.
	_, errno = f.Seek(0, io.SeekStart)
	check(t, errnoErr(errno))
	check(t, errnoErr(f.SetAppend(true)))
	_, errno = f.Write([]byte("tail"))
	check(t, errnoErr(errno))
	want(entryBytes + 1004)
	if off, _ := f.Seek(0, io.SeekCurrent); off != 1004 {
		t.Errorf("offset after an append: %d", off)
	}
	check(t, errnoErr(f.SetAppend(false)))
	_, errno = f.Seek(0, io.SeekStart)
	check(t, errnoErr(errno))
	_, errno = f.Write([]byte("head"))
	check(t, errnoErr(errno))
	want(entryBytes + 1004)

	// A second name holds the bytes until the last one goes; an open file
	// holds them until it is closed.
	check(t, errnoErr(r.Link("a", "b")))
	want(2*entryBytes + 1004)
	check(t, errnoErr(r.Unlink("a")))
	want(entryBytes + 1004)
	check(t, errnoErr(r.Unlink("b")))
	want(1004)
	check(t, errnoErr(f.Close()))
	want(0)

	// O_TRUNC gives the old bytes back; a rename over a file gives its
	// bytes back.
	check(t, os.WriteFile(filepath.Join(s.root, "old"), make([]byte, 3000), 0o644))
	q.used = 5000
	g, errno := r.OpenFile("old", expsys.O_RDWR|expsys.O_TRUNC, 0)
	check(t, errnoErr(errno))
	check(t, errnoErr(g.Close()))
	want(2000)
	check(t, os.WriteFile(filepath.Join(s.root, "victim"), make([]byte, 1500), 0o644))
	check(t, errnoErr(r.Rename("old", "victim")))
	want(0) // 2000 - 1500 - entryBytes, never below zero

	// Directories and links cost an entry each.
	check(t, errnoErr(r.Mkdir("d", 0o755)))
	check(t, errnoErr(r.Symlink("d", "ld")))
	want(2 * entryBytes)
	check(t, errnoErr(r.Unlink("ld")))
	check(t, errnoErr(r.Rmdir("d")))
	want(0)
	if errno := r.Unlink("dir"); errno != expsys.EISDIR {
		t.Errorf("Unlink(dir) = %v", errno)
	}
	if errno := r.Rmdir("file"); errno != expsys.ENOTDIR {
		t.Errorf("Rmdir(file) = %v", errno)
	}

	// Permission bits only: no setuid file reaches the host.
	h, errno := r.OpenFile("suid", expsys.O_RDWR|expsys.O_CREAT|expsys.O_EXCL, 0o4777)
	check(t, errnoErr(errno))
	h.Close()
	check(t, errnoErr(r.Chmod("suid", fs.ModeSetuid|fs.ModeSetgid|0o755)))
	if fi, _ := os.Stat(filepath.Join(s.root, "suid")); fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		t.Errorf("mode %v", fi.Mode())
	}
	s.unchanged(t)
}

func errnoErr(errno expsys.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

// FuzzResolve drives the mount with guest-chosen paths: a link from a to b
// is made (when allowed), then b, b/a and a are opened, created, listed,
// made, renamed and linked. Whatever happens, nothing outside the mount is
// read or changed, guestPath never yields a path that leaves the root, and
// nothing panics.
func FuzzResolve(f *testing.F) {
	for _, seed := range [][2]string{
		{"x", "abs"},
		{"l1/..", "y"},
		{"y/../secret.txt", "z"},
		{"..", "up"},
		{"parent/secret.txt", "dir/x"},
		{"l2/outside/new", "l2"},
		{"dir/..", "dir/../.."},
		{"/secret.txt", "//dir/./../up"},
		{"absdir", "absdir/f"},
		{"inside", "dir/../file"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, p := range []string{a, b, b + "/" + a} {
			if name, errno := guestPath(p); errno == 0 {
				clean := strings.TrimSuffix(name, "/")
				if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || (clean != "." && !filepath.IsLocal(clean)) {
					t.Fatalf("guestPath(%q) = %q leaves the root", p, name)
				}
			}
		}
		s := newSandbox(t)
		r := s.fs(t, false, 1<<20)
		r.Symlink(a, b)
		for _, p := range []string{b, b + "/" + a, a, "l2/" + a} {
			if f, errno := r.OpenFile(p, expsys.O_RDONLY, 0); errno == 0 {
				data, _ := readAll(f)
				if strings.Contains(string(data), secret) {
					t.Fatalf("read the secret through %q", p)
				}
				if ents, errno := f.Readdir(-1); errno == 0 {
					for _, e := range ents {
						if e.Name == "secret.txt" || e.Name == "outside" {
							t.Fatalf("listed the mount's parent through %q", p)
						}
					}
				}
				f.Close()
			}
			if f, errno := r.OpenFile(p, expsys.O_RDWR|expsys.O_CREAT, 0o644); errno == 0 {
				f.Write([]byte("w"))
				f.Close()
			}
			r.Mkdir(p+"/d", 0o755)
			r.Rename("file", p)
			r.Link("inside", p+"2")
			r.Utimens(p, 0, 0)
			r.Unlink(p)
		}
		s.unchanged(t)
	})
}

// BenchmarkGuestFileWrite measures a 4 KiB write through a writable mount
// (the quota's stat and seek included) and, for comparison, straight to the
// host file.
func BenchmarkGuestFileWrite(b *testing.B) {
	buf := make([]byte, 4096)
	b.Run("mount", func(b *testing.B) {
		r, err := openRootFS(b.TempDir(), "/m", false, newDiskQuota(1<<40))
		check(b, err)
		defer r.close()
		f, errno := r.OpenFile("f", expsys.O_RDWR|expsys.O_CREAT, 0o644)
		check(b, errnoErr(errno))
		defer f.Close()
		for b.Loop() {
			if _, errno := f.Pwrite(buf, 0); errno != 0 {
				b.Fatal(errno)
			}
		}
	})
	b.Run("host", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "f"))
		check(b, err)
		defer f.Close()
		for b.Loop() {
			if _, err := f.WriteAt(buf, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
