package content_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/offload-project/offload/storage/content"
)

type node struct {
	h     host.Host
	store *content.Store
}

func newNode(t *testing.T, opts ...content.Option) *node {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s, err := content.New(t.Context(), h, nil, t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &node{h: h, store: s}
}

func connect(t *testing.T, a, b *node) {
	t.Helper()
	if err := a.h.Connect(t.Context(), peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func TestTwoNodeFile(t *testing.T) {
	a, b := newNode(t), newNode(t)
	connect(t, a, b)
	for _, tc := range []struct {
		name string
		size int
		ver  *int
	}{
		{"v1-small", 1000, nil},
		{"v1-multi-chunk", 3<<20 + 12345, nil},
		{"v0-multi-chunk", 2<<20 + 7, content.Version(0)},
		{"empty", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randBytes(int64(tc.size), tc.size)
			var last int64
			c, err := a.store.AddFile(t.Context(), bytes.NewReader(data), content.AddOptions{CIDVersion: tc.ver, Progress: func(n int64) { last = n }})
			if err != nil {
				t.Fatal(err)
			}
			if last != int64(tc.size) {
				t.Errorf("progress ended at %d, want %d", last, tc.size)
			}
			// Private by default: b fetches it because a shares it.
			release := a.store.Share(b.h.ID(), c)
			defer release()
			dest := filepath.Join(t.TempDir(), "out")
			if err := b.store.Get(t.Context(), c, dest, content.GetOptions{Timeout: 10 * time.Second}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, want %d (content differs)", len(got), len(data))
			}
			r, err := b.store.Open(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err = io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("open: %d bytes, err %v", len(got), err)
			}
		})
	}
}

// makeTree writes a nested tree under root and returns it.
func makeTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	files := map[string][]byte{
		"a.txt":               []byte("hello\n"),
		".hidden":             []byte("dot"),
		"empty":               nil,
		"sub/big.bin":         randBytes(1, 700<<10),
		"sub/deeper/x":        randBytes(2, 10),
		"sub/deeper/y z ü.md": []byte("unicode name"),
	}
	for p, b := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("deeper/x", filepath.Join(root, "sub", "link")); err != nil {
		t.Fatal(err)
	}
	return root
}

// compareTrees fails unless want and got hold the same names, types, bytes
// and symlink targets.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	seen := 0
	err := filepath.Walk(want, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		gi, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		seen++
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, err := os.Readlink(q)
			if err != nil || a != b {
				t.Errorf("%s: symlink %q vs %q (%v)", rel, a, b, err)
			}
		case fi.IsDir():
			if !gi.IsDir() {
				t.Errorf("%s: not a directory", rel)
			}
		default:
			a, _ := os.ReadFile(p)
			b, err := os.ReadFile(q)
			if err != nil || !bytes.Equal(a, b) {
				t.Errorf("%s: content differs (%v)", rel, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.Walk(got, func(string, os.FileInfo, error) error { n++; return nil })
	if n != seen {
		t.Errorf("got %d entries, want %d", n, seen)
	}
}

func TestTwoNodeDirectory(t *testing.T) {
	a, b := newNode(t), newNode(t)
	connect(t, a, b)
	src := makeTree(t)
	for _, ver := range []int{0, 1} {
		// Published, so b fetches it without a grant.
		c, err := a.store.AddPath(t.Context(), src, content.AddOptions{CIDVersion: content.Version(ver), Public: true})
		if err != nil {
			t.Fatal(err)
		}
		st, err := b.store.Stat(t.Context(), c)
		if err != nil || st.RootLocal {
			t.Fatalf("stat before fetch: %+v %v", st, err)
		}
		// dest may be an existing empty directory.
		dest := t.TempDir()
		if err := b.store.Get(t.Context(), c, dest, content.GetOptions{Timeout: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, src, dest)
		st, err = b.store.Stat(t.Context(), c)
		if err != nil || !st.IsDir || !st.Complete || st.Local != 1 {
			t.Fatalf("stat after get: %+v %v", st, err)
		}
		// Same tree added on b gives the same CID.
		c2, err := b.store.AddPath(t.Context(), dest, content.AddOptions{CIDVersion: content.Version(ver)})
		if err != nil || !c2.Equals(c) {
			t.Fatalf("re-add: %s vs %s (%v)", c2, c, err)
		}
		// A second Get into the now non-empty dest is refused.
		err = b.store.Get(t.Context(), c, dest, content.GetOptions{})
		if !errors.Is(err, content.ErrDestExists) {
			t.Fatalf("get into existing dest: %v", err)
		}
		if err := b.store.Get(t.Context(), c, dest, content.GetOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, src, dest)
	}
}

func TestCIDVectors(t *testing.T) {
	n := newNode(t)
	zero := make([]byte, 262144)
	for _, tc := range []struct {
		name string
		data []byte
		ver  *int
		want string
	}{
		{"hello v0", []byte("hello\n"), content.Version(0), "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"},
		{"hello v1", []byte("hello\n"), nil, "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"},
		{"empty v0", nil, content.Version(0), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"},
		{"empty v1", nil, nil, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"},
		{"hello v1 (independent)", []byte("hello\n"), nil, rawCID([]byte("hello\n"))},
		{"256KiB zeros v1 (raw leaf = sha256)", zero, nil, rawCID(zero)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := n.store.AddFile(t.Context(), bytes.NewReader(tc.data), content.AddOptions{CIDVersion: tc.ver})
			if err != nil {
				t.Fatal(err)
			}
			if c.String() != tc.want {
				t.Fatalf("got %s, want %s", c, tc.want)
			}
		})
	}
	dir := filepath.Join(t.TempDir(), "d")
	os.Mkdir(dir, 0o755)
	c, err := n.store.AddPath(t.Context(), dir, content.AddOptions{CIDVersion: content.Version(0)})
	if err != nil {
		t.Fatal(err)
	}
	if want := "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"; c.String() != want {
		t.Fatalf("empty dir: got %s, want %s", c, want)
	}
}

// rawCID is the CIDv1 raw sha2-256 of b, computed independently of the
// importer.
func rawCID(b []byte) string {
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: 0x12, MhLength: -1}.Sum(b)
	if err != nil {
		panic(err)
	}
	return c.String()
}

// addDir stores a hand-made unixfs directory with the given links.
func addDir(t *testing.T, s *content.Store, links map[string]*merkledag.ProtoNode) cid.Cid {
	t.Helper()
	dir := merkledag.NodeWithData(unixfs.FolderPBData())
	for name, child := range links {
		if err := s.DAGService().Add(t.Context(), child); err != nil {
			t.Fatal(err)
		}
		if err := dir.AddNodeLink(name, child); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DAGService().Add(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	return dir.Cid()
}

func TestGetRefusesEscapingNames(t *testing.T) {
	a, b := newNode(t), newNode(t)
	connect(t, a, b)
	file := func(s string) *merkledag.ProtoNode {
		return merkledag.NodeWithData(unixfs.FilePBData([]byte(s), uint64(len(s))))
	}
	symlink := func(target string) *merkledag.ProtoNode {
		d, err := unixfs.SymlinkData(target)
		if err != nil {
			t.Fatal(err)
		}
		return merkledag.NodeWithData(d)
	}
	for name, links := range map[string]map[string]*merkledag.ProtoNode{
		"dotdot":        {"ok.txt": file("fine"), "..": file("evil")},
		"slash":         {"a/../../evil": file("evil")},
		"absolute":      {"/etc/evil": file("evil")},
		"empty":         {"": file("evil")},
		"dot":           {".": file("evil")},
		"abs symlink":   {"l": symlink("/etc/passwd")},
		"escaping link": {"l": symlink("../../outside")},
	} {
		t.Run(name, func(t *testing.T) {
			c := addDir(t, a.store, links)
			defer a.store.Share(b.h.ID(), c)()
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			err := b.store.Get(t.Context(), c, dest, content.GetOptions{Timeout: 10 * time.Second})
			if !errors.Is(err, content.ErrUnsafeName) {
				t.Fatalf("got %v, want ErrUnsafeName", err)
			}
			ents, _ := os.ReadDir(parent)
			if len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
		})
	}
}

func TestUnknownCIDTimesOut(t *testing.T) {
	a, b := newNode(t), newNode(t)
	connect(t, a, b)
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: 0x12, MhLength: -1}.Sum([]byte("nobody has this"))
	start := time.Now()
	dest := filepath.Join(t.TempDir(), "out")
	err := b.store.Get(t.Context(), c, dest, content.GetOptions{Timeout: 500 * time.Millisecond})
	if !errors.Is(err, content.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
	if !strings.Contains(err.Error(), c.String()) {
		t.Errorf("error does not name the CID: %v", err)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dest exists after failure")
	}
	err = b.store.Fetch(t.Context(), c, content.FetchOptions{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, content.ErrTimeout) {
		t.Fatalf("fetch: got %v, want ErrTimeout", err)
	}
}

func TestParseCID(t *testing.T) {
	for _, s := range []string{"", "Qm", "not a cid", "bafy!!", "/ipfs/"} {
		if _, err := content.ParseCID(s); !errors.Is(err, content.ErrInvalidCID) {
			t.Errorf("%q: got %v", s, err)
		}
	}
	for _, s := range []string{"QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", "/ipfs/bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"} {
		if _, err := content.ParseCID(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestPinUnpinGC(t *testing.T) {
	n := newNode(t)
	ctx := t.Context()
	keep, err := n.store.AddFile(ctx, bytes.NewReader(randBytes(10, 1<<20)), content.AddOptions{PinName: "keep"})
	if err != nil {
		t.Fatal(err)
	}
	drop, err := n.store.AddPath(ctx, makeTree(t), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pins, err := n.store.Pins(ctx)
	if err != nil || len(pins) != 2 {
		t.Fatalf("pins: %v %v", pins, err)
	}
	if removed, err := n.store.GC(ctx); err != nil || removed != 0 {
		t.Fatalf("gc with everything pinned removed %d (%v)", removed, err)
	}
	if err := n.store.Unpin(ctx, drop); err != nil {
		t.Fatal(err)
	}
	removed, err := n.store.GC(ctx)
	if err != nil || removed == 0 {
		t.Fatalf("gc removed %d (%v)", removed, err)
	}
	if ok, _ := n.store.Has(ctx, drop); ok {
		t.Fatal("unpinned root survived gc")
	}
	st, err := n.store.Stat(ctx, keep)
	if err != nil || !st.Complete || st.Size != 1<<20 {
		t.Fatalf("pinned content after gc: %+v %v", st, err)
	}
	pins, _ = n.store.Pins(ctx)
	if len(pins) != 1 || pins[0].Name != "keep" || !pins[0].Root.Equals(keep) {
		t.Fatalf("pins: %+v", pins)
	}
	if err := n.store.Pin(ctx, drop, "again"); !errors.Is(err, content.ErrNotLocal) {
		t.Fatalf("pin of collected content: %v", err)
	}
}

// TestKeepPin: adding pinned content again renames its pin, unless the
// add keeps pins (a client's temporary add must not take content pinned
// for another reason); content not pinned yet is pinned either way.
func TestKeepPin(t *testing.T) {
	n := newNode(t)
	ctx := t.Context()
	data := randBytes(11, 4<<10)
	add := func(name string, keep bool) string {
		t.Helper()
		c, err := n.store.AddFile(ctx, bytes.NewReader(data), content.AddOptions{PinName: name, KeepPin: keep})
		if err != nil {
			t.Fatal(err)
		}
		pins, err := n.store.Pins(ctx)
		if err != nil || len(pins) != 1 || !pins[0].Root.Equals(c) {
			t.Fatalf("pins: %+v %v", pins, err)
		}
		return pins[0].Name
	}
	if got := add("first", true); got != "first" {
		t.Fatalf("a new pin kept is named %q", got)
	}
	if got := add("temporary", true); got != "first" {
		t.Fatalf("an add that keeps pins renamed it to %q", got)
	}
	if got := add("renamed", false); got != "renamed" {
		t.Fatalf("a plain add left the pin named %q", got)
	}
	pins, _ := n.store.Pins(ctx)
	if p, ok, err := n.store.PinOf(ctx, pins[0].Root); err != nil || !ok || p.Name != "renamed" || !p.Root.Equals(pins[0].Root) {
		t.Fatalf("PinOf = %+v, %v, %v", p, ok, err)
	}
	if err := n.store.Unpin(ctx, pins[0].Root); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := n.store.PinOf(ctx, pins[0].Root); err != nil || ok {
		t.Fatalf("PinOf of an unpinned root: %v, %v", ok, err)
	}
}

func TestHasStat(t *testing.T) {
	n := newNode(t)
	ctx := t.Context()
	c, err := n.store.AddFile(ctx, bytes.NewReader(randBytes(3, 1<<20)), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := n.store.Has(ctx, c); !ok || err != nil {
		t.Fatalf("has: %v %v", ok, err)
	}
	st, err := n.store.Stat(ctx, c)
	if err != nil || st.IsDir || st.Size != 1<<20 || st.Local != 1 || st.Blocks != 5 {
		t.Fatalf("stat: %+v %v", st, err)
	}
	// Drop one of the four 256 KiB leaves: a quarter is missing.
	nd, err := n.store.DAGService().Get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.store.Blockstore().DeleteBlock(ctx, nd.Links()[1].Cid); err != nil {
		t.Fatal(err)
	}
	st, err = n.store.Stat(ctx, c)
	if err != nil || st.Complete || st.LocalBlocks != 4 || st.Local < 0.70 || st.Local > 0.80 {
		t.Fatalf("stat with a missing leaf: %+v %v", st, err)
	}
}

func TestThirdNodeWithPeerHint(t *testing.T) {
	a, b, c := newNode(t), newNode(t), newNode(t)
	connect(t, a, b)
	data := randBytes(7, 2<<20)
	root, err := a.store.AddFile(t.Context(), bytes.NewReader(data), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.store.Share(c.h.ID(), root))
	// c knows where a listens but is not connected to anyone and has no
	// routing: only the hint can find the content.
	c.h.Peerstore().AddAddrs(a.h.ID(), a.h.Addrs(), peerstore.TempAddrTTL)
	start := time.Now()
	dest := filepath.Join(t.TempDir(), "out")
	if err := c.store.Get(t.Context(), root, dest, content.GetOptions{Timeout: 5 * time.Second, Peers: []peer.ID{a.h.ID()}}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dest)
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	t.Logf("hinted get of 2 MiB took %s", time.Since(start))
}

func TestClosed(t *testing.T) {
	n := newNode(t)
	n.store.Close()
	if _, err := n.store.AddFile(context.Background(), strings.NewReader("x"), content.AddOptions{}); !errors.Is(err, content.ErrClosed) {
		t.Fatalf("add after close: %v", err)
	}
}

// TestTryGCNeverWaitsBehindAFetch: while a fetch is in progress (here one
// that waits for content no peer has) TryGC returns ErrBusy at once
// instead of queueing behind it (and every new fetch behind itself); once
// the fetch ends it collects.
func TestTryGCNeverWaitsBehindAFetch(t *testing.T) {
	a := newNode(t)
	missing, err := content.ParseCID("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- a.store.Fetch(t.Context(), missing, content.FetchOptions{Timeout: 2 * time.Second})
	}()
	time.Sleep(200 * time.Millisecond) // the fetch holds the store now
	start := time.Now()
	if _, err := a.store.TryGC(t.Context()); !errors.Is(err, content.ErrBusy) {
		t.Fatalf("TryGC during a fetch: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("TryGC waited %s", d)
	}
	if err := <-done; err == nil {
		t.Fatal("the fetch of missing content succeeded")
	}
	if _, err := a.store.TryGC(t.Context()); err != nil {
		t.Fatalf("TryGC when idle: %v", err)
	}
}
