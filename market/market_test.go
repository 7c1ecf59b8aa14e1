package market_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// The tests in this file run both roles on an in-memory network with a
// fake executor (harness_test.go): each takes well under a few seconds and
// needs no Docker.

// TestAuctionAwardsCheapest: every provider bids, the cheapest wins and
// runs the task, the others' bids are recorded as lost.
func TestAuctionAwardsCheapest(t *testing.T) {
	s := newSwarm(t)
	var provs []*testProvider
	for _, price := range []float64{3, 1, 2} {
		provs = append(provs, s.provider(providerConfig(t, price)))
	}
	req := s.requestor(fastRequestor())
	s.connect()

	task := req.wait(t, req.submit(t, wire.TaskSpec{}), 10*time.Second)
	if task.State != market.StateCompleted {
		t.Fatalf("task %s: %s", task.State, task.Reason)
	}
	if task.Provider != provs[1].h.ID().String() || string(task.Result.Stdout) != "ok from docker" {
		t.Fatalf("ran on %s with %q, want the price-1 provider", task.Provider, task.Result.Stdout)
	}
	if len(task.Bids) != 3 {
		t.Fatalf("%d bids recorded, want 3: %+v", len(task.Bids), task.Bids)
	}
	for _, b := range task.Bids {
		won := b.Provider == task.Provider
		if won != strings.HasPrefix(b.Outcome, "won") || (!won && !strings.HasPrefix(b.Outcome, "lost to")) {
			t.Errorf("bid of %s (price %g): outcome %q", b.Provider, b.Price, b.Outcome)
		}
	}
	if ex := execOf(task)[provs[1].h.ID()]; len(ex) != 1 || ex[0].State != market.AttemptCompleted {
		t.Fatalf("executions: %+v", task.Executions)
	}
	for _, p := range []*testProvider{provs[0], provs[2]} {
		if p.ex.runs != 0 {
			t.Errorf("a losing provider ran the task %d times", p.ex.runs)
		}
	}
}

// TestDeclineSaysWhy: providers that cannot take a task answer with a
// reason, and the task fails at once saying why, per provider.
func TestDeclineSaysWhy(t *testing.T) {
	s := newSwarm(t)
	s.provider(providerConfig(t, 1))
	cfg := providerConfig(t, 5)
	s.provider(cfg)
	req := s.requestor(fastRequestor())
	s.connect()

	start := time.Now()
	id := req.submit(t, wire.TaskSpec{Runtime: "wasm", Image: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"})
	task := req.wait(t, id, 10*time.Second)
	if task.State != market.StateFailed || !strings.Contains(task.Reason, "no wasm executor") || !strings.Contains(task.Reason, "2 declined") {
		t.Fatalf("task %s: %q", task.State, task.Reason)
	}
	// Both declined: the bid window closed as soon as they answered.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("declines took %s", d)
	}
	price := req.submit(t, wire.TaskSpec{MaxPrice: 0.5})
	if task := req.wait(t, price, 10*time.Second); task.State != market.StateFailed || !strings.Contains(task.Reason, "above max price") {
		t.Fatalf("over-price task %s: %q", task.State, task.Reason)
	}
}

// TestFailoverWhenProviderDies: the provider running a task vanishes; the
// requestor notices the silence within its heartbeat timeout, records the
// attempt failed and the task completes on another provider.
func TestFailoverWhenProviderDies(t *testing.T) {
	s := newSwarm(t)
	victim := s.provider(providerConfig(t, 1))
	victim.ex.setRun(blockUntilCanceled)
	other := s.provider(providerConfig(t, 2))
	req := s.requestor(fastRequestor())
	s.connect()

	id := req.submit(t, wire.TaskSpec{})
	req.waitState(t, id, market.StateRunning, 10*time.Second)
	victim.started(t, time.Second)
	killed := time.Now()
	victim.kill()

	task := req.wait(t, id, 15*time.Second)
	if task.State != market.StateCompleted || task.Provider != other.h.ID().String() {
		t.Fatalf("task %s on %s: %s", task.State, task.Provider, task.Reason)
	}
	ex := execOf(task)
	if v := ex[victim.h.ID()]; len(v) != 1 || v[0].State != market.AttemptFailed {
		t.Fatalf("victim's attempt: %+v", v)
	}
	if o := ex[other.h.ID()]; len(o) != 1 || o[0].State != market.AttemptCompleted || o[0].Attempt != 2 {
		t.Fatalf("other's attempt: %+v", o)
	}
	t.Logf("failover completed %s after the kill", time.Since(killed).Round(time.Millisecond))
}

// TestRetryableFailureMovesOn: a provider whose engine is gone fails the
// run as retryable; the task runs elsewhere within its retry budget, and
// fails once the budget is spent.
func TestRetryableFailureMovesOn(t *testing.T) {
	s := newSwarm(t)
	broken := s.provider(providerConfig(t, 1))
	broken.ex.setRun(func(context.Context, executor.Spec) (*executor.Result, error) { return nil, errUnavailable })
	good := s.provider(providerConfig(t, 2))
	req := s.requestor(fastRequestor())
	s.connect()

	task := req.wait(t, req.submit(t, wire.TaskSpec{}), 10*time.Second)
	if task.State != market.StateCompleted || task.Provider != good.h.ID().String() {
		t.Fatalf("task %s on %s: %s", task.State, task.Provider, task.Reason)
	}
	if b := execOf(task)[broken.h.ID()]; len(b) != 1 || b[0].State != market.AttemptFailed || !b[0].Result.Retryable {
		t.Fatalf("broken provider's attempt: %+v", b)
	}

	// No retries: the first retryable failure ends the task.
	good.ex.setRun(func(context.Context, executor.Spec) (*executor.Result, error) { return nil, errUnavailable })
	task = req.wait(t, req.submit(t, wire.TaskSpec{Retries: wire.Retries(0)}), 10*time.Second)
	if task.State != market.StateFailed || len(task.Executions) != 1 {
		t.Fatalf("with no retries: %s after %d executions: %s", task.State, len(task.Executions), task.Reason)
	}
	// The default budget applies when the spec says nothing.
	task = req.wait(t, req.submit(t, wire.TaskSpec{}), 10*time.Second)
	if task.State != market.StateFailed || !strings.Contains(task.Reason, "failed or are excluded") {
		t.Fatalf("default budget: %s after %d executions: %s", task.State, len(task.Executions), task.Reason)
	}
}

// TestNonZeroExitIsNotRetried: a task that ran and exited non-zero failed
// on its own; it is not run again.
func TestNonZeroExitIsNotRetried(t *testing.T) {
	s := newSwarm(t)
	p := s.provider(providerConfig(t, 1))
	p.ex.setRun(func(context.Context, executor.Spec) (*executor.Result, error) {
		return &executor.Result{ExitCode: 3}, nil
	})
	q := s.provider(providerConfig(t, 2))
	req := s.requestor(fastRequestor())
	s.connect()
	task := req.wait(t, req.submit(t, wire.TaskSpec{}), 10*time.Second)
	if task.State != market.StateFailed || task.Result.ExitCode != 3 || q.ex.runs != 0 {
		t.Fatalf("task %s exit %d, other provider ran %d: %s", task.State, task.Result.ExitCode, q.ex.runs, task.Reason)
	}
}

// TestRedundantCopiesOnDistinctProviders: redundancy 2 runs one copy on
// each of two providers and completes when both agree.
func TestRedundantCopiesOnDistinctProviders(t *testing.T) {
	s := newSwarm(t)
	a := s.provider(providerConfig(t, 1))
	b := s.provider(providerConfig(t, 1))
	req := s.requestor(fastRequestor())
	s.connect()
	task := req.wait(t, req.submit(t, wire.TaskSpec{Redundancy: 2}), 15*time.Second)
	if task.State != market.StateCompleted || task.Group == nil || len(task.Group.Children) != 2 {
		t.Fatalf("parent %s: %s (%+v)", task.State, task.Reason, task.Group)
	}
	seen := map[string]bool{}
	for _, c := range task.Group.Children {
		if c.State != market.StateCompleted || c.Judged != market.VerdictDone {
			t.Fatalf("child %+v", c)
		}
		seen[c.Provider] = true
	}
	if !seen[a.h.ID().String()] || !seen[b.h.ID().String()] {
		t.Fatalf("copies ran on %v, want both providers", seen)
	}
}

// TestCancelStopsTheRun: canceling a running task stops the provider's
// workload and leaves the task canceled.
func TestCancelStopsTheRun(t *testing.T) {
	s := newSwarm(t)
	p := s.provider(providerConfig(t, 1))
	stopped := make(chan error, 1)
	p.ex.setRun(func(ctx context.Context, _ executor.Spec) (*executor.Result, error) {
		<-ctx.Done()
		stopped <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	req := s.requestor(fastRequestor())
	s.connect()
	id := req.submit(t, wire.TaskSpec{})
	req.waitState(t, id, market.StateRunning, 10*time.Second)
	p.started(t, time.Second)
	if _, err := req.r.Cancel(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-stopped:
		if cause == nil || !strings.Contains(cause.Error(), "canceled by the requestor") {
			t.Fatalf("run stopped with %v", cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the provider's run was not stopped")
	}
	if task, _ := req.r.Get(id); task.State != market.StateCanceled {
		t.Fatalf("task %s", task.State)
	}
	// A canceled task stays canceled: a second cancel is refused.
	if _, err := req.r.Cancel(t.Context(), id); !errors.Is(err, market.ErrInvalidTransition) {
		t.Fatalf("second cancel: %v", err)
	}
}

// TestRequestorRestartResumes: the requestor stops while its task runs;
// the provider keeps the result in its outbox, and a requestor started
// again on the same store takes it and completes the task.
func TestRequestorRestartResumes(t *testing.T) {
	s := newSwarm(t)
	p := s.provider(providerConfig(t, 1))
	release := make(chan struct{})
	p.ex.setRun(func(ctx context.Context, _ executor.Spec) (*executor.Result, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &executor.Result{Stdout: []byte("after restart")}, nil
	})
	cfg := fastRequestor()
	cfg.HeartbeatTimeout = 5 * time.Second // the restart must not look like a lost provider
	req := s.requestor(cfg)
	s.connect()
	id := req.submit(t, wire.TaskSpec{})
	req.waitState(t, id, market.StateRunning, 10*time.Second)
	p.started(t, time.Second)

	req.stop()
	close(release) // the result is made while no requestor listens
	waitFor(t, 5*time.Second, "the result in the provider's outbox", func() bool {
		recs, _ := p.store.List()
		return len(recs) == 1 && recs[0].State == market.ExecDone
	})
	req.start()
	task := req.wait(t, id, 15*time.Second)
	if task.State != market.StateCompleted || string(task.Result.Stdout) != "after restart" {
		t.Fatalf("task %s: %s", task.State, task.Reason)
	}
	waitFor(t, 5*time.Second, "the outbox entry delivered", func() bool {
		recs, _ := p.store.List()
		return len(recs) == 1 && recs[0].State == market.ExecDelivered
	})
}

// TestProviderRestartReportsInterrupted: a provider restarted while it
// ran a task reports the run failed and retryable from its stored record,
// so the requestor moves on at once instead of waiting for a timeout.
func TestProviderRestartReportsInterrupted(t *testing.T) {
	s := newSwarm(t)
	cfg := providerConfig(t, 1)
	p := s.provider(cfg)
	p.ex.setRun(blockUntilCanceled)
	other := s.provider(providerConfig(t, 2))
	rcfg := fastRequestor()
	rcfg.HeartbeatTimeout = 10 * time.Second // only the provider's report may move the task
	req := s.requestor(rcfg)
	s.connect()
	id := req.submit(t, wire.TaskSpec{})
	req.waitState(t, id, market.StateRunning, 10*time.Second)
	p.started(t, time.Second)

	// Stop the provider and make its record look as a crash leaves it
	// (Close stored a result; a crash stores none).
	_ = p.p.Close()
	recs, _ := p.store.List()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	p.store.mu.Lock()
	p.store.recs[recs[0].Key] = mustJSON(t, func() *market.ExecRecord {
		r := recs[0]
		r.State, r.Report = market.ExecRunning, nil
		return r
	}())
	p.store.mu.Unlock()

	restarted, err := market.NewProvider(p.h, p.store, p.topic, []executor.Executor{p.ex}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restarted.Close() })
	task := req.wait(t, id, 10*time.Second)
	if task.State != market.StateCompleted || task.Provider != other.h.ID().String() {
		t.Fatalf("task %s on %s: %s", task.State, task.Provider, task.Reason)
	}
	if e := execOf(task)[p.h.ID()]; len(e) != 1 || e[0].Result == nil || !strings.Contains(e[0].Result.Error, "restarted") {
		t.Fatalf("interrupted attempt: %+v", e)
	}
}

// TestSilentProvidersAreNotWaitedFor: a peer on the task topic that never
// answers (a Sybil, or a provider gone without a word) holds the first
// auctions open for their whole bid window, and after maxSilentAuctions of
// them no longer: the next auction closes as soon as the providers that do
// answer have. A peer never heard from that appears later is waited for
// only a short grace once the providers heard from have answered.
func TestSilentProvidersAreNotWaitedFor(t *testing.T) {
	s := newSwarm(t)
	s.provider(providerConfig(t, 1))
	silent := s.newPeer()
	if _, err := silent.topic.Subscribe(); err != nil {
		t.Fatal(err)
	}
	silent.provider = true
	s.providers++
	cfg := fastRequestor()
	const window = 3 * time.Second
	cfg.BidWindow = window
	req := s.requestor(cfg)
	s.connect()
	var took []time.Duration
	for range 3 {
		start := time.Now()
		id := req.submit(t, wire.TaskSpec{})
		if task := req.wait(t, id, 20*time.Second); task.State != market.StateCompleted {
			t.Fatalf("task %s: %s", task.State, task.Reason)
		}
		took = append(took, time.Since(start))
	}
	// The first task's auctions wait for the silent peer (its first
	// auction may also go unanswered by the provider while gossip meshes
	// form, and be announced again); by the third task it was silent in
	// maxSilentAuctions auctions and is waited for no more.
	if took[0] < window {
		t.Fatalf("the first auction did not wait for the silent peer: %v", took)
	}
	if took[2] >= window {
		t.Fatalf("the third task still waited for a peer silent in %d auctions: %v", 2, took)
	}
	// A peer never heard from that joins later (a fresh identity that only
	// advertises) costs an auction the newcomers' grace, not its window.
	fresh := s.newPeer()
	if _, err := fresh.topic.Subscribe(); err != nil {
		t.Fatal(err)
	}
	fresh.provider = true
	s.providers++
	s.connect()
	start := time.Now()
	id := req.submit(t, wire.TaskSpec{})
	if task := req.wait(t, id, 20*time.Second); task.State != market.StateCompleted {
		t.Fatalf("task %s: %s", task.State, task.Reason)
	}
	if d := time.Since(start); d >= window {
		t.Fatalf("a task waited %s for a peer never heard from", d)
	}
}
