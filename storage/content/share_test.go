package content_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/storage/content"
)

// refusedTimeout is the inactivity timeout of fetches that must fail: a
// holder that refuses answers DONT_HAVE at once, so nothing arrives.
const refusedTimeout = 2 * time.Second

// openNode starts a loopback host with key (nil: a fresh one) and a store
// in dir with router r (may be nil). The caller closes it or lets the test
// do so.
func openNode(t *testing.T, key crypto.PrivKey, dir string, r content.Router, opts ...content.Option) *node {
	t.Helper()
	lo := []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}
	if key != nil {
		lo = append(lo, libp2p.Identity(key))
	}
	h, err := libp2p.New(lo...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := content.New(t.Context(), h, r, dir, opts...)
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	n := &node{h: h, store: s}
	t.Cleanup(func() { n.close(t) })
	return n
}

func (n *node) close(t *testing.T) {
	t.Helper()
	if err := n.store.Close(); err != nil {
		t.Errorf("close store: %v", err)
	}
	if err := n.h.Close(); err != nil {
		t.Errorf("close host: %v", err)
	}
}

// mustGet fetches c from the hinted peer into a new file and checks it
// against want.
func mustGet(t *testing.T, n *node, c cid.Cid, from peer.ID, want []byte) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "out")
	if err := n.store.Get(t.Context(), c, dest, content.GetOptions{Timeout: 10 * time.Second, Peers: []peer.ID{from}}); err != nil {
		t.Fatalf("get %s: %v", c, err)
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("get %s: %d bytes, want %d (content differs)", c, len(got), len(want))
	}
}

// mustNotGet checks that a fetch of c from the hinted peer fails with
// ErrTimeout and leaves nothing of c behind.
func mustNotGet(t *testing.T, n *node, c cid.Cid, from peer.ID) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "out")
	err := n.store.Get(t.Context(), c, dest, content.GetOptions{Timeout: refusedTimeout, Peers: []peer.ID{from}})
	if !errors.Is(err, content.ErrTimeout) {
		t.Fatalf("get %s: want ErrTimeout, got %v", c, err)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused get left %s: %v", dest, err)
	}
}

// forget makes n drop everything it fetched, so the next Get asks the
// network again.
func forget(t *testing.T, n *node, c cid.Cid) {
	t.Helper()
	if err := n.store.Unpin(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if _, err := n.store.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := n.store.Has(t.Context(), c); ok {
		t.Fatalf("%s still held after GC", c)
	}
}

// TestPrivateByDefault: a bystander connected to the holder cannot fetch a
// private root; a peer can once the holder shares it with that peer; the
// holder counts the refusals of blocks it holds.
func TestPrivateByDefault(t *testing.T) {
	holder, peerB, bystander := newNode(t), newNode(t), newNode(t)
	connect(t, holder, peerB)
	connect(t, holder, bystander)
	data := randBytes(11, 3<<20+5) // 13 leaves and a root
	root, err := holder.store.AddFile(t.Context(), bytes.NewReader(data), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}

	mustNotGet(t, bystander, root, holder.h.ID())
	testwait.For(t, 5*time.Second, 20*time.Millisecond, "the holder counts a refused held block", func() bool {
		return holder.store.Sharing().DeniedHeld > 0
	})

	release := holder.store.Share(peerB.h.ID(), root)
	defer release()
	if st := holder.store.Sharing(); st.Peers != 1 || st.SharedBlocks != 14 || st.PublicBlocks != 0 {
		t.Fatalf("sharing after one grant: %+v", st)
	}
	mustGet(t, peerB, root, holder.h.ID(), data)
	// The grant is peerB's alone.
	before := holder.store.Sharing().DeniedHeld
	mustNotGet(t, bystander, root, holder.h.ID())
	testwait.For(t, 5*time.Second, 20*time.Millisecond, "a second refusal counted", func() bool {
		return holder.store.Sharing().DeniedHeld > before
	})
	// peerB holds it now but does not serve it on: what it fetched is
	// private to it as well.
	connect(t, peerB, bystander)
	mustNotGet(t, bystander, root, peerB.h.ID())
}

// TestShareRelease: after release the peer cannot fetch blocks it did not
// fetch yet; grants nest, and release is idempotent.
func TestShareRelease(t *testing.T) {
	holder, peerB := newNode(t), newNode(t)
	connect(t, holder, peerB)
	x := randBytes(21, 600<<10)
	y := randBytes(22, 600<<10)
	cx, err := holder.store.AddFile(t.Context(), bytes.NewReader(x), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cy, err := holder.store.AddFile(t.Context(), bytes.NewReader(y), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("release ends the grant", func(t *testing.T) {
		release := holder.store.Share(peerB.h.ID(), cx, cy)
		mustGet(t, peerB, cx, holder.h.ID(), x)
		release()
		release() // idempotent
		if st := holder.store.Sharing(); st.Peers != 0 || st.SharedBlocks != 0 {
			t.Fatalf("sharing after release: %+v", st)
		}
		mustNotGet(t, peerB, cy, holder.h.ID())
		forget(t, peerB, cx)
		mustNotGet(t, peerB, cx, holder.h.ID())
	})

	t.Run("grants nest", func(t *testing.T) {
		r1 := holder.store.Share(peerB.h.ID(), cx)
		r2 := holder.store.Share(peerB.h.ID(), cx, cy)
		if st := holder.store.Sharing(); st.SharedBlocks != 4+8 {
			t.Fatalf("two grants: %+v", st)
		}
		r2()
		mustGet(t, peerB, cx, holder.h.ID(), x) // still covered by r1
		mustNotGet(t, peerB, cy, holder.h.ID())
		r1()
		forget(t, peerB, cx)
		mustNotGet(t, peerB, cx, holder.h.ID())
	})
}

// TestShareLimit: a grant over the bound of shared blocks is refused whole
// and grants nothing; grants within it work.
func TestShareLimit(t *testing.T) {
	holder := openNode(t, nil, t.TempDir(), nil, content.WithMaxSharedBlocks(6))
	peerB := newNode(t)
	connect(t, holder, peerB)
	big := randBytes(31, 2<<20)     // 8 leaves and a root: 9 blocks
	small := randBytes(32, 400<<10) // 2 leaves and a root
	cb, err := holder.store.AddFile(t.Context(), bytes.NewReader(big), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := holder.store.AddFile(t.Context(), bytes.NewReader(small), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.store.Grant(t.Context(), peerB.h.ID(), cb); !errors.Is(err, content.ErrShareLimit) {
		t.Fatalf("grant over the limit: %v", err)
	}
	release := holder.store.Share(peerB.h.ID(), cb) // refused, logged, a no-op release
	if st := holder.store.Sharing(); st.SharedBlocks != 0 {
		t.Fatalf("a refused grant holds %d entries", st.SharedBlocks)
	}
	release()
	r, err := holder.store.Grant(t.Context(), peerB.h.ID(), cs) // 3 blocks
	if err != nil {
		t.Fatal(err)
	}
	defer r()
	if _, err := holder.store.Grant(t.Context(), peerB.h.ID(), cs, cs); err != nil {
		t.Fatalf("a second grant of 3 (6 in all): %v", err)
	}
	if _, err := holder.store.Grant(t.Context(), peerB.h.ID(), cs); !errors.Is(err, content.ErrShareLimit) {
		t.Fatalf("a third grant (9 in all): %v", err)
	}
	mustGet(t, peerB, cs, holder.h.ID(), small)
	mustNotGet(t, peerB, cb, holder.h.ID())
}

// TestPublishSurvivesRestart: published content flows to any node, also
// from a holder restarted on the same block store; two nodes of one user
// share content once it is published.
func TestPublishSurvivesRestart(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	holder := openNode(t, key, dir, nil)
	sameUser, other := newNode(t), newNode(t)
	connect(t, holder, sameUser)
	connect(t, holder, other)

	priv := randBytes(41, 1<<20+3)
	cp, err := holder.store.AddFile(t.Context(), bytes.NewReader(priv), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustNotGet(t, sameUser, cp, holder.h.ID())
	if err := holder.store.Publish(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	mustGet(t, sameUser, cp, holder.h.ID(), priv)
	mustGet(t, other, cp, holder.h.ID(), priv)

	pub := randBytes(42, 700<<10)
	cpub, err := holder.store.AddFile(t.Context(), bytes.NewReader(pub), content.AddOptions{Public: true})
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, other, cpub, holder.h.ID(), pub)
	// A third, private root stays private across the restart.
	secret := randBytes(43, 10)
	csecret, err := holder.store.AddFile(t.Context(), bytes.NewReader(secret), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantPublic := holder.store.Sharing().PublicBlocks

	holder.close(t)
	holder = openNode(t, key, dir, nil)
	if st := holder.store.Sharing(); st.PublicBlocks != wantPublic {
		t.Fatalf("public blocks after restart: %d, want %d", st.PublicBlocks, wantPublic)
	}
	for _, c := range []cid.Cid{cp, cpub} {
		if ok, err := holder.store.IsPublished(t.Context(), c); err != nil || !ok {
			t.Fatalf("%s published after restart: %v %v", c, ok, err)
		}
	}
	fresh := newNode(t)
	connect(t, fresh, holder)
	mustGet(t, fresh, cp, holder.h.ID(), priv)
	mustGet(t, fresh, cpub, holder.h.ID(), pub)
	mustNotGet(t, fresh, csecret, holder.h.ID())
}

// TestPublishRequiresContent: publishing content not held fails with
// ErrNotLocal; publishing held, unpinned content pins it.
func TestPublishRequiresContent(t *testing.T) {
	holder, other := newNode(t), newNode(t)
	connect(t, holder, other)
	data := randBytes(51, 300<<10)
	c, err := holder.store.AddFile(t.Context(), bytes.NewReader(data), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.store.Publish(t.Context(), c); !errors.Is(err, content.ErrNotLocal) {
		t.Fatalf("publish of content not held: %v", err)
	}
	t.Cleanup(holder.store.Share(other.h.ID(), c))
	if err := other.store.Fetch(t.Context(), c, content.FetchOptions{Peers: []peer.ID{holder.h.ID()}}); err != nil {
		t.Fatal(err)
	}
	if err := other.store.Publish(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	pins, err := other.store.Pins(t.Context())
	if err != nil || len(pins) != 1 || !pins[0].Root.Equals(c) || pins[0].Name != "published" {
		t.Fatalf("pins after publishing fetched content: %+v %v", pins, err)
	}
}

// TestPublicAndPrivateOverlap: a block both in a private DAG and in a
// published one is public; once the published root is unpinned and GC
// runs, its marks are gone and the private DAG is private again.
func TestPublicAndPrivateOverlap(t *testing.T) {
	holder, bystander := newNode(t), newNode(t)
	connect(t, holder, bystander)
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	shared := randBytes(61, 500<<10)
	if err := os.WriteFile(filepath.Join(tree, "shared.bin"), shared, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "secret.txt"), []byte("only mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirRoot, err := holder.store.AddPath(t.Context(), tree, content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fileRoot, err := holder.store.AddFile(t.Context(), bytes.NewReader(shared), content.AddOptions{Public: true, PinName: "shared.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if st := holder.store.Sharing(); st.PublicBlocks != 3 {
		t.Fatalf("public blocks: %+v (want the file's 2 leaves and root)", st)
	}
	mustGet(t, bystander, fileRoot, holder.h.ID(), shared) // the blocks are in both DAGs
	mustNotGet(t, bystander, dirRoot, holder.h.ID())

	if err := holder.store.Unpin(t.Context(), fileRoot); err != nil {
		t.Fatal(err)
	}
	if ok, _ := holder.store.IsPublished(t.Context(), fileRoot); ok {
		t.Fatal("unpinned root still marked public")
	}
	if _, err := holder.store.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := holder.store.Sharing(); st.PublicBlocks != 0 {
		t.Fatalf("public blocks after unpin and GC: %+v", st)
	}
	// The blocks are still held (the private tree pins them) but no
	// longer public.
	if ok, _ := holder.store.Has(t.Context(), fileRoot); !ok {
		t.Fatal("the private tree's blocks were collected")
	}
	forget(t, bystander, fileRoot)
	mustNotGet(t, bystander, fileRoot, holder.h.ID())
}

// recordingRouter is a content router that records what it is asked to
// provide and finds no one.
type recordingRouter struct {
	mu       sync.Mutex
	provided []cid.Cid
}

func (r *recordingRouter) Provide(_ context.Context, c cid.Cid, _ bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.provided = append(r.provided, c)
	return nil
}

func (r *recordingRouter) FindProvidersAsync(context.Context, cid.Cid, int) <-chan peer.AddrInfo {
	ch := make(chan peer.AddrInfo)
	close(ch)
	return ch
}

func (r *recordingRouter) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.provided {
		out = append(out, c.String())
	}
	slices.Sort(out)
	return out
}

// TestProvideOnlyPublic: only published roots are announced, by the add
// that publishes, by Publish and again after a restart; private adds,
// fetched and pinned content, grants and GC announce nothing.
func TestProvideOnlyPublic(t *testing.T) {
	dirA := t.TempDir()
	ra, rb := &recordingRouter{}, &recordingRouter{}
	a := openNode(t, nil, dirA, ra)
	b := openNode(t, nil, t.TempDir(), rb)
	connect(t, a, b)

	priv, err := a.store.AddFile(t.Context(), bytes.NewReader(randBytes(71, 400<<10)), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := a.store.AddPath(t.Context(), makeTree(t), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := a.store.AddFile(t.Context(), bytes.NewReader(randBytes(72, 400<<10)), content.AddOptions{Public: true})
	if err != nil {
		t.Fatal(err)
	}
	release := a.store.Share(b.h.ID(), priv)
	if err := b.store.Fetch(t.Context(), priv, content.FetchOptions{Pin: true, PinName: "input", Peers: []peer.ID{a.h.ID()}}); err != nil {
		t.Fatal(err)
	}
	release()
	if err := b.store.Fetch(t.Context(), pub, content.FetchOptions{Pin: true, PinName: "public", Peers: []peer.ID{a.h.ID()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.store.Publish(t.Context(), tree); err != nil {
		t.Fatal(err)
	}
	a.close(t) // waits for the announcements in flight
	b.close(t)
	want := []string{pub.String(), tree.String()}
	slices.Sort(want)
	if got := ra.all(); !slices.Equal(got, want) {
		t.Fatalf("a provided %v, want %v (the published roots only)", got, want)
	}
	if got := rb.all(); len(got) != 0 {
		t.Fatalf("b provided what it fetched: %v", got)
	}

	ra2 := &recordingRouter{}
	a = openNode(t, nil, dirA, ra2)
	a.close(t)
	if got := ra2.all(); !slices.Equal(got, want) {
		t.Fatalf("after a restart a provided %v, want %v", got, want)
	}
}
