package market_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// candidatesOf is a RequestorConfig.Candidates that lists the given
// providers as the pool would, each advertising its whole capacity free.
func candidatesOf(provs ...*testProvider) func(wire.Requirements) []market.Candidate {
	return func(wire.Requirements) []market.Candidate {
		out := make([]market.Candidate, 0, len(provs))
		for _, p := range provs {
			out = append(out, market.Candidate{Peer: p.h.ID(), Price: 1, Free: wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}, IssuedAt: time.Now()})
		}
		return out
	}
}

// countAnnouncements counts the gossiped announcements a provider node
// receives on the task topic.
func countAnnouncements(t *testing.T, n *peerNode) *atomic.Int64 {
	t.Helper()
	sub, err := n.topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	var c atomic.Int64
	go func() {
		for {
			if _, err := sub.Next(t.Context()); err != nil {
				return
			}
			c.Add(1)
		}
	}()
	t.Cleanup(sub.Cancel)
	return &c
}

// TestTargetedAuctionAsksFew: with ten matching providers in the pool, each
// task asks Fanout of them directly: at most Fanout answers per task, no
// gossiped announcement, and the work spreads over the providers (ties are
// broken at random and one place goes to a random candidate).
func TestTargetedAuctionAsksFew(t *testing.T) {
	s := newSwarm(t)
	var provs []*testProvider
	for range 10 {
		provs = append(provs, s.provider(providerConfig(t, 1)))
	}
	cfg := fastRequestor()
	cfg.Candidates = candidatesOf(provs...)
	cfg.BidWindow = 5 * time.Second // never reached: asks end with their answers
	req := s.requestor(cfg)
	s.connect()
	heard := countAnnouncements(t, provs[0].peerNode)

	ran := map[string]int{}
	start := time.Now()
	const tasks = 20
	for range tasks {
		task := req.wait(t, req.submit(t, wire.TaskSpec{}), 10*time.Second)
		if task.State != market.StateCompleted {
			t.Fatalf("task %s: %s", task.State, task.Reason)
		}
		if len(task.Bids) > market.DefaultFanout {
			t.Fatalf("%d answers recorded for one task, want at most %d: %+v", len(task.Bids), market.DefaultFanout, task.Bids)
		}
		if !strings.Contains(task.Bids[0].Outcome, "won") && !strings.Contains(task.Bids[0].Outcome, "lost") {
			t.Fatalf("bid outcome %q", task.Bids[0].Outcome)
		}
		ran[task.Provider]++
	}
	took := time.Since(start)
	// Every losing bid let go of its reservation at once (its ask stream's
	// verdict), long before the reservations' TTL (3 s).
	waitFor(t, time.Second, "every reservation given back", func() bool {
		for _, p := range provs {
			if p.p.Free().CPUs != 2 {
				return false
			}
		}
		return true
	})
	if n := heard.Load(); n != 0 {
		t.Errorf("a provider received %d gossiped announcements; targeted auctions send none", n)
	}
	if len(ran) < 3 {
		t.Errorf("%d tasks ran on only %d of 10 equal providers: %v", tasks, len(ran), ran)
	}
	// No auction waited for its window (5 s): the asked answered at once.
	if took > 5*time.Second {
		t.Errorf("%d tasks took %s", tasks, took)
	}
	t.Logf("%d tasks in %s over %d providers", tasks, took.Round(time.Millisecond), len(ran))
}

// TestTargetedAuctionWidens: the three candidates ranked first (the
// cheapest) cannot run the task and decline; the auction asks the next
// wave and the task completes there. "Why is my task waiting" names every
// candidate asked and what it said.
func TestTargetedAuctionWidens(t *testing.T) {
	s := newSwarm(t)
	var wrong, right []*testProvider
	for range 3 {
		// No docker executor: these decline docker tasks.
		wrong = append(wrong, s.providerRuntime(providerConfig(t, 1), "wasm"))
	}
	for range 3 {
		right = append(right, s.provider(providerConfig(t, 2)))
	}
	cands := func(wire.Requirements) []market.Candidate {
		var out []market.Candidate
		for _, p := range wrong {
			out = append(out, market.Candidate{Peer: p.h.ID(), Price: 1, Free: wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}})
		}
		for _, p := range right {
			out = append(out, market.Candidate{Peer: p.h.ID(), Price: 2, Free: wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}})
		}
		return out
	}
	cfg := fastRequestor()
	cfg.Candidates = cands
	cfg.Fanout = 2 // the first wave asks two of the cheap ones, the next four the rest
	req := s.requestor(cfg)
	s.connect()

	task := req.wait(t, req.submit(t, wire.TaskSpec{}), 10*time.Second)
	if task.State != market.StateCompleted {
		t.Fatalf("task %s: %s", task.State, task.Reason)
	}
	declined := 0
	for _, b := range task.Bids {
		if b.Decline != "" {
			declined++
			if !strings.Contains(b.Decline, "no docker executor") {
				t.Errorf("decline %q", b.Decline)
			}
		}
	}
	for _, p := range wrong {
		if p.h.ID().String() == task.Provider {
			t.Fatalf("ran on a provider without the executor")
		}
	}
	if len(task.Bids) > 6 {
		t.Fatalf("%d answers, want at most the 6 candidates", len(task.Bids))
	}
	t.Logf("answers %d (%d declines): %s", len(task.Bids), declined, task.Reason)

	// When every candidate declines, the task fails saying so, per
	// candidate, without waiting for its window.
	cfg2 := fastRequestor()
	cfg2.BidWindow = 5 * time.Second
	cfg2.Candidates = func(wire.Requirements) []market.Candidate {
		var out []market.Candidate
		for _, p := range wrong {
			out = append(out, market.Candidate{Peer: p.h.ID(), Price: 1, Free: wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}})
		}
		return out
	}
	req2 := s.requestor(cfg2)
	s.connect()
	start := time.Now()
	failed := req2.wait(t, req2.submit(t, wire.TaskSpec{}), 10*time.Second)
	if failed.State != market.StateFailed || !strings.Contains(failed.Reason, "asked 3 of 3 candidates") || !strings.Contains(failed.Reason, "3 declined") {
		t.Fatalf("task %s: %q", failed.State, failed.Reason)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("declines took %s", d)
	}
}

// TestTargetedAuctionSilentCandidates: candidates that cannot be asked (a
// peer without the ask protocol) or never answer (one that reads the ask
// and stays silent) cost an auction no more than answerGrace once another
// candidate bid, are recorded as silent with why, and are ranked after
// the others next time.
func TestTargetedAuctionSilentCandidates(t *testing.T) {
	s := newSwarm(t)
	good := s.provider(providerConfig(t, 1))
	mute := s.newPeer() // no market at all
	hang := s.newPeer() // reads the ask and never answers
	hang.h.SetStreamHandler(wire.ProtoAsk, func(st network.Stream) {
		defer st.Close()
		buf := make([]byte, 1024)
		for {
			if _, err := st.Read(buf); err != nil {
				return
			}
		}
	})
	cfg := fastRequestor()
	cfg.BidWindow = 4 * time.Second
	cfg.Candidates = func(wire.Requirements) []market.Candidate {
		free := wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}
		return []market.Candidate{{Peer: mute.h.ID(), Price: 0.5, Free: free}, {Peer: hang.h.ID(), Price: 0.5, Free: free}, {Peer: good.h.ID(), Price: 1, Free: free}}
	}
	req := s.requestor(cfg)
	s.connect()
	start := time.Now()
	task := req.wait(t, req.submit(t, wire.TaskSpec{}), 10*time.Second)
	took := time.Since(start)
	if task.State != market.StateCompleted || task.Provider != good.h.ID().String() {
		t.Fatalf("task %s on %s: %s", task.State, task.Provider, task.Reason)
	}
	silent := 0
	for _, b := range task.Bids {
		if b.Silent {
			silent++
			if !strings.HasPrefix(b.Outcome, "asked, no answer") {
				t.Errorf("silent outcome %q", b.Outcome)
			}
		}
	}
	if silent != 2 {
		t.Fatalf("%d silent records, want 2: %+v", silent, task.Bids)
	}
	if took > 3*time.Second {
		t.Fatalf("the auction waited %s for silent candidates (window 4 s)", took)
	}
	// Next time the silent ones rank after the provider that answered,
	// though they advertise a lower price: the first wave (fanout 3 asks
	// all three again, so look at the order through a fanout of 1).
	cfg.Fanout = 1
	req2 := s.requestor(cfg)
	s.connect()
	req2.wait(t, req2.submit(t, wire.TaskSpec{}), 10*time.Second) // learns who is silent
	second := req2.wait(t, req2.submit(t, wire.TaskSpec{}), 10*time.Second)
	if second.State != market.StateCompleted || len(second.Bids) != 1 || second.Bids[0].Provider != good.h.ID().String() {
		t.Fatalf("second task %s with answers %+v: %s", second.State, second.Bids, second.Reason)
	}
	t.Logf("first auction %s", took.Round(time.Millisecond))
}

// TestTargetedAuctionLooksUpMore: a pool with fewer candidates than the
// fanout asks discovery for more (Discover), in the background, while the
// task goes ahead with the candidates it has.
func TestTargetedAuctionLooksUpMore(t *testing.T) {
	s := newSwarm(t)
	p := s.provider(providerConfig(t, 1))
	cfg := fastRequestor()
	cfg.Candidates = candidatesOf(p)
	looked := make(chan int, 4)
	cfg.Discover = func(ctx context.Context, _ wire.Requirements, want int) int {
		looked <- want
		return 1
	}
	req := s.requestor(cfg)
	s.connect()
	task := req.wait(t, req.submit(t, wire.TaskSpec{}), 10*time.Second)
	if task.State != market.StateCompleted {
		t.Fatalf("task %s: %s", task.State, task.Reason)
	}
	select {
	case want := <-looked:
		if want != market.DefaultFanout {
			t.Fatalf("looked up %d, want %d", want, market.DefaultFanout)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no lookup of more candidates")
	}
}

// TestAskRefusals attacks a provider's ask protocol: an ask naming another
// requestor is refused with the reason and reserves nothing; a bid whose
// ack says it was not taken (or whose asker vanishes before acking) gives
// back what it reserved; an oversized ask is cut off; and a flood of asks
// past the per-peer rate is refused without reserving anything.
func TestAskRefusals(t *testing.T) {
	s := newSwarm(t)
	var plog logBuffer
	cfg := providerConfig(t, 1)
	cfg.Logger = plog.logger()
	prov := s.provider(cfg)
	rg := &rogue{t: t, peerNode: s.newPeer()}
	victim := s.newPeer()
	s.connect()
	free := prov.p.Free()
	ann := func(requestor string, task string) wire.Announce {
		return wire.Announce{Version: wire.Version, TaskID: task, Attempt: 1, Requestor: requestor,
			Req: wire.RequirementsOf(wire.TaskSpec{Image: "test:1", Cmd: []string{"x"}}), BidDeadline: time.Now().Add(2 * time.Second).UnixMilli()}
	}

	// Forged requestor: refused, said why, nothing held.
	forged := ann(victim.h.ID().String(), "forged")
	bid := ack[wire.Bid](t, "forged ask", rg.send(prov.h.ID(), wire.ProtoAsk, frame(t, &forged)))
	if !strings.Contains(bid.Decline, "sent by another peer than the requestor it names") {
		t.Fatalf("forged ask answered %+v", bid)
	}

	// An honest-looking ask whose bid the asker refuses in its ack.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for i, ackMsg := range []*wire.BidAck{{Code: wire.CodeTooMany, Reason: "no thanks"}, nil} {
		st, err := rg.h.NewStream(ctx, prov.h.ID(), wire.ProtoAsk)
		if err != nil {
			t.Fatal(err)
		}
		a := ann(rg.h.ID().String(), "refused"+string(rune('a'+i)))
		if err := stream.WriteMsg(st, &a); err != nil {
			t.Fatal(err)
		}
		var b wire.Bid
		if err := stream.ReadMsg(stream.NewReader(st), wire.MaxBidSize, &b); err != nil || b.Decline != "" {
			t.Fatalf("ask %d: bid %+v, %v", i, b, err)
		}
		if f := prov.p.Free(); f.CPUs >= free.CPUs {
			t.Fatalf("the bid reserved nothing: free %+v", f)
		}
		if ackMsg != nil {
			_ = stream.WriteMsg(st, ackMsg)
			_ = st.Close()
		} else {
			_ = st.Reset() // vanishes before acking
		}
		waitFor(t, 2*time.Second, "reservation given back", func() bool { return prov.p.Free() == free })
	}

	// Oversized: cut off with no answer.
	big := ann(rg.h.ID().String(), "big")
	big.Req.Image = strings.Repeat("x", wire.MaxAnnounceSize)
	if got := rg.send(prov.h.ID(), wire.ProtoAsk, frame(t, &big)); got != nil {
		t.Fatalf("oversized ask answered %q", got)
	}

	// A flood past the per-peer rate: refused (reset), nothing held.
	answered, refused := 0, 0
	for i := range 1500 {
		a := ann(rg.h.ID().String(), "flood")
		a.Attempt = i + 1
		a.Req.Runtime = "wasm" // declined at once: no executor
		if body := rg.send(prov.h.ID(), wire.ProtoAsk, frame(t, &a)); body == nil {
			refused++
		} else {
			answered++
		}
		if refused > 0 {
			break
		}
	}
	if refused == 0 {
		t.Fatalf("%d asks in a burst all answered: no rate limit", answered)
	}
	if f := prov.p.Free(); f != free {
		t.Fatalf("free after the attacks = %+v, want %+v", f, free)
	}
	t.Logf("flood: %d answered before the first refusal", answered)
}

// TestEachRunsOnEveryProvider: an each task runs once on every provider
// that matched at submit time, each run pinned to its provider with its own
// result; the parent completes when all did, and fails naming the provider
// whose run did not complete.
func TestEachRunsOnEveryProvider(t *testing.T) {
	s := newSwarm(t)
	var provs []*testProvider
	for range 3 {
		provs = append(provs, s.provider(providerConfig(t, 1)))
	}
	cfg := fastRequestor()
	cfg.Candidates = candidatesOf(provs...)
	req := s.requestor(cfg)
	s.connect()

	parent := req.wait(t, req.submit(t, wire.TaskSpec{Each: true}), 10*time.Second)
	if parent.State != market.StateCompleted || parent.Group == nil || parent.Group.Kind != market.GroupEach || len(parent.Group.Children) != 3 {
		t.Fatalf("parent %s (%s): %+v", parent.State, parent.Reason, parent.Group)
	}
	ran := map[string]bool{}
	for _, c := range parent.Group.Children {
		child, err := req.r.Get(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if child.State != market.StateCompleted || child.Spec.Provider != child.Provider || string(child.Result.Stdout) != "ok from docker" {
			t.Fatalf("child %d: %s on %s (pinned %s): %+v", c.Piece, child.State, child.Provider, child.Spec.Provider, child.Result)
		}
		ran[child.Provider] = true
	}
	if len(ran) != 3 {
		t.Fatalf("ran on %d distinct providers, want 3", len(ran))
	}

	// One provider's run fails: the parent fails and says which.
	provs[2].ex.setRun(func(context.Context, executor.Spec) (*executor.Result, error) {
		now := time.Now()
		return &executor.Result{ExitCode: 3, StartedAt: now, FinishedAt: now}, nil
	})
	failed := req.wait(t, req.submit(t, wire.TaskSpec{Each: true}), 10*time.Second)
	if failed.State != market.StateFailed || !strings.Contains(failed.Reason, "2 of 3 providers completed") {
		t.Fatalf("parent %s: %q", failed.State, failed.Reason)
	}

	// Nothing matches: refused at submit, saying so.
	none := fastRequestor()
	req2 := s.requestor(none)
	if _, err := req2.r.Submit(t.Context(), wire.TaskSpec{Each: true, Image: "test:1", Cmd: []string{"x"}}); err == nil || !strings.Contains(err.Error(), "no provider") {
		t.Fatalf("each with no candidates: %v", err)
	}
}

// TestSilentCandidatesAreAskedAgain: when every candidate the pool knows
// stays silent and no provider is on the task topic (a provider whose
// record's addresses went stale while it took a relay reservation), the
// task is not failed at once: it is asked again, and completes once the
// provider answers.
func TestSilentCandidatesAreAskedAgain(t *testing.T) {
	s := newSwarm(t)
	late := s.newPeer() // a provider that starts answering later
	cfg := fastRequestor()
	cfg.BidWindow = 300 * time.Millisecond
	cfg.ProviderWait = 200 * time.Millisecond
	cfg.Candidates = func(wire.Requirements) []market.Candidate {
		return []market.Candidate{{Peer: late.h.ID(), Price: 1, Free: wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}}}
	}
	req := s.requestor(cfg)
	if err := s.mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := s.mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	id := req.submit(t, wire.TaskSpec{})
	time.Sleep(1500 * time.Millisecond) // a few silent rounds
	if cur, _ := req.r.Get(id); cur.State.IsTerminal() {
		t.Fatalf("failed after silent rounds: %s", cur.Reason)
	}
	// The provider comes up on that identity: the task completes there.
	prov := market.ProviderConfig{Capacity: market.Capacity{CPUs: 2, MemoryBytes: 2 << 30}, Price: 1,
		Heartbeat: 100 * time.Millisecond, ReservationTTL: 3 * time.Second, WorkDir: t.TempDir(), AllowedImages: []string{"*"}, Logger: quietLog()}
	ex := newFakeExec("docker")
	p, err := market.NewProvider(late.h, newMemStore[market.ExecRecord](), late.topic, []executor.Executor{ex}, prov)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if task := req.wait(t, id, 15*time.Second); task.State != market.StateCompleted || task.Provider != late.h.ID().String() {
		t.Fatalf("task %s on %s: %s", task.State, task.Provider, task.Reason)
	}
}
