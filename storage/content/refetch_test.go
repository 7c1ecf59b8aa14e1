package content_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/storage/content"
)

// TestRefetchAfterGC fetches the same content again and again from the same
// peer, collecting it in between (offload rm, then get again). Without the
// stall watchdog (watchStall) the second or a later round waited out the
// whole timeout: the sender's bitswap stopped serving this peer.
func TestRefetchAfterGC(t *testing.T) {
	a, b := newNode(t), newNode(t, content.WithTimeout(10*time.Second))
	connect(t, a, b)
	data := randBytes(7, 40<<20+123)
	c, err := a.store.AddFile(t.Context(), bytes.NewReader(data), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.store.Share(b.h.ID(), c))
	for round := range 4 {
		dest := filepath.Join(t.TempDir(), "out")
		start := time.Now()
		if err := b.store.Get(t.Context(), c, dest, content.GetOptions{Peers: []peer.ID{a.h.ID()}}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: %s", round, time.Since(start))
		if err := b.store.Unpin(t.Context(), c); err != nil {
			t.Fatalf("unpin: %v", err)
		}
		if _, err := b.store.GC(t.Context()); err != nil {
			t.Fatalf("gc: %v", err)
		}
		if ok, _ := b.store.Has(t.Context(), c); ok {
			t.Fatalf("round %d: still held after GC", round)
		}
	}
}
