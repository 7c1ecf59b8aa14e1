//go:build linux

package safefs

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// secret is what the marker outside every root holds; no test may ever
// find it beneath a destination.
const secret = "SECRET-outside-the-root"

// layout is a temporary directory with a root to work on, a destination
// and, beside them, a directory "outside" holding a marker file (mode 0600).
type layout struct {
	root, dst, outside, marker string
}

func newLayout(t testing.TB) layout {
	t.Helper()
	base := t.TempDir()
	l := layout{
		root:    filepath.Join(base, "root"),
		dst:     filepath.Join(base, "dst"),
		outside: filepath.Join(base, "outside"),
	}
	l.marker = filepath.Join(l.outside, "marker")
	for _, d := range []string{l.root, l.dst, l.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(l.marker, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(l.marker, 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l layout) write(t testing.TB, rel, data string) {
	t.Helper()
	p := filepath.Join(l.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (l layout) symlink(t testing.TB, target, rel string) {
	t.Helper()
	p := filepath.Join(l.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// checkOutside fails when the marker changed (content or mode), when the
// outside directory gained an entry, or when a file beneath dst holds the
// secret.
func (l layout) checkOutside(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(l.marker)
	if err != nil || string(b) != secret {
		t.Fatalf("marker changed: %q %v", b, err)
	}
	fi, err := os.Lstat(l.marker)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("marker mode changed: %v %v", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(l.outside)
	if len(ents) != 1 {
		t.Fatalf("outside holds %d entries", len(ents))
	}
	_ = filepath.WalkDir(l.dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
			t.Fatalf("%s holds the secret from outside the root", p)
		}
		return nil
	})
}

// bothWays runs f once with openat2 and once walking element by element.
func bothWays(t *testing.T, f func(t *testing.T)) {
	for _, on := range []bool{true, false} {
		name := "openat2"
		if !on {
			name = "per-element"
		}
		t.Run(name, func(t *testing.T) {
			useOpenat2 = on
			defer func() { useOpenat2 = true }()
			f(t)
		})
	}
}

func wantUnsafe(t *testing.T, err error, words ...string) {
	t.Helper()
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("got %v, want ErrUnsafe", err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not say %q", err, w)
		}
	}
}

func TestCopyRefusesPathThroughSymlink(t *testing.T) {
	bothWays(t, func(t *testing.T) {
		l := newLayout(t)
		l.symlink(t, "/", "link")
		l.symlink(t, l.outside, "out")
		l.write(t, "d/ok", "fine")
		l.symlink(t, "../out", "d/up")
		for _, rel := range []string{"link/etc/passwd", "out/marker", "d/up/marker", "link/" + strings.TrimPrefix(l.marker, "/")} {
			err := Copy(l.root, rel, l.dst, nil)
			first := strings.SplitN(rel, "/", 2)[0]
			if strings.HasPrefix(rel, "d/") {
				first = "d/up"
			}
			wantUnsafe(t, err, `path component "`+first+`" is a symbolic link`)
		}
		l.checkOutside(t)
	})
}

func TestCopyRefusesSymlinkArtifact(t *testing.T) {
	l := newLayout(t)
	l.symlink(t, l.marker, "x")
	l.symlink(t, "../outside/marker", "sub/y")
	wantUnsafe(t, Copy(l.root, "x", l.dst, nil), `"x" is a symbolic link`)
	wantUnsafe(t, Copy(l.root, "sub/y", l.dst, nil), `"sub/y" is a symbolic link`)
	l.checkOutside(t)
}

func TestCopyKeepsInnerSymlinksAsLinks(t *testing.T) {
	l := newLayout(t)
	l.write(t, "tree/a.txt", "hello")
	l.write(t, "tree/sub/b.txt", "world")
	l.symlink(t, l.marker, "tree/abs")
	l.symlink(t, "../../outside/marker", "tree/sub/rel")
	l.symlink(t, "/", "tree/rootdir")
	lim := &Limit{Max: 100}
	if err := Copy(l.root, "tree", l.dst, lim); err != nil {
		t.Fatal(err)
	}
	if lim.Used() != int64(len("hello")+len("world")) {
		t.Errorf("used %d bytes", lim.Used())
	}
	for rel, want := range map[string]string{"tree/abs": l.marker, "tree/sub/rel": "../../outside/marker", "tree/rootdir": "/"} {
		got, err := os.Readlink(filepath.Join(l.dst, rel))
		if err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", rel, got, err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(l.dst, "tree/sub/b.txt")); string(b) != "world" {
		t.Errorf("b.txt = %q", b)
	}
	l.checkOutside(t)
}

func TestCopyRefusesHardLinks(t *testing.T) {
	l := newLayout(t)
	if err := os.Link(l.marker, filepath.Join(l.root, "hl")); err != nil {
		t.Fatal(err)
	}
	wantUnsafe(t, Copy(l.root, "hl", l.dst, nil), `"hl" is a hard link`)
	l.write(t, "tree/one", "x")
	if err := os.Link(filepath.Join(l.root, "tree/one"), filepath.Join(l.root, "tree/two")); err != nil {
		t.Fatal(err)
	}
	wantUnsafe(t, Copy(l.root, "tree", l.dst, nil), `"tree/one" is a hard link`)
	wantUnsafe(t, Copy(l.root, ".", l.dst, nil), "hard link")
	// The hard link to the marker must also make Chmod and Size refuse.
	wantUnsafe(t, Chmod(l.root, 0o777, 0o666), "hard link")
	_, err := Size(l.root)
	wantUnsafe(t, err, "hard link")
	if err := os.Remove(filepath.Join(l.root, "hl")); err != nil {
		t.Fatal(err)
	}
	l.checkOutside(t)
}

// special makes one entry of each kind that must be refused.
func special(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	out["fifo"] = "named pipe"
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	t.Cleanup(func() { ln.Close() })
	out["sock"] = "socket"
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		out["null"] = "character device"
		if err := unix.Mknod(filepath.Join(dir, "loop"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))); err != nil {
			t.Fatal(err)
		}
		out["loop"] = "block device"
	}
	return out
}

func TestSpecialFilesRefused(t *testing.T) {
	l := newLayout(t)
	kinds := special(t, l.root)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for name, kind := range kinds {
			wantUnsafe(t, Copy(l.root, name, l.dst, nil), `"`+name+`" is a `+kind)
		}
		for name, kind := range kinds {
			sub := filepath.Join(l.root, "only-"+name)
			os.Mkdir(sub, 0o755)
			if err := os.Rename(filepath.Join(l.root, name), filepath.Join(sub, name)); err != nil {
				t.Error(err)
				return
			}
			wantUnsafe(t, Copy(l.root, "only-"+name, l.dst, nil), kind)
			wantUnsafe(t, Chmod(sub, 0o777, 0o666), kind)
			_, err := Size(sub)
			wantUnsafe(t, err, kind)
			d, _ := OpenDir(sub)
			_, err = d.Open(name)
			wantUnsafe(t, err, kind)
			d.Close()
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("blocked on a special file")
	}
	l.checkOutside(t)
}

func TestCopyQuota(t *testing.T) {
	l := newLayout(t)
	l.write(t, "a", strings.Repeat("a", 60))
	l.write(t, "b", strings.Repeat("b", 40))
	l.write(t, "c", "c")
	lim := &Limit{Max: 100}
	if err := Copy(l.root, "a", l.dst, lim); err != nil {
		t.Fatal(err)
	}
	if err := Copy(l.root, "b", l.dst, lim); err != nil {
		t.Fatalf("exactly at the limit: %v", err)
	}
	err := Copy(l.root, "c", l.dst, lim)
	if !errors.Is(err, ErrQuota) || !strings.Contains(err.Error(), "100 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
	if lim.Used() != 101 {
		t.Errorf("used %d, want it to stop at 101", lim.Used())
	}
	// A big file stops at the limit, not after reading it all.
	big := filepath.Join(l.root, "big")
	if err := os.WriteFile(big, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	lim = &Limit{Max: 10}
	if err := Copy(l.root, "big", t.TempDir(), lim); !errors.Is(err, ErrQuota) || lim.Used() != 11 {
		t.Fatalf("big: %v, used %d", err, lim.Used())
	}
}

func TestCopyMissingCollidingAndBadPaths(t *testing.T) {
	l := newLayout(t)
	l.write(t, "d/f", "x")
	if err := Copy(l.root, "nope/x", l.dst, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if err := Copy(l.root, "d/f", l.dst, nil); err != nil {
		t.Fatal(err)
	}
	if err := Copy(l.root, "d/f", l.dst, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("again: %v", err)
	}
	if err := Copy(l.root, "d", l.dst, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("parent after child: %v", err)
	}
	if err := Copy(l.root, "d/f/x", l.dst, nil); err == nil || errors.Is(err, ErrUnsafe) {
		t.Errorf("through a file: %v", err)
	}
	for _, rel := range []string{"../outside/marker", "d/../../outside/marker", "/etc/passwd", "a\x00b"} {
		if err := Copy(l.root, rel, l.dst, nil); !errors.Is(err, ErrUnsafe) {
			t.Errorf("%q: %v", rel, err)
		}
	}
	// Redundant slashes and dots are fine.
	if err := Copy(l.root, "./d//f", t.TempDir(), nil); err != nil {
		t.Errorf("./d//f: %v", err)
	}
	l.checkOutside(t)
}

func TestChmodNeverFollows(t *testing.T) {
	l := newLayout(t)
	l.write(t, "f", "x")
	l.write(t, "sub/g", "y")
	l.symlink(t, l.marker, "sub/abs")
	l.symlink(t, l.outside, "dirlink")
	if err := Chmod(l.root, 0o777, 0o666); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]fs.FileMode{".": 0o777, "f": 0o666, "sub": 0o777, "sub/g": 0o666} {
		fi, err := os.Lstat(filepath.Join(l.root, rel))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", rel, fi.Mode(), err, want)
		}
	}
	if fi, _ := os.Stat(l.outside); fi.Mode().Perm() != 0o755 {
		t.Errorf("outside dir mode changed to %v", fi.Mode())
	}
	// A root that is a symlink is refused too.
	link := filepath.Join(t.TempDir(), "l")
	os.Symlink(l.marker, link)
	wantUnsafe(t, Chmod(link, 0o777, 0o666), "symbolic link")
	// A single file.
	if err := Chmod(filepath.Join(l.root, "f"), 0o700, 0o600); err != nil {
		t.Fatal(err)
	}
	l.checkOutside(t)
}

func TestSize(t *testing.T) {
	l := newLayout(t)
	l.write(t, "a", "12345")
	l.write(t, "s/b", "123")
	l.symlink(t, l.marker, "s/m")
	l.symlink(t, l.outside, "o")
	n, err := Size(l.root)
	if err != nil || n != 8 {
		t.Fatalf("size %d %v", n, err)
	}
	if n, err := Size(filepath.Join(l.root, "a")); err != nil || n != 5 {
		t.Fatalf("file size %d %v", n, err)
	}
}

func TestTooDeep(t *testing.T) {
	l := newLayout(t)
	p := l.root
	for range MaxDepth + 1 {
		p = filepath.Join(p, "d")
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	wantUnsafe(t, Copy(l.root, ".", l.dst, nil), "deep")
	_, err := Size(l.root)
	wantUnsafe(t, err, "deep")
	wantUnsafe(t, Copy(l.root, strings.Repeat("d/", MaxDepth+1), l.dst, nil), "deep")
}

// TestSwapRace swaps a directory of the tree for a symlink to outside, and
// back, as fast as it can while Copy and Chmod run: neither may ever reach
// the marker, whichever state each lookup sees.
func TestSwapRace(t *testing.T) {
	bothWays(t, func(t *testing.T) {
		l := newLayout(t)
		l.write(t, "real/marker", "inside")
		if err := os.Symlink(l.outside, filepath.Join(l.root, "fake")); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			a, b := filepath.Join(l.root, "real"), filepath.Join(l.root, "fake")
			tmp := filepath.Join(l.root, "tmp")
			for {
				select {
				case <-stop:
					return
				default:
				}
				// d is the real directory one moment and a symlink to outside the next.
				_ = os.Rename(a, filepath.Join(l.root, "d"))
				_ = os.Rename(filepath.Join(l.root, "d"), tmp)
				_ = os.Rename(b, filepath.Join(l.root, "d"))
				_ = os.Rename(filepath.Join(l.root, "d"), b)
				_ = os.Rename(tmp, a)
			}
		}()
		deadline := time.Now().Add(700 * time.Millisecond)
		copied := 0
		for i := 0; time.Now().Before(deadline); i++ {
			dst := filepath.Join(l.dst, strings.Repeat("x", 1+i%5), filepath.Base(t.TempDir()))
			os.MkdirAll(dst, 0o755)
			if Copy(l.root, "d/marker", dst, nil) == nil {
				copied++
			}
			_ = Chmod(l.root, 0o755, 0o644)
			_, _ = Size(l.root)
		}
		close(stop)
		<-done
		t.Logf("%d copies succeeded", copied)
		l.checkOutside(t)
	})
}

// FuzzResolve builds a tree from setup (lines "d NAME", "f NAME", "l NAME
// TARGET", "h NAME" for a hard link to the outside marker, "p NAME" for a
// fifo; NAME may hold slashes) and then resolves, copies, sizes and chmods
// rel beneath it. Nothing outside the root may ever be opened, read or
// changed: the marker keeps its bytes and mode, no file under the
// destination holds its secret, and a directory OpenPath returns is one of
// the root's own.
func FuzzResolve(f *testing.F) {
	f.Add("d a\nl a/b /\nf c", "a/b/etc/passwd")
	f.Add("l up ..\nl abs /", "up/outside/marker")
	f.Add("d a\nd a/b\nl a/b/c ../../..", "a/b/c/outside")
	f.Add("l x ../outside", "x/marker")
	f.Add("h hard\nf ok", ".")
	f.Add("p fifo\nd d\nl d/l fifo", "d")
	f.Add("d a", "a/../../outside")
	f.Add("d a\nf a/b", "a//./b")
	f.Add("l self self", "self/x")
	f.Fuzz(func(t *testing.T, setup, rel string) {
		l := newLayout(t)
		root, err := os.OpenRoot(l.root)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		dirs := map[[2]uint64]bool{}
		for _, line := range strings.Split(setup, "\n") {
			op, rest, _ := strings.Cut(line, " ")
			name, target, _ := strings.Cut(rest, " ")
			if name == "" || len(name) > 200 || len(target) > 200 {
				continue
			}
			// os.Root keeps the setup itself beneath the root.
			switch op {
			case "d":
				_ = root.Mkdir(name, 0o755)
			case "f":
				_ = root.WriteFile(name, []byte("inside"), 0o644)
			case "l":
				_ = root.Symlink(target, name)
			case "h", "p":
				if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
					continue
				}
				p := filepath.Join(l.root, name)
				if op == "h" {
					_ = os.Link(l.marker, p)
				} else {
					_ = syscall.Mkfifo(p, 0o644)
				}
			}
		}
		_ = filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				var st unix.Stat_t
				if unix.Lstat(p, &st) == nil {
					dirs[[2]uint64{uint64(st.Dev), st.Ino}] = true
				}
			}
			return nil
		})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, on := range []bool{true, false} {
				useOpenat2 = on
				d, err := OpenDir(l.root)
				if err != nil {
					t.Error(err)
					return
				}
				if sub, err := d.OpenPath(rel); err == nil {
					var st unix.Stat_t
					if unix.Fstat(sub.fd, &st) != nil || !dirs[[2]uint64{uint64(st.Dev), st.Ino}] {
						t.Errorf("OpenPath(%q) opened a directory that is not beneath the root", rel)
					}
					sub.Close()
				}
				d.Close()
				dst := filepath.Join(l.dst, "openat2")
				if !on {
					dst = filepath.Join(l.dst, "per-element")
				}
				_ = os.Mkdir(dst, 0o755)
				_ = Copy(l.root, rel, dst, &Limit{Max: 1 << 20})
			}
			useOpenat2 = true
			_, _ = Size(l.root)
			_ = Chmod(l.root, 0o777, 0o666)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("blocked")
		}
		l.checkOutside(t)
	})
}

// TestOpenat2 checks that the single-call path is taken where the kernel
// has it, and refuses a symlink on its own.
func TestOpenat2(t *testing.T) {
	l := newLayout(t)
	l.write(t, "a/b/f", "x")
	l.symlink(t, l.outside, "a/l")
	d, err := OpenDir(l.root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sub, err := d.openBeneath("a/b", 2)
	if errors.Is(err, unix.ENOSYS) {
		t.Skip("no openat2 here")
	}
	if err != nil {
		t.Fatal(err)
	}
	if sub.Path() != "a/b" || sub.depth != 2 {
		t.Errorf("path %q depth %d", sub.Path(), sub.depth)
	}
	sub.Close()
	if _, err := d.openBeneath("a/l/x", 3); !errors.Is(err, unix.ELOOP) {
		t.Errorf("through a symlink: %v", err)
	}
	if _, err := d.openBeneath("a/l", 2); err == nil {
		t.Error("opened a symlink as a directory")
	}
}
