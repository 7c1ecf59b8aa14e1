package node_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/node"
)

// TestBuildNetworkAdvertised: a provider whose builder lets RUN steps join
// a network advertises build-network=NAME beside the operator's labels,
// and a requestor finds it by that label. The builder is never asked to
// build, so no Docker engine is needed.
func TestBuildNetworkAdvertised(t *testing.T) {
	d, err := docker.New()
	if err != nil {
		t.Fatal(err)
	}
	b, err := docker.NewBuilder(d, docker.WithBuildNetwork("bridge"))
	if err != nil {
		t.Fatal(err)
	}
	prov := startNode(t, t.TempDir(), true, nil, func(c *node.Config) {
		c.ExecutorImpls = []executor.Executor{instantExec{}, b}
		c.Capacity = &market.Capacity{CPUs: 4, MemoryBytes: 4 << 30}
		c.Labels = map[string]string{"zone": "eu"}
	})
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	waitPool(t, req, []*node.Node{prov}, 10*time.Second)
	list := req.Pool(client.PoolFilter{Labels: map[string]string{node.LabelBuildNetwork: "bridge"}})
	if len(list) != 1 || list[0].Peer != prov.ID().String() {
		t.Fatalf("pool by build-network=bridge: %+v", list)
	}
	if l := list[0].Hardware.Labels; l["zone"] != "eu" || l[node.LabelBuildNetwork] != "bridge" {
		t.Errorf("labels %v", l)
	}
}

// TestBuildNetworkNeedsBuilds: a build network on a node that offers no
// builds is refused when it starts.
func TestBuildNetworkNeedsBuilds(t *testing.T) {
	_, err := node.New(t.Context(), node.Config{Home: t.TempDir(), Provider: true, Executors: []string{"wasm"}, BuildNetwork: "bridge",
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Logger: testLogger(t)})
	if err == nil {
		t.Fatal("a build network without builds was accepted")
	}
	t.Log(err)
}

// TestBuildNetworkMissingAtStart: a provider whose build network is not on
// the engine does not start, and says which network.
func TestBuildNetworkMissingAtStart(t *testing.T) {
	testimage.RequireDocker(t)
	_, err := node.New(t.Context(), node.Config{Home: t.TempDir(), Provider: true, Executors: []string{"wasm"}, Build: true,
		BuildNetwork: "offload-test-no-such-network", Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Logger: testLogger(t)})
	if !errors.Is(err, docker.ErrBuildNetwork) || !strings.Contains(err.Error(), "offload-test-no-such-network") {
		t.Fatalf("err = %v, want ErrBuildNetwork naming the network", err)
	}
	t.Log(err)
}
