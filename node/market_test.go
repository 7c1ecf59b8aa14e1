package node_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
	"github.com/offload-project/offload/p2p"
	"github.com/offload-project/offload/p2p/stream"
)

func TestNoAcceptableBidSaysWhy(t *testing.T) {
	req, _, mod := wasmSwarm(t, false, false) // prices 0.1 and 0.2
	spec := node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"echo", "x"}, TimeoutMS: 60_000, MaxPrice: 0.05}
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got := waitFor(t, req, sub.ID, 30*time.Second)
	if got.State != "failed" {
		t.Fatalf("state %s", got.State)
	}
	for _, want := range []string{"no provider took the task", "asked 2 of 2 candidates", "0 bid", "2 declined", "above max price 0.05"} {
		if !strings.Contains(got.Error, want) {
			t.Errorf("reason %q lacks %q", got.Error, want)
		}
	}
	if len(got.Bids) != 2 {
		t.Errorf("bids: %+v", got.Bids)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to say no (the window must close when all known providers answered)", d)
	}
}

func TestReceiptsLedgerAndReputation(t *testing.T) {
	req, provs, mod := wasmSwarm(t, false)
	spec := node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"echo", "paid"}, TimeoutMS: 60_000, Strategy: market.StrategyReputation}
	var ids []string
	for range 2 {
		sub, err := req.Submit(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sub.ID)
	}
	for _, id := range ids {
		if got := waitFor(t, req, id, time.Minute); got.State != "completed" {
			t.Fatalf("task %s: %s", id, got.Error)
		}
	}
	l, err := req.Ledger()
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 2 || l.Entries[0].Role != market.RoleSpent || l.Entries[0].Receipt == nil || len(l.Entries[0].Receipt.RequestorSig) == 0 {
		for _, e := range l.Entries {
			t.Logf("entry %+v", *e)
		}
		t.Fatalf("requestor ledger: %d entries", len(l.Entries))
	}
	if _, err := l.Entries[0].Receipt.Verify(); err != nil {
		t.Fatalf("stored receipt does not verify: %v", err)
	}
	if len(l.Peers) != 1 || l.Peers[0].Peer != provs[0].ID().String() || l.Peers[0].Tasks != 2 {
		t.Errorf("balances: %+v", l.Peers)
	}
	if r := l.Reputations[provs[0].ID().String()]; r.Completed != 2 {
		t.Errorf("reputation: %+v", r)
	}
	// The provider keeps the countersigned receipts of what it earned.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pl, err := provs[0].Ledger()
		if err != nil {
			t.Fatal(err)
		}
		if len(pl.Entries) == 2 {
			if pl.Entries[0].Role != market.RoleEarned || len(pl.Entries[0].Receipt.RequestorSig) == 0 {
				t.Fatalf("provider ledger: %+v", pl.Entries[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider ledger has %d entries", len(pl.Entries))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOutputsOverQuotaFailClearly(t *testing.T) {
	mod := testimage.BuildWASM(t)
	prov := startNode(t, t.TempDir(), true, nil, func(c *node.Config) { c.Executors = []string{"wasm"}; c.OutputsQuota = 4 })
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	c, err := req.Add(t.Context(), mod, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := req.Submit(t.Context(), node.TaskSpec{Runtime: "wasm", Image: c, Cmd: []string{"write", "/outputs/big.txt", "more than four bytes"}, TimeoutMS: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "failed" || !strings.Contains(got.Error, "quota of 4 bytes") {
		t.Fatalf("over quota: %s %q", got.State, got.Error)
	}
	// The provider is healthy afterwards.
	sub, err = req.Submit(t.Context(), node.TaskSpec{Runtime: "wasm", Image: c, Cmd: []string{"echo", "ok"}, TimeoutMS: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, req, sub.ID, time.Minute); got.State != "completed" {
		t.Fatalf("after quota failure: %s %s", got.State, got.Error)
	}
}

func TestGPUTaskNeverReachesAProviderWithoutGPUs(t *testing.T) {
	req, _, mod := wasmSwarm(t, false)
	sub, err := req.Submit(t.Context(), node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"echo", "x"}, TimeoutMS: 60_000,
		Resources: wire.Resources{GPUs: 1}})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, 30*time.Second)
	if got.State != "failed" || !strings.Contains(got.Error, "0 gpus") || len(got.Executions) != 0 {
		t.Fatalf("gpu task on a gpu-less swarm: %s %q executions=%d", got.State, got.Error, len(got.Executions))
	}
	if got := req.Pool(client.PoolFilter{GPUs: 1}); len(got) != 0 {
		t.Errorf("pool --gpus 1 lists %d providers without GPUs", len(got))
	}
}

// An award is honoured only against a live reservation the provider made
// for the same requestor, task and attempt: a stranger's award for a task
// ID it made up, or for another requestor's running task, is declined and
// costs the provider nothing; the real task finishes with its own result.
func TestAwardNeedsLiveReservation(t *testing.T) {
	req, provs, mod := wasmSwarm(t, false)
	prov := provs[0]
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := p2p.New(t.Context(), p2p.Config{Identity: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap: prov.Identity().Addrs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	award := func(id string, attempt int) wire.AwardReply {
		t.Helper()
		var reply wire.AwardReply
		a := wire.Award{TaskID: id, Attempt: attempt, Spec: node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"echo", "pwned"}, TimeoutMS: 60_000}}
		if err := stream.Request(t.Context(), stranger, prov.ID(), wire.ProtoAward, &a, wire.MaxAckSize, &reply); err != nil {
			t.Fatalf("award: %v", err)
		}
		return reply
	}
	if r := award("01made0up0task0id0000000000", 1); r.Accepted || r.Reason != market.ReasonNoReservation {
		t.Fatalf("award without a bid: %+v", r)
	}

	sub, err := req.Submit(t.Context(), node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"sleep", "1s"}, TimeoutMS: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := req.Get(sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == "running" {
			break
		}
		if time.Now().After(deadline) || got.State == "failed" || got.State == "completed" {
			t.Fatalf("task did not run: %s %s", got.State, got.Error)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for attempt := 0; attempt <= 2; attempt++ {
		if r := award(sub.ID, attempt); r.Accepted || r.Reason != market.ReasonNoReservation {
			t.Fatalf("a stranger's award for the running task (attempt %d): %+v", attempt, r)
		}
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || strings.Contains(got.Stdout, "pwned") {
		t.Fatalf("the real task: %s %q %s", got.State, got.Stdout, got.Error)
	}
}

// gVisor is a capability like any other: a provider whose engine has runsc
// advertises it and runs a task that asks for it under gVisor's kernel; a
// provider without it declines such a task and says why, and the pool
// filter tells the two apart.
func TestGVisorIsAdvertisedAndMatched(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	with := startNode(t, t.TempDir(), true, nil)
	without := startNode(t, t.TempDir(), true, with.Identity().Addrs, fakeProvider(nil))
	req := startNode(t, t.TempDir(), false, with.Identity().Addrs)
	waitPool(t, req, []*node.Node{with, without}, 15*time.Second)
	gv := poolPeers(req, client.PoolFilter{Isolation: "gvisor"})
	if !gv[with.ID().String()] {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI registers runsc, but the docker provider does not advertise gvisor: %v", req.Pool(client.PoolFilter{}))
		}
		t.Skip("this engine has no runsc runtime")
	}
	if gv[without.ID().String()] || len(gv) != 1 {
		t.Fatalf("pool filtered on gvisor: %v", gv)
	}

	spec := helloSpec("cat", "/proc/version")
	spec.Isolation = "gvisor"
	spec.Provider = without.ID().String()
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "failed" || !strings.Contains(got.Error, "no gvisor isolation") {
		t.Fatalf("a provider without gVisor: %s %q", got.State, got.Error)
	}

	spec.Provider = ""
	sub, err = req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got = waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.Provider != with.ID().String() || !strings.Contains(got.Stdout, "Linux version 4.4.0") {
		t.Fatalf("gVisor task: %s on %s, stdout %q, error %q", got.State, got.Provider, got.Stdout, got.Error)
	}
}
