//go:build linux

package content_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/offload-project/offload/storage/content"
)

const secret = "SECRET-outside-the-tree"

// outsideMarker writes a file outside any tree a test adds or gets.
func outsideMarker(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "marker")
	if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// holdsSecret reads every file of the DAG at c and tells whether one
// holds the marker's bytes.
func holdsSecret(t *testing.T, s *content.Store, c cid.Cid) bool {
	t.Helper()
	found := false
	var walk func(c cid.Cid)
	walk = func(c cid.Cid) {
		nd, err := s.DAGService().Get(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if pn, ok := nd.(*merkledag.ProtoNode); ok {
			if fsn, err := unixfs.FSNodeFromBytes(pn.Data()); err == nil && fsn.IsDir() {
				for _, l := range pn.Links() {
					walk(l.Cid)
				}
				return
			}
		}
		r, err := s.Open(t.Context(), c)
		if err != nil {
			return // a symlink
		}
		b, _ := io.ReadAll(r)
		r.Close()
		found = found || bytes.Contains(b, []byte(secret))
	}
	walk(c)
	return found
}

func TestUntrustedAddSameCIDAndLinksKept(t *testing.T) {
	n := newNode(t)
	marker := outsideMarker(t)
	src := makeTree(t)
	os.Symlink(marker, filepath.Join(src, "abs"))
	os.Symlink(filepath.Dir(marker), filepath.Join(src, "sub", "dirlink"))
	trusted, err := n.store.AddPath(t.Context(), src, content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	untrusted, err := n.store.AddPath(t.Context(), src, content.AddOptions{Untrusted: true})
	if err != nil {
		t.Fatal(err)
	}
	if !trusted.Equals(untrusted) {
		t.Fatalf("untrusted add gives %s, trusted %s", untrusted, trusted)
	}
	if holdsSecret(t, n.store, untrusted) {
		t.Fatal("a symlink was followed")
	}
	// A single file and a symlink as the path work as well.
	for _, p := range []string{filepath.Join(src, "a.txt"), filepath.Join(src, "abs")} {
		a, err1 := n.store.AddPath(t.Context(), p, content.AddOptions{})
		b, err2 := n.store.AddPath(t.Context(), p, content.AddOptions{Untrusted: true})
		if err1 != nil || err2 != nil || !a.Equals(b) {
			t.Errorf("%s: %s %v vs %s %v", p, a, err1, b, err2)
		}
	}
}

func TestUntrustedAddRefusesHardLinksAndSpecialFiles(t *testing.T) {
	n := newNode(t)
	marker := outsideMarker(t)
	for _, tc := range []struct {
		name string
		make func(t *testing.T, p string)
		want string
	}{
		{"hard link", func(t *testing.T, p string) {
			if err := os.Link(marker, p); err != nil {
				t.Skip("marker on another file system:", err)
			}
		}, "is a hard link"},
		{"fifo", func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o666); err != nil {
				t.Fatal(err)
			}
		}, "is a named pipe"},
		{"socket", func(t *testing.T, p string) {
			ln, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { ln.Close() })
		}, "is a socket"},
		{"device", func(t *testing.T, p string) {
			if os.Geteuid() != 0 {
				t.Skip("mknod needs root")
			}
			if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
				t.Fatal(err)
			}
		}, "is a character device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "outputs")
			os.MkdirAll(filepath.Join(root, "d"), 0o755)
			os.WriteFile(filepath.Join(root, "d", "ok"), []byte("ok"), 0o644)
			tc.make(t, filepath.Join(root, "d", "x"))
			for _, p := range []string{root, filepath.Join(root, "d", "x")} {
				done := make(chan error, 1)
				go func() {
					_, err := n.store.AddPath(t.Context(), p, content.AddOptions{Untrusted: true})
					done <- err
				}()
				select {
				case err := <-done:
					if !errors.Is(err, content.ErrUnsafeFile) || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("%s: got %v", p, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("add blocked")
				}
			}
		})
	}
}

func TestAddMaxBytes(t *testing.T) {
	n := newNode(t)
	root := filepath.Join(t.TempDir(), "outputs")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "a"), make([]byte, 600), 0o644)
	os.WriteFile(filepath.Join(root, "b"), make([]byte, 600), 0o644)
	if _, err := n.store.AddPath(t.Context(), root, content.AddOptions{Untrusted: true, MaxBytes: 1000}); !errors.Is(err, content.ErrTooLarge) {
		t.Fatalf("dir: %v", err)
	}
	if _, err := n.store.AddPath(t.Context(), root, content.AddOptions{Untrusted: true, MaxBytes: 1200}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := n.store.AddFile(t.Context(), bytes.NewReader(make([]byte, 5<<20)), content.AddOptions{MaxBytes: 1 << 20}); !errors.Is(err, content.ErrTooLarge) {
		t.Fatalf("file: %v", err)
	}
}

// dagNodes builds hand-made unixfs nodes in one store.
type dagNodes struct {
	t *testing.T
	s *content.Store
}

func (d dagNodes) add(nd ipld.Node) ipld.Node {
	if err := d.s.DAGService().Add(d.t.Context(), nd); err != nil {
		d.t.Fatal(err)
	}
	return nd
}

func (d dagNodes) file(b []byte) ipld.Node {
	return d.add(merkledag.NodeWithData(unixfs.FilePBData(b, uint64(len(b)))))
}

func (d dagNodes) symlink(target string) ipld.Node {
	b, err := unixfs.SymlinkData(target)
	if err != nil {
		d.t.Fatal(err)
	}
	return d.add(merkledag.NodeWithData(b))
}

type link struct {
	name string
	nd   ipld.Node
}

func (d dagNodes) dir(links ...link) ipld.Node {
	dir := merkledag.NodeWithData(unixfs.FolderPBData())
	for _, l := range links {
		if err := dir.AddNodeLink(l.name, l.nd); err != nil {
			d.t.Fatal(err)
		}
	}
	return d.add(dir)
}

// getRefused runs Get of nd into a fresh directory and wants an error
// wrapping want, with nothing left behind beside dest.
func getRefused(t *testing.T, s *content.Store, nd ipld.Node, opts content.GetOptions, want error, words string) {
	t.Helper()
	parent := t.TempDir()
	err := s.Get(t.Context(), nd.Cid(), filepath.Join(parent, "out"), opts)
	if !errors.Is(err, want) || !strings.Contains(err.Error(), words) {
		t.Fatalf("got %v, want %v saying %q", err, want, words)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

func TestGetRefusesLinkChainsOutOfTheTree(t *testing.T) {
	n := newNode(t)
	d := dagNodes{t, n.store}
	for name, nd := range map[string]ipld.Node{
		// "up" points at the root, "out" climbs from there: root/..
		"climb after a link":        d.dir(link{"up", d.symlink(".")}, link{"out", d.symlink("up/../outside")}),
		"climb after a name":        d.dir(link{"sub", d.dir()}, link{"l", d.symlink("sub/../../x")}),
		"back in by the temp name":  d.dir(link{"a", d.dir(link{"l", d.symlink("../../root/x")})}),
		"deep climb":                d.dir(link{"a", d.dir(link{"b", d.dir(link{"l", d.symlink("../../../x")})})}),
		"root is a symlink":         d.symlink("x"),
		"root is a symlink to self": d.symlink("."),
	} {
		t.Run(name, func(t *testing.T) {
			getRefused(t, n.store, nd, content.GetOptions{}, content.ErrUnsafeName, "")
		})
	}
	// Climbing no higher than the root, all at the start, is fine.
	b := d.dir(link{"l", d.symlink("../../x")})
	ok := d.dir(link{"a", d.dir(link{"b", b}, link{"m", d.symlink("./b/../b")})})
	if err := n.store.Get(t.Context(), ok.Cid(), filepath.Join(t.TempDir(), "out"), content.GetOptions{}); err == nil ||
		!strings.Contains(err.Error(), `"./b/../b" climbs`) {
		t.Fatalf("want only a/m refused: %v", err)
	}
	ok = d.dir(link{"x", d.file([]byte("x"))}, link{"a", d.dir(link{"b", d.dir(link{"l", d.symlink("../../x")})})})
	dest := filepath.Join(t.TempDir(), "out")
	if err := n.store.Get(t.Context(), ok.Cid(), dest, content.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "a/b/l")); err != nil || string(b) != "x" {
		t.Fatalf("a/b/l: %q %v", b, err)
	}
}

func TestGetRefusesDuplicateNames(t *testing.T) {
	n := newNode(t)
	d := dagNodes{t, n.store}
	for name, nd := range map[string]ipld.Node{
		"file twice":      d.dir(link{"x", d.file([]byte("a"))}, link{"x", d.file([]byte("b"))}),
		"file and dir":    d.dir(link{"x", d.file([]byte("a"))}, link{"x", d.dir(link{"y", d.file([]byte("b"))})}),
		"dir and file":    d.dir(link{"x", d.dir()}, link{"x", d.file([]byte("b"))}),
		"link then write": d.dir(link{"x", d.symlink("sub")}, link{"x", d.dir(link{"y", d.file([]byte("b"))})}, link{"sub", d.dir()}),
	} {
		t.Run(name, func(t *testing.T) {
			getRefused(t, n.store, nd, content.GetOptions{}, content.ErrUnsafeName, "appears twice")
		})
	}
}

func TestGetBoundsRepeatedLinks(t *testing.T) {
	n := newNode(t)
	d := dagNodes{t, n.store}
	// One 256 KiB block linked 400 times in one file: 100 MiB written from
	// one block fetched.
	leaf := d.add(merkledag.NewRawNode(make([]byte, content.ChunkSize)))
	fsn := unixfs.NewFSNode(unixfs.TFile)
	big := merkledag.NodeWithData(nil)
	for range 400 {
		if err := big.AddNodeLink("", leaf); err != nil {
			t.Fatal(err)
		}
		fsn.AddBlockSize(content.ChunkSize)
	}
	data, err := fsn.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	big.SetData(data)
	d.add(big)
	getRefused(t, n.store, big, content.GetOptions{MaxBytes: 4 << 20}, content.ErrTooLarge, "more than 4194304 bytes")
	// The same file under many names.
	var links []link
	for i := range 50 {
		links = append(links, link{"f" + strings.Repeat("x", i), leaf})
	}
	getRefused(t, n.store, d.dir(links...), content.GetOptions{MaxBytes: 4 << 20}, content.ErrTooLarge, "bytes")
	getRefused(t, n.store, d.dir(links...), content.GetOptions{MaxEntries: 10}, content.ErrTooLarge, "more than 10 entries")
	// Within the limits it is written.
	if err := n.store.Get(t.Context(), leaf.Cid(), filepath.Join(t.TempDir(), "out"), content.GetOptions{MaxBytes: content.ChunkSize, MaxEntries: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestGetBoundsDepth(t *testing.T) {
	n := newNode(t)
	d := dagNodes{t, n.store}
	nd := d.dir()
	for range content.MaxDepth + 1 {
		nd = d.dir(link{"d", nd})
	}
	getRefused(t, n.store, nd, content.GetOptions{}, content.ErrTooLarge, "nest more than")
	// MaxDepth levels are fine.
	nd = d.file([]byte("deep"))
	for range content.MaxDepth + 1 {
		nd = d.dir(link{"d", nd})
	}
	dest := filepath.Join(t.TempDir(), "out")
	if err := n.store.Get(t.Context(), nd.Cid(), dest, content.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestGetRespectsContext: a canceled Get writes nothing.
func TestGetRespectsContext(t *testing.T) {
	n := newNode(t)
	d := dagNodes{t, n.store}
	nd := d.dir(link{"a", d.file([]byte("a"))})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := n.store.Get(ctx, nd.Cid(), filepath.Join(t.TempDir(), "out"), content.GetOptions{}); err == nil {
		t.Fatal("canceled get succeeded")
	}
}
