package p2p_test

import (
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/offload-project/offload/internal/plainipfs"
	"github.com/offload-project/offload/p2p"
)

func publicHost(t *testing.T, cfg p2p.Config) *p2p.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identity = key
	if cfg.Listen == nil {
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	h, err := p2p.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func connected(h *p2p.Host, p peer.ID) bool {
	return h.Network().Connectedness(p) == network.Connected
}

// TestPublicBootstrapOnlyWhenAsked: the public bootstrap list is dialed by
// a node that asks for the public network and by no other. The list is
// swapped for a lab address first: no test dials the real one.
func TestPublicBootstrapOnlyWhenAsked(t *testing.T) {
	if len(p2p.PublicBootstrap) < 4 {
		t.Fatalf("the standard public bootstrap list has %d entries", len(p2p.PublicBootstrap))
	}
	lab := plainipfs.Start(t)
	saved := p2p.PublicBootstrap
	p2p.PublicBootstrap = lab.Addrs()
	t.Cleanup(func() { p2p.PublicBootstrap = saved })

	quiet := publicHost(t, p2p.Config{})
	public := publicHost(t, p2p.Config{Public: true})
	if !connected(public, lab.Host.ID()) {
		t.Fatal("a node started with Public did not dial the public bootstrap list")
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(quiet.Network().Peers()); n != 0 {
		t.Fatalf("a node without Public or Bootstrap dialed %d peers", n)
	}
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	if _, err := p2p.New(t.Context(), p2p.Config{Identity: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Public: true, SwarmKey: make([]byte, 32)}); err == nil {
		t.Fatal("a private swarm key and the public network were accepted together")
	}
}

// TestPublicDHTIsAmino: the public swarm's DHT speaks the standard IPFS
// protocol: a plain IPFS DHT node puts an offload host in its routing
// table, and a record one announces the other finds.
func TestPublicDHTIsAmino(t *testing.T) {
	lab := plainipfs.Start(t)
	h := publicHost(t, p2p.Config{Bootstrap: lab.Addrs(), ReachOptions: p2p.ReachOptions{DHTMode: p2p.DHTServer}})
	deadline := time.Now().Add(10 * time.Second)
	for lab.DHT.RoutingTable().Find(h.ID()) == "" || h.DHT.RoutingTable().Size() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the plain IPFS DHT never added the offload host to its routing table")
		}
		time.Sleep(50 * time.Millisecond)
	}
	key := p2p.RendezvousCID("amino-test")
	if err := h.DHT.Provide(t.Context(), key, true); err != nil {
		t.Fatalf("provide through the public DHT: %v", err)
	}
	found := false
	for info := range lab.DHT.FindProvidersAsync(t.Context(), key, 1) {
		found = found || info.ID == h.ID()
	}
	if !found {
		t.Fatal("the plain IPFS node did not find the offload host's provider record")
	}
}

// TestRendezvousThroughPlainIPFSNode: two hosts whose only bootstrap peer
// is a plain IPFS node (DHT clients, as public nodes are until AutoNAT
// finds them reachable) meet through the swarm's rendezvous key within
// seconds.
func TestRendezvousThroughPlainIPFSNode(t *testing.T) {
	lab := plainipfs.Start(t)
	reach := p2p.ReachOptions{DHTMode: p2p.DHTClient, RendezvousInterval: time.Minute}
	start := time.Now()
	a := publicHost(t, p2p.Config{Bootstrap: lab.Addrs(), ReachOptions: reach})
	b := publicHost(t, p2p.Config{Bootstrap: lab.Addrs(), ReachOptions: reach})
	for !connected(a, b.ID()) {
		if time.Since(start) > 30*time.Second {
			t.Fatal("two hosts sharing only a plain IPFS bootstrap node did not meet within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("met through the DHT in %s", time.Since(start).Round(time.Millisecond))
	if lab.Host.Network().Connectedness(a.ID()) != network.Connected {
		t.Error("host lost its bootstrap connection")
	}
	for _, h := range []*p2p.Host{a, b} {
		if r := h.Reachability(); r != p2p.ReachLocal {
			t.Errorf("reachability on loopback = %s, want %s", r, p2p.ReachLocal)
		}
	}
}

// TestPrivateSwarmKeepsItsOwnDHT: a private swarm's host serves its own DHT
// protocol and not the public one, and refuses delegated routing.
func TestPrivateSwarmKeepsItsOwnDHT(t *testing.T) {
	psk := make([]byte, 32)
	psk[0] = 7
	priv := publicHost(t, p2p.Config{SwarmKey: psk})
	pub := publicHost(t, p2p.Config{})
	has := func(h *p2p.Host, proto string) bool {
		return slices.Contains(h.Mux().Protocols(), protocol.ID(proto))
	}
	if !has(pub, "/ipfs/kad/1.0.0") {
		t.Errorf("public host protocols %v lack /ipfs/kad/1.0.0", pub.Mux().Protocols())
	}
	if has(priv, "/ipfs/kad/1.0.0") || !has(priv, "/offload/private/"+priv.Namespace+"/kad/1.0.0") {
		t.Errorf("private host protocols %v", priv.Mux().Protocols())
	}
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	if _, err := p2p.New(t.Context(), p2p.Config{Identity: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, SwarmKey: psk,
		ReachOptions: p2p.ReachOptions{DelegatedRouting: []string{"http://127.0.0.1:1"}}}); err == nil {
		t.Error("a private swarm accepted delegated routing")
	}
}
