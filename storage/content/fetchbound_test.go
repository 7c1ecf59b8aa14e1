//go:build linux

package content_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/storage/content"
)

// fetchPair returns a holder and a fetcher connected over loopback.
func fetchPair(t *testing.T) (holder, fetcher *node) {
	t.Helper()
	holder, fetcher = newNode(t), newNode(t)
	connect(t, fetcher, holder)
	return holder, fetcher
}

// fileOf links leaves into one unixfs file node, recording each link's
// size as tsize (a liar's DAG when tsize is below the leaf's size).
func fileOf(t *testing.T, leaves []ipld.Node, tsize func(ipld.Node) uint64) *merkledag.ProtoNode {
	t.Helper()
	fsn := unixfs.NewFSNode(unixfs.TFile)
	root := merkledag.NodeWithData(nil)
	for _, l := range leaves {
		if err := root.AddRawLink("", &ipld.Link{Cid: l.Cid(), Size: tsize(l)}); err != nil {
			t.Fatal(err)
		}
		fsn.AddBlockSize(uint64(len(l.RawData())))
	}
	data, err := fsn.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	root.SetData(data)
	return root
}

// getBounded fetches root from holder into a fresh directory under max
// bytes, wants ErrTooLarge saying words, nothing left beside dest, and
// returns the bytes of root's DAG that landed in fetcher's block store and
// the most file bytes the writer reported.
func getBounded(t *testing.T, holder, fetcher *node, root cid.Cid, max int64, words string) (local uint64, written int64) {
	t.Helper()
	release := holder.store.Share(fetcher.h.ID(), root)
	defer release()
	parent := t.TempDir()
	var most atomic.Int64
	err := fetcher.store.Get(t.Context(), root, filepath.Join(parent, "out"), content.GetOptions{
		Peers: []peer.ID{holder.h.ID()}, MaxBytes: max,
		Progress: func(n int64) { most.Store(n) },
	})
	if !errors.Is(err, content.ErrTooLarge) || !strings.Contains(err.Error(), words) {
		t.Fatalf("got %v, want %v saying %q", err, content.ErrTooLarge, words)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	if pins, _ := fetcher.store.Pins(t.Context()); len(pins) != 0 {
		t.Fatalf("a refused get holds pins: %v", pins)
	}
	st, err := fetcher.store.Stat(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	return st.LocalBytes, most.Load()
}

// TestGetBoundedWhileFetching: content larger than the bound is refused
// while it is fetched over bitswap, and what lands in the fetcher's block
// store stays near the bound, not the content's size: a DAG that records
// its true size stops after its root; a DAG whose links under-record their
// sizes stops once the blocks fetched pass the bound.
func TestGetBoundedWhileFetching(t *testing.T) {
	holder, fetcher := fetchPair(t)
	const size = 1 << 20

	// 1 MiB added honestly, declared 1 KiB: refused after the root block.
	honest, err := holder.store.AddFile(t.Context(), bytes.NewReader(randBytes(1, size)), content.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	local, _ := getBounded(t, holder, fetcher, honest, 1<<10, "records")
	if local > 1<<10 {
		t.Fatalf("%d bytes of a 1 MiB DAG declared 1 KiB were fetched", local)
	}
	t.Logf("honest 1 MiB DAG, bound 1 KiB: %d bytes fetched", local)
	// Declared at exactly its recorded size, it is fetched and written.
	st, err := holder.store.Stat(t.Context(), honest)
	if err != nil || st.CumulativeSize < size {
		t.Fatalf("stat: %+v %v", st, err)
	}
	release := holder.store.Share(fetcher.h.ID(), honest)
	defer release()
	if err := fetcher.store.Get(t.Context(), honest, filepath.Join(t.TempDir(), "out"), content.GetOptions{
		Peers: []peer.ID{holder.h.ID()}, MaxBytes: int64(st.CumulativeSize)}); err != nil {
		t.Fatalf("declared at its cumulative size %d: %v", st.CumulativeSize, err)
	}

	// 1 MiB in 64 distinct 16 KiB leaves whose links record 1 byte each:
	// the root says 2.6 KiB. Bound 32 KiB: the fetch stops at the leaf
	// that passes it, one leaf at a time under so small a bound.
	d := dagNodes{t, holder.store}
	var leaves []ipld.Node
	for i := range 64 {
		leaves = append(leaves, d.add(merkledag.NewRawNode(randBytes(int64(100+i), 16<<10))))
	}
	liar := d.add(fileOf(t, leaves, func(ipld.Node) uint64 { return 1 }))
	local, _ = getBounded(t, holder, fetcher, liar.Cid(), 32<<10, "fetched so far")
	if bound := uint64(32<<10 + 16<<10 + len(liar.RawData())); local > bound {
		t.Fatalf("%d bytes of a 1 MiB DAG fetched under a 32 KiB bound (want at most %d)", local, bound)
	}
	t.Logf("lying 1 MiB DAG, bound 32 KiB: %d bytes fetched", local)

	// Under a bound it fits, the same DAG is written whole.
	release = holder.store.Share(fetcher.h.ID(), liar.Cid())
	defer release()
	dest := filepath.Join(t.TempDir(), "out")
	if err := fetcher.store.Get(t.Context(), liar.Cid(), dest, content.GetOptions{Peers: []peer.ID{holder.h.ID()}, MaxBytes: 2 * size}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Size() != size {
		t.Fatalf("written: %v %v", fi, err)
	}
}

// TestGetBoundsExpansionOverBitswap: a small DAG that links one 256 KiB
// leaf 4096 times (1 GiB of file) declared at 1 MiB is refused: when the
// links record their sizes, after its root; when they lie, the few blocks
// are fetched but writing stops at the bound.
func TestGetBoundsExpansionOverBitswap(t *testing.T) {
	holder, fetcher := fetchPair(t)
	d := dagNodes{t, holder.store}
	leaf := d.add(merkledag.NewRawNode(randBytes(7, content.ChunkSize)))
	leaves := make([]ipld.Node, 4096)
	for i := range leaves {
		leaves[i] = leaf
	}
	honest := d.add(fileOf(t, leaves, func(l ipld.Node) uint64 { return uint64(len(l.RawData())) }))
	local, _ := getBounded(t, holder, fetcher, honest.Cid(), 1<<20, "records")
	if local > uint64(len(honest.RawData())) {
		t.Fatalf("%d bytes fetched: more than the root", local)
	}

	liar := d.add(fileOf(t, leaves, func(ipld.Node) uint64 { return 1 }))
	local, written := getBounded(t, holder, fetcher, liar.Cid(), 1<<20, "bytes to write")
	if written > 1<<20 {
		t.Fatalf("%d file bytes written under a 1 MiB bound", written)
	}
	if local > uint64(len(liar.RawData())+content.ChunkSize+1<<10) {
		t.Fatalf("%d bytes fetched: more than the root (%d) and its one leaf", local, len(liar.RawData()))
	}
	t.Logf("1 GiB expansion declared 1 MiB: %d bytes fetched, %d written before the refusal", local, written)
}
