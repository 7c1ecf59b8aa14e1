package content

import (
	"fmt"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// BenchmarkAccessAllow measures bitswap's filter on a table of a million
// granted blocks over 64 peers and 100k public ones: the cost every block
// request pays.
func BenchmarkAccessAllow(b *testing.B) {
	a := newAccess(DefaultMaxSharedBlocks)
	var cids []cid.Cid
	for i := range 1 << 20 {
		h, err := multihash.Sum(fmt.Appendf(nil, "block %d", i), multihash.SHA2_256, -1)
		if err != nil {
			b.Fatal(err)
		}
		cids = append(cids, cid.NewCidV1(cid.Raw, h))
	}
	peers := make([]peer.ID, 64)
	for i := range peers {
		peers[i] = peer.ID(fmt.Sprintf("peer-%d", i))
		a.peers[peers[i]] = make(map[string]int32)
	}
	for i, c := range cids {
		if i < 100_000 {
			a.public[string(c.Hash())] = struct{}{}
			continue
		}
		a.peers[peers[i%len(peers)]][string(c.Hash())] = 1
	}
	go func() { // drain refusals as the store's checker would
		for range a.deniedCh {
		}
	}()
	b.ResetTimer()
	allowed := 0
	for i := 0; b.Loop(); i++ {
		c := cids[i%len(cids)]
		if a.allow(peers[i%len(peers)], c) {
			allowed++
		}
	}
	b.StopTimer()
	close(a.deniedCh)
	if allowed == 0 {
		b.Fatal("nothing allowed")
	}
}
