package node_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/plainipfs"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
	"github.com/offload-project/offload/p2p"
)

// publicLike makes a node behave as a public node does by default: a DHT
// client (what a node is until AutoNAT finds it reachable) that looks for
// its swarm's members under the rendezvous key. On loopback neither is
// the default (nothing there is public), so the test asks for both.
func publicLike(c *node.Config) {
	c.Reach = p2p.ReachOptions{DHTMode: p2p.DHTClient, RendezvousInterval: time.Minute}
}

// TestMeetAndFetchThroughPlainIPFS is the stand-in for the public network:
// a plain IPFS node (the standard DHT and bitswap, no offload protocol) is
// the only bootstrap peer of a provider and a requestor, which meet
// through it and run a task; the task's input is held by a second plain
// IPFS node that neither offload node knows, found through the DHT.
func TestMeetAndFetchThroughPlainIPFS(t *testing.T) {
	mod := testimage.BuildWASM(t)
	boot := plainipfs.Start(t)
	holder := plainipfs.Start(t, boot.Addrs()...)
	const text = "held by a plain IPFS node\n"
	in, err := holder.AddDir(t.Context(), map[string][]byte{"held.txt": []byte(text)})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	prov := startNode(t, t.TempDir(), true, boot.Addrs(), publicLike, func(c *node.Config) {
		c.ExecutorImpls = wasmExec(t, false)
	})
	req := startNode(t, t.TempDir(), false, boot.Addrs(), publicLike)
	for len(req.Pool(client.PoolFilter{})) == 0 {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the requestor did not find the provider through the plain IPFS node within 30 s (peers %v)", req.Peers())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("provider in the requestor's pool %s after both started", time.Since(start).Round(time.Millisecond))
	// (The offload nodes may be connected to the holder by now: it is a
	// DHT server their lookups asked. Nobody told them it holds the input.)

	c, err := req.Add(t.Context(), mod, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	spec := node.TaskSpec{Runtime: "wasm", Image: c, Cmd: []string{"cat", "/inputs/dir/held.txt"}, TimeoutMS: 60_000,
		Inputs: []wire.Input{{CID: in.String(), Path: "/inputs/dir"}}}
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.Stdout != text || got.Provider != prov.ID().String() {
		t.Fatalf("task reading a plain IPFS node's input: %s on %s %q (%s)", got.State, got.Provider, got.Stdout, got.Error)
	}
	t.Logf("task completed %s after both started", time.Since(start).Round(time.Millisecond))

	// `offload get` of content only a plain IPFS node holds.
	other, err := holder.AddDir(t.Context(), map[string][]byte{"got.txt": []byte("fetched by offload get\n")})
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "got")
	if err := req.GetContent(t.Context(), other.String(), dest); err != nil {
		t.Fatalf("get a plain IPFS node's content: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "got.txt")); err != nil || string(b) != "fetched by offload get\n" {
		t.Fatalf("got %q, %v", b, err)
	}
}

// TestInitPublicJoinsThePublicList: a home marked public (offload init
// --public) makes the node dial the public bootstrap list, swapped here for
// a lab address; an unmarked home dials nothing.
func TestInitPublicJoinsThePublicList(t *testing.T) {
	lab := plainipfs.Start(t)
	saved := p2p.PublicBootstrap
	p2p.PublicBootstrap = lab.Addrs()
	t.Cleanup(func() { p2p.PublicBootstrap = saved })

	quiet := startNode(t, t.TempDir(), false, nil)
	home := t.TempDir()
	if err := node.MarkPublic(home); err != nil {
		t.Fatal(err)
	}
	public := startNode(t, home, false, nil)
	if len(public.Peers()) == 0 || public.Peers()[0].ID != lab.Host.ID().String() {
		t.Fatalf("a node whose home is marked public is connected to %v, want the public list's node", public.Peers())
	}
	if n := len(quiet.Peers()); n != 0 {
		t.Fatalf("a node without --public or --bootstrap is connected to %d peers", n)
	}
	if r := public.Identity().Reachability; r != "local" {
		t.Errorf("reachability on loopback %q, want local", r)
	}
}

// TestDelegatedRoutingFindsContent: a node that knows no peer finds the
// holder of a CID through a delegated routing endpoint (the Delegated
// Routing V1 HTTP API, served here on loopback by the test) and fetches
// it; the endpoint's requests are counted.
func TestDelegatedRoutingFindsContent(t *testing.T) {
	holder := plainipfs.Start(t)
	const text = "found through delegated routing\n"
	c, err := holder.AddDir(t.Context(), map[string][]byte{"f.txt": []byte(text)})
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/routing/v1/providers/"+c.String() {
			http.NotFound(w, r)
			return
		}
		asked.Add(1)
		rec := map[string]any{"Schema": "peer", "ID": holder.Host.ID().String(), "Protocols": []string{"transport-bitswap"}}
		var addrs []string
		for _, a := range holder.Host.Addrs() {
			addrs = append(addrs, a.String())
		}
		rec["Addrs"] = addrs
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"Providers": []any{rec}})
	}))
	defer srv.Close()

	n := startNode(t, t.TempDir(), false, nil, func(cfg *node.Config) {
		cfg.Reach.DelegatedRouting = []string{srv.URL}
		cfg.ContentTimeout = 20 * time.Second
	})
	dest := filepath.Join(t.TempDir(), "got")
	if err := n.GetContent(t.Context(), c.String(), dest); err != nil {
		t.Fatalf("get through delegated routing: %v (endpoint asked %d times)", err, asked.Load())
	}
	b, err := os.ReadFile(filepath.Join(dest, "f.txt"))
	if err != nil || string(b) != text {
		t.Fatalf("fetched %q, %v", b, err)
	}
	if asked.Load() == 0 {
		t.Error("the delegated routing endpoint was never asked")
	}
}
