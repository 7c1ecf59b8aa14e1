package discovery_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
)

// TestLookupAsksPeers: a requestor that joined after every advert was
// gossiped, and that asks nobody on connect, finds the providers a task
// needs by asking its peers for matching records; a second call returns
// at once without a search; concurrent calls share one search; a search
// for what the swarm lacks is not repeated within the cooldown.
func TestLookupAsksPeers(t *testing.T) {
	hub := newHost(t)
	hp := newPool(t, hub, discovery.PoolConfig{})
	runtimes := []string{"docker", "docker", "docker", "docker", "wasm", "wasm"}
	for _, rt := range runtimes {
		// Each provider advertises before it connects, so the hub's
		// request on connect finds its record.
		h := newHost(t)
		advertise(t, newPool(t, h, discovery.PoolConfig{}), discovery.AdvertiserConfig{Executors: []string{rt}, ProvideInterval: -1})
		if err := h.Connect(t.Context(), peer.AddrInfo{ID: hub.ID(), Addrs: hub.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "the hub to see every provider", func() bool {
		return len(hp.pool.List(discovery.PoolFilter{})) == len(runtimes)
	})
	req := newHost(t, hub)
	rp := newPool(t, req, discovery.PoolConfig{NoAskOnConnect: true})
	if n := len(rp.pool.List(discovery.PoolFilter{})); n != 0 {
		t.Fatalf("the requestor's pool holds %d records before any lookup", n)
	}

	docker := wire.Requirements{Runtime: "docker", Resources: wire.Resources{CPUs: 1}}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if n := rp.pool.Lookup(ctx, docker, 3); n < 3 {
		t.Fatalf("Lookup found %d docker providers, want at least 3 (stats %+v)", n, rp.pool.ExchangeStats())
	}
	for _, e := range rp.pool.List(discovery.PoolFilter{}) {
		if e.Record.Executors[0] != "docker" {
			t.Errorf("lookup for docker brought %s, which runs %v", e.Record.Peer, e.Record.Executors)
		}
	}
	st := rp.pool.ExchangeStats()
	t.Logf("after the first lookup: %+v", st)
	if st.Lookups != 1 || st.LookupAsks == 0 {
		t.Errorf("lookups %d, asks %d; want 1 lookup with asks", st.Lookups, st.LookupAsks)
	}
	if n := rp.pool.Lookup(ctx, docker, 3); n < 3 || rp.pool.ExchangeStats().Lookups != 1 {
		t.Errorf("second lookup: %d found, %d lookups; want the pool's answer without a search", n, rp.pool.ExchangeStats().Lookups)
	}

	// Ten callers at once for the same requirements share one search.
	wasm := wire.Requirements{Runtime: "wasm"}
	var wg sync.WaitGroup
	got := make([]int, 10)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = rp.pool.Lookup(ctx, wasm, 2)
		}()
	}
	wg.Wait()
	for i, n := range got {
		if n < 2 {
			t.Errorf("concurrent lookup %d found %d wasm providers, want 2", i, n)
		}
	}
	if n := rp.pool.ExchangeStats().Lookups; n != 2 {
		t.Errorf("%d lookups after ten concurrent calls, want 2 (one shared)", n)
	}

	// Nobody runs this: the search ends short, and is not repeated at once.
	none := wire.Requirements{Runtime: "fpga"}
	if n := rp.pool.Lookup(ctx, none, 1); n != 0 {
		t.Errorf("found %d fpga providers", n)
	}
	before := rp.pool.ExchangeStats().Lookups
	if n := rp.pool.Lookup(ctx, none, 1); n != 0 || rp.pool.ExchangeStats().Lookups != before {
		t.Errorf("a repeated lookup within the cooldown searched again (%d lookups, was %d)", rp.pool.ExchangeStats().Lookups, before)
	}
}

// TestLookupThroughDHT: the requestor's only peer is a bare DHT node that
// holds no pool: the providers are found under the lookup's term in the
// DHT and asked for their records.
func TestLookupThroughDHT(t *testing.T) {
	dhtNode := newHost(t)
	var provs []*poolNode
	for range 2 {
		h := newHost(t, dhtNode)
		pn := newPool(t, h, discovery.PoolConfig{})
		advertise(t, pn, discovery.AdvertiserConfig{Executors: []string{"wasm"}, Isolation: []string{"gvisor"}})
		provs = append(provs, pn)
	}
	req := newHost(t, dhtNode)
	rp := newPool(t, req, discovery.PoolConfig{NoAskOnConnect: true})
	// The DHT's routing may have connected the requestor to providers:
	// drop those connections, so that asking peers finds nothing.
	for _, pn := range provs {
		if err := req.Network().ClosePeer(pn.h.ID()); err != nil {
			t.Fatal(err)
		}
	}
	r := wire.Requirements{Runtime: "wasm", Isolation: "gvisor"}
	if term := discovery.LookupTerm(r); term != "isolation:gvisor" {
		t.Fatalf("LookupTerm = %q, want isolation:gvisor", term)
	}
	start := time.Now()
	// The providers announce their terms about a second after they start;
	// a lookup that ends short is not repeated within its cooldown.
	eventually(t, 40*time.Second, "a lookup to find both providers", func() bool {
		for _, pn := range provs {
			if req.Network().Connectedness(pn.h.ID()) == network.Connected {
				req.Network().ClosePeer(pn.h.ID())
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return rp.pool.Lookup(ctx, r, 2) >= 2
	})
	t.Logf("found through the DHT in %s (stats %+v)", time.Since(start).Round(time.Millisecond), rp.pool.ExchangeStats())
}
