package node_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
	"github.com/offload-project/offload/p2p"
)

// instantExec is a fake executor that finishes every task at once.
type instantExec struct{}

func (instantExec) Name() string                    { return "docker" }
func (instantExec) Available(context.Context) error { return nil }
func (instantExec) Run(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
	now := time.Now().UTC()
	return &executor.Result{Stdout: []byte("ok\n"), StdoutSize: 3, StartedAt: now, FinishedAt: now}, nil
}

func fakeProvider(labels map[string]string) opt {
	return func(c *node.Config) {
		c.ExecutorImpls = []executor.Executor{instantExec{}}
		c.Capacity = &market.Capacity{CPUs: 4, MemoryBytes: 4 << 30}
		c.Labels = labels
		c.AllowImages = []string{"*"} // its images are names of nothing
	}
}

func poolPeers(n *node.Node, f client.PoolFilter) map[string]bool {
	out := map[string]bool{}
	for _, p := range n.Pool(f) {
		out[p.Peer] = true
	}
	return out
}

func waitPool(t *testing.T, n *node.Node, want []*node.Node, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := poolPeers(n, client.PoolFilter{})
		all := true
		for _, w := range want {
			all = all && got[w.ID().String()]
		}
		if all {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("node %s sees %d of %d providers after %s", n.ID(), len(got), len(want), d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPoolConvergesAcrossFiveNodes starts four providers and a requestor in
// a chain (each bootstraps from the previous one) and waits until every
// node's pool holds every provider; then a requestor that joins late must
// see them all within a few seconds.
func TestPoolConvergesAcrossFiveNodes(t *testing.T) {
	start := time.Now()
	var provs []*node.Node
	var prev []string
	zones := []string{"eu", "us", "eu", "ap"}
	for i := range 4 {
		labels := map[string]string{"zone": zones[i]}
		if i == 2 {
			labels["fpga"] = "xilinx"
		}
		n := startNode(t, t.TempDir(), true, prev, fakeProvider(labels))
		provs = append(provs, n)
		prev = n.Identity().Addrs
	}
	reqHome := t.TempDir()
	req := startNode(t, reqHome, false, prev)
	for _, n := range append([]*node.Node{req}, provs...) {
		waitPool(t, n, provs, 15*time.Second)
	}
	t.Logf("5 nodes converged %s after the first started", time.Since(start).Round(time.Millisecond))

	// Filters, through the node and through the API client.
	if got := poolPeers(req, client.PoolFilter{Labels: map[string]string{"fpga": "xilinx"}}); len(got) != 1 || !got[provs[2].ID().String()] {
		t.Errorf("fpga=xilinx: %v", got)
	}
	if got := poolPeers(req, client.PoolFilter{Labels: map[string]string{"zone": "eu"}, Executor: "docker"}); len(got) != 2 {
		t.Errorf("zone=eu: %v", got)
	}
	if got := poolPeers(req, client.PoolFilter{GPUs: 1, GPUModel: "no-such-gpu"}); len(got) != 0 {
		t.Errorf("no-such-gpu: %v", got)
	}
	c, err := client.FromHome(reqHome)
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.Pool(t.Context(), client.PoolFilter{Labels: map[string]string{"zone": "ap"}, Arch: "any"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Peer != provs[3].ID().String() || list[0].Hardware.Labels["zone"] != "ap" ||
		list[0].Hardware.CPUs <= 0 || list[0].Hardware.MemoryBytes <= 0 || list[0].Free.CPUs != 4 || len(list[0].Executors) != 1 {
		t.Errorf("API pool zone=ap: %+v", list)
	}
	if _, err := c.Pool(t.Context(), client.PoolFilter{}); err != nil {
		t.Fatal(err)
	}

	// A requestor that joins late, through one provider.
	late := startNode(t, t.TempDir(), false, provs[0].Identity().Addrs)
	took := waitPool(t, late, provs, 5*time.Second)
	t.Logf("a late requestor saw all 4 providers after %s", took.Round(time.Millisecond))
	st := late.PoolStats()
	if st.Rejected != 0 {
		t.Errorf("honest swarm had rejections: %+v", st)
	}
}

// TestAuctionClosesWhenKnownProvidersAnswered: a peer on the task topic
// that never bids (a foreign or outdated node) must not hold the bid window
// open: the pool says which providers to wait for.
func TestAuctionClosesWhenKnownProvidersAnswered(t *testing.T) {
	prov := startNode(t, t.TempDir(), true, nil, fakeProvider(nil))
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs, func(c *node.Config) { c.BidWindow = 10 * time.Second })
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	silent, err := p2p.New(t.Context(), p2p.Config{Identity: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: req.Identity().Addrs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	topic, err := silent.PubSub.Join(silent.Topic(wire.TopicTasks))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	waitPool(t, req, []*node.Node{prov}, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for len(req.Host().PubSub.ListPeers(req.Host().Topic(wire.TopicTasks))) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("task topic peers did not appear: %v", req.Host().PubSub.ListPeers(req.Host().Topic(wire.TopicTasks)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	task, err := req.Submit(t.Context(), node.TaskSpec{Image: "fake:1", Cmd: []string{"true"}, TimeoutMS: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	task = waitFor(t, req, task.ID, 30*time.Second)
	took := time.Since(start)
	t.Logf("task %s in %s (bid window cap 10s, a silent peer on the topic)", task.State, took.Round(time.Millisecond))
	if task.State != "completed" || task.Provider != prov.ID().String() {
		t.Fatalf("task = %+v", task)
	}
	if took > 5*time.Second {
		t.Errorf("the auction waited %s: the silent topic peer held the bid window open", took)
	}
}

// TestPrivateSwarmIsolation: nodes with another swarm key, or none, cannot
// connect to a private swarm and see none of its providers.
func TestPrivateSwarmIsolation(t *testing.T) {
	keyFile := func(name string) string {
		k, err := p2p.NewSwarmKey()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, k, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyA, keyB := keyFile("a.key"), keyFile("b.key")
	withKey := func(path string) opt { return func(c *node.Config) { c.SwarmKeyPath = path } }
	prov := startNode(t, t.TempDir(), true, nil, fakeProvider(nil), withKey(keyA))
	member := startNode(t, t.TempDir(), false, prov.Identity().Addrs, withKey(keyA))
	waitPool(t, member, []*node.Node{prov}, 10*time.Second)

	other := startNode(t, t.TempDir(), false, prov.Identity().Addrs, withKey(keyB))
	public := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	for name, n := range map[string]*node.Node{"another key": other, "no key": public} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := n.Connect(ctx, prov.Identity().Addrs[0])
		cancel()
		if err == nil {
			t.Errorf("%s: connected to the private swarm", name)
		}
	}
	// A sleep is the point here: nothing may connect within this time
	// (bootstrap retries and gossip had their chance).
	time.Sleep(2 * time.Second)
	for name, n := range map[string]*node.Node{"another key": other, "no key": public} {
		if peers := n.Peers(); len(peers) != 0 {
			t.Errorf("%s: has peers %v", name, peers)
		}
		if got := n.Pool(client.PoolFilter{}); len(got) != 0 {
			t.Errorf("%s: sees providers %v", name, got)
		}
	}
	for _, p := range prov.Peers() {
		if p.ID == other.ID().String() || p.ID == public.ID().String() {
			t.Errorf("the provider is connected to an outsider %s", p.ID)
		}
	}
}
