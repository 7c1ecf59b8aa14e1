package p2p

import (
	"context"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// fakeRouter finds the peers it holds and counts provides.
type fakeRouter struct {
	peers    []peer.ID
	provided int
}

func (f *fakeRouter) Provide(context.Context, cid.Cid, bool) error { f.provided++; return nil }
func (f *fakeRouter) FindProvidersAsync(ctx context.Context, _ cid.Cid, _ int) <-chan peer.AddrInfo {
	ch := make(chan peer.AddrInfo)
	go func() {
		defer close(ch)
		for _, p := range f.peers {
			select {
			case ch <- peer.AddrInfo{ID: p}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

func TestContentRoutingMergesAndAnnouncesInDHTOnly(t *testing.T) {
	dht := &fakeRouter{peers: []peer.ID{"a", "b"}}
	del := &fakeRouter{peers: []peer.ID{"b", "c", "d"}}
	r := &contentRouting{dht: dht}
	r.delegated = append(r.delegated, del)
	got := map[peer.ID]int{}
	for info := range r.FindProvidersAsync(t.Context(), cid.Undef, 0) {
		got[info.ID]++
	}
	if len(got) != 4 || got["b"] != 1 {
		t.Fatalf("found %v, want a, b, c, d once each", got)
	}
	n := 0
	for range r.FindProvidersAsync(t.Context(), cid.Undef, 2) {
		n++
	}
	if n != 2 {
		t.Fatalf("count 2 gave %d peers", n)
	}
	if err := r.Provide(t.Context(), cid.Undef, true); err != nil || dht.provided != 1 || del.provided != 0 {
		t.Fatalf("provide: %v, dht %d, delegated %d", err, dht.provided, del.provided)
	}
}

func TestDelegatedRoutingURLs(t *testing.T) {
	dht := &fakeRouter{}
	if r, err := newContentRouting(dht, nil); err != nil || r != dht {
		t.Fatalf("no URL: %v %T", err, r)
	}
	if _, err := newContentRouting(dht, []string{"http://127.0.0.1:1"}); err != nil {
		t.Fatalf("http URL: %v", err)
	}
	for _, bad := range []string{"ftp://x", "delegated-ipfs.dev", "https://"} {
		if _, err := newContentRouting(dht, []string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	many := make([]string, maxDelegatedRouters+1)
	for i := range many {
		many[i] = "https://example.invalid"
	}
	if _, err := newContentRouting(dht, many); err == nil {
		t.Errorf("%d routers accepted", len(many))
	}
}
