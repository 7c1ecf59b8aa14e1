package market

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/oklog/ulid/v2"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

// Requestor defaults, used when RequestorConfig leaves a field at zero.
const (
	// DefaultBidWindow caps how long bids are collected; the window closes
	// earlier as soon as every known provider answered.
	DefaultBidWindow = 2 * time.Second
	// DefaultProviderWait is how long an auction waits for a first provider
	// to appear on the task topic when none is known.
	DefaultProviderWait = 10 * time.Second
	// DefaultResultGrace is added to a task's timeout to bound how long the
	// requestor waits for a result (image transfer and loading do not count
	// against the task's timeout).
	DefaultResultGrace = 2 * time.Minute
	// DefaultTaskTimeout applies when a spec has none.
	DefaultTaskTimeout = 10 * time.Minute
	// DefaultRetries is the retry budget of a spec that says nothing.
	DefaultRetries = 2
	// DefaultHeartbeatTimeout is how long a provider holding a task may stay
	// silent before the task moves on to another provider.
	DefaultHeartbeatTimeout = 8 * time.Second
	// DefaultQueueTimeout bounds how long a task may wait for a provider
	// with free capacity before it fails.
	DefaultQueueTimeout = 30 * time.Minute
)

// RequestorConfig tunes a Requestor.
type RequestorConfig struct {
	BidWindow    time.Duration
	ProviderWait time.Duration
	ResultGrace  time.Duration
	// HeartbeatTimeout: see DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// Ledger keeps countersigned receipts of what this node spent.
	Ledger LedgerStore
	// VerifyRunner runs subtask verify steps on this node's executors.
	VerifyRunner VerifyRunner
	// WorkDir holds temporary files of verify steps (default os.TempDir).
	WorkDir string
	// Content fetches outputs; nil leaves outputs on the provider.
	Content ContentStore
	Logger  *slog.Logger
	// KnownProviders, when set, returns the providers known to match req
	// (Pool.KnownProviders): the auction expects bids from those, so the
	// bid window closes as soon as they all answered. When it returns none,
	// every peer on the task topic is expected instead.
	KnownProviders func(req wire.Requirements) []peer.ID
	// Observer counts bids, awards, failovers and ended tasks (nil: none).
	Observer Observer
	// Volumes is the requestor's volume table (volume.go); nil: volumes
	// start empty every time and their results are not kept.
	Volumes VolumeStore
}

// Requestor runs the requestor side of the market: it announces tasks,
// collects bids, awards, and records results. Every state transition is
// persisted in the TaskStore before it is acted on; Start resumes tasks that
// were in flight when the node stopped.
type Requestor struct {
	h     *p2p.Host
	store TaskStore
	cfg   RequestorConfig
	log   *slog.Logger
	topic *pubsub.Topic

	mu       sync.Mutex
	auctions map[string]*auction // by task id
	watchers map[string]map[*watcher]struct{}
	drivers  map[string]bool
	rep      *repBook
	limit    *peerLimiter // bids and reports per provider
	// capWaiters are tasks waiting for a provider's capacity, oldest first.
	capWaiters []chan struct{}
	// verifyFns are the embedding program's piece verifications.
	verifyFns map[string]VerifyFunc
	peersCh   chan struct{} // closed and replaced when topic peers change
	// lastBeat is when the provider holding a task was last heard from
	// (kept in memory: after a restart every provider gets a fresh grace).
	lastBeat map[string]time.Time
	all      allWatchers // WatchAll's feeds (watch.go)
	volMu    sync.Mutex  // serializes volume table swaps (volume.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type auction struct {
	attempt int
	bids    chan bidFrom
}

type bidFrom struct {
	from peer.ID
	bid  wire.Bid
	at   time.Time
}

type watcher struct{ ch chan *Task }

// NewRequestor joins the task topic and registers the bid and report
// protocols on h. Call Start to resume stored tasks.
func NewRequestor(h *p2p.Host, store TaskStore, topic *pubsub.Topic, cfg RequestorConfig) (*Requestor, error) {
	if cfg.BidWindow <= 0 {
		cfg.BidWindow = DefaultBidWindow
	}
	if cfg.ProviderWait <= 0 {
		cfg.ProviderWait = DefaultProviderWait
	}
	if cfg.ResultGrace <= 0 {
		cfg.ResultGrace = DefaultResultGrace
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Requestor{
		h: h, store: store, cfg: cfg, log: cfg.Logger.With("role", "requestor"), topic: topic,
		auctions: map[string]*auction{}, watchers: map[string]map[*watcher]struct{}{},
		drivers: map[string]bool{}, rep: newRepBook(nil), limit: newPeerLimiter(streamRate, streamBurst), verifyFns: map[string]VerifyFunc{}, peersCh: make(chan struct{}), lastBeat: map[string]time.Time{},
		ctx: ctx, cancel: cancel,
	}
	evts, err := topic.EventHandler()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("requestor: topic events: %w", err)
	}
	r.wg.Add(1)
	go r.watchTopicPeers(evts)
	h.SetStreamHandler(wire.ProtoBid, r.handleBid)
	h.SetStreamHandler(wire.ProtoReport, r.handleReport)
	return r, nil
}

// Start resumes every stored task that is not terminal.
func (r *Requestor) Start() error {
	tasks, err := r.store.List()
	if err != nil {
		return fmt.Errorf("requestor: list tasks: %w", err)
	}
	r.rep = newRepBook(tasks)
	for _, t := range tasks {
		if !t.State.IsTerminal() {
			r.log.Info("resuming task", "task", t.ID, "state", t.State)
			r.startDriver(t.ID)
		}
	}
	return nil
}

// Close stops every driver; tasks stay stored in their current state and
// resume on the next Start.
func (r *Requestor) Close() error {
	r.h.RemoveStreamHandler(wire.ProtoBid)
	r.h.RemoveStreamHandler(wire.ProtoReport)
	r.cancel()
	r.wg.Wait()
	return nil
}

// Submit validates and stores a new task, then starts working on it. It
// returns as soon as the task is stored.
func (r *Requestor) Submit(ctx context.Context, spec wire.TaskSpec) (*Task, error) {
	return r.SubmitVerified(ctx, spec, nil)
}

// SubmitVerified is Submit with a Go callback that accepts or rejects each
// piece of a subtask group (see VerifyFunc); fn may be nil.
func (r *Requestor) SubmitVerified(ctx context.Context, spec wire.TaskSpec, fn VerifyFunc) (*Task, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.TimeoutMS == 0 {
		spec.TimeoutMS = DefaultTaskTimeout.Milliseconds()
	}
	now := time.Now().UTC()
	t := &Task{
		ID: strings.ToLower(ulid.Make().String()), State: StatePending, Spec: spec,
		CreatedAt: now, UpdatedAt: now, Reason: "waiting to be announced", Revision: 1,
	}
	if isGroup(spec) {
		t.Group = newGroup(spec)
	}
	if err := r.store.Create(t.ID, t); err != nil {
		return nil, fmt.Errorf("store task: %w", err)
	}
	if fn != nil {
		r.SetVerifyFunc(t.ID, fn)
	}
	r.notify(t)
	r.startDriver(t.ID)
	return t, nil
}

// Get returns a task by id.
func (r *Requestor) Get(id string) (*Task, error) {
	t, err := r.store.Get(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	}
	return t, nil
}

// List returns every stored task, newest first.
func (r *Requestor) List() ([]*Task, error) {
	ts, err := r.store.List()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ts, func(a, b *Task) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return ts, nil
}

// Watch returns a channel that receives the task's latest snapshot after
// every change (intermediate snapshots may be skipped, never the last), and
// a function to stop watching. The current snapshot is delivered first.
func (r *Requestor) Watch(id string) (<-chan *Task, func(), error) {
	w := &watcher{ch: make(chan *Task, 1)}
	r.mu.Lock()
	if r.watchers[id] == nil {
		r.watchers[id] = map[*watcher]struct{}{}
	}
	r.watchers[id][w] = struct{}{}
	r.mu.Unlock()
	stop := func() {
		r.mu.Lock()
		delete(r.watchers[id], w)
		if len(r.watchers[id]) == 0 {
			delete(r.watchers, id)
		}
		r.mu.Unlock()
	}
	t, err := r.Get(id)
	if err != nil {
		stop()
		return nil, nil, err
	}
	offer(w.ch, t)
	return w.ch, stop, nil
}

// Wait blocks until the task is terminal or ctx is done.
func (r *Requestor) Wait(ctx context.Context, id string) (*Task, error) {
	ch, stop, err := r.Watch(id)
	if err != nil {
		return nil, err
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case t := <-ch:
			if t.State.IsTerminal() {
				return t, nil
			}
		}
	}
}

// Cancel marks a task canceled and asks its provider to stop it.
func (r *Requestor) Cancel(ctx context.Context, id string) (*Task, error) {
	var provider string
	var attempt int
	t, err := r.update(id, transition(StateCanceled, nil, func(t *Task) {
		provider, attempt = t.Provider, t.Attempt
		t.Reason = "canceled by the requestor"
	}))
	if err != nil {
		return nil, err
	}
	r.cancelChildren(t)
	if provider != "" {
		if pid, err := peer.Decode(provider); err == nil {
			var ack wire.Ack
			if err := p2p.Request(ctx, r.h, pid, wire.ProtoCancel, &wire.Cancel{TaskID: id, Attempt: attempt}, wire.MaxAckSize, &ack); err != nil {
				r.log.Warn("cancel not delivered to provider", "task", id, "peer", provider, "err", err)
			}
		}
	}
	return t, nil
}

// offer replaces whatever is pending in a one-slot channel with v.
func offer(ch chan *Task, v *Task) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

func (r *Requestor) notify(t *Task) {
	r.all.publish(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.watchers[t.ID] {
		offer(w.ch, t)
	}
	if t.Parent != "" {
		for w := range r.watchers["parent:"+t.Parent] {
			offer(w.ch, t)
		}
	}
}

// update persists a mutation and notifies watchers. Executions that the
// mutation finished feed the providers' reputations.
func (r *Requestor) update(id string, fn func(*Task) error) (*Task, error) {
	var before map[string]string
	t, err := r.store.Update(id, func(t *Task) error {
		before = map[string]string{}
		for _, e := range t.Executions {
			before[fmt.Sprint(e.Provider, "/", e.Attempt)] = e.State
		}
		return fn(t)
	})
	if err != nil {
		return nil, err
	}
	for _, e := range t.Executions {
		if prev := before[fmt.Sprint(e.Provider, "/", e.Attempt)]; prev != e.State && (e.State == wire.ExecCompleted || e.State == wire.ExecFailed) {
			r.rep.record(e)
		}
	}
	observeUpdate(r.cfg.Observer, t)
	r.notify(t)
	return t, nil
}

// Reputations returns what this requestor learned of each provider.
func (r *Requestor) Reputations() map[string]Reputation { return r.rep.snapshot() }

func (r *Requestor) startDriver(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drivers[id] || r.ctx.Err() != nil {
		return
	}
	r.drivers[id] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.drivers, id)
			r.mu.Unlock()
		}()
		r.drive(id)
	}()
}

// drive moves one task through its states until it is terminal or the
// requestor closes.
func (r *Requestor) drive(id string) {
	for r.ctx.Err() == nil {
		t, err := r.store.Get(id)
		if err != nil {
			r.log.Error("load task", "task", id, "err", err)
			return
		}
		if t.Group != nil {
			if err := r.driveGroup(t); err != nil && r.ctx.Err() == nil {
				r.log.Error("group driver", "task", id, "err", err)
				if _, ferr := r.update(id, transition(StateFailed, nil, func(t *Task) {
					t.Reason = "internal error: " + err.Error()
				})); ferr != nil && !errors.Is(ferr, ErrInvalidTransition) {
					r.log.Error("mark task failed", "task", id, "err", ferr)
				}
			}
			return
		}
		switch t.State {
		case StatePending, StateBidding:
			if t, err = r.beforeAuction(t); err == nil && r.ctx.Err() == nil { // schedule.go
				err = r.runAuction(t)
			}
		case StateAwarded, StateRunning:
			if t.Result != nil {
				err = r.fetchOutputs(t)
			} else {
				err = r.awaitResult(t)
			}
		default:
			return
		}
		if err != nil && r.ctx.Err() == nil {
			if errors.Is(err, ErrInvalidTransition) {
				continue // someone else (cancel, a report) moved it: look again
			}
			r.log.Error("task driver", "task", id, "err", err)
			if _, ferr := r.update(id, transition(StateFailed, nil, func(t *Task) {
				t.Reason = "internal error: " + err.Error()
			})); ferr != nil && !errors.Is(ferr, ErrInvalidTransition) {
				r.log.Error("mark task failed", "task", id, "err", ferr)
			}
			return
		}
	}
}

// failures counts the executions of a task that failed.
func failures(t *Task) int {
	n := 0
	for _, e := range t.Executions {
		if e.State == wire.ExecFailed {
			n++
		}
	}
	return n
}

// runAuction announces the task, collects bids and awards it. It returns
// with the task awarded, failed, or back to bidding for another attempt.
func (r *Requestor) runAuction(t *Task) error {
	if n := failures(t); n > t.Spec.Retries {
		_, err := r.update(t.ID, transition(StateFailed, nil, func(t *Task) {
			t.Reason = fmt.Sprintf("retry budget spent after %d failed executions: %s", n, t.Reason)
		}))
		return err
	}
	if time.Since(queuedSince(t)) > DefaultQueueTimeout {
		_, err := r.update(t.ID, transition(StateFailed, nil, func(t *Task) {
			t.Reason = fmt.Sprintf("not started within %s: %s", DefaultQueueTimeout, t.Reason)
		}))
		return err
	}
	attempt := t.Attempt + 1
	t, err := r.update(t.ID, transition(StateBidding, []State{StatePending, StateBidding}, func(t *Task) {
		t.Attempt = attempt
		t.Reason = "waiting for bids"
	}))
	if err != nil {
		return err
	}
	a := &auction{attempt: attempt, bids: make(chan bidFrom, 64)}
	r.mu.Lock()
	r.auctions[t.ID] = a
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.auctions[t.ID] == a {
			delete(r.auctions, t.ID)
		}
		r.mu.Unlock()
	}()

	excluded := failedProviders(t)
	expected, known := r.waitForProviders(t, excluded)
	if len(expected) == 0 {
		why := "no provider is reachable on the task topic"
		if len(r.h.Network().Peers()) == 0 {
			why += " (this node is connected to no peer: check --bootstrap, and in a private swarm that every node has the same swarm key)"
		}
		if t.Spec.Provider != "" {
			why = "provider " + t.Spec.Provider + " is not reachable on the task topic"
		}
		if known > 0 {
			why = fmt.Sprintf("all %d known providers failed or are excluded from this task (last: %s)", known, t.Reason)
		}
		_, err := r.update(t.ID, transition(StateFailed, nil, func(t *Task) { t.Reason = why }))
		return err
	}

	deadline := time.Now().Add(r.cfg.BidWindow)
	ann := wire.Announce{
		Version: wire.Version, TaskID: t.ID, Attempt: attempt, Requestor: r.h.ID().String(),
		Req: wire.RequirementsOf(t.Spec), BidDeadline: deadline.UnixMilli(),
	}
	data, err := json.Marshal(&ann)
	if err != nil {
		return fmt.Errorf("encode announce: %w", err)
	}
	if err := r.topic.Publish(r.ctx, data); err != nil {
		return fmt.Errorf("publish announce: %w", err)
	}
	r.log.Debug("announced", "task", t.ID, "attempt", attempt, "providers", len(expected))

	var got []bidFrom
	answered := map[peer.ID]bool{}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
collect:
	for len(answered) < len(expected) {
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-timer.C:
			break collect
		case b := <-a.bids:
			if answered[b.from] {
				continue
			}
			answered[b.from] = true
			got = append(got, b)
			if _, ok := expected[b.from]; !ok {
				expected[b.from] = struct{}{}
			}
		}
	}
	return r.award(t, attempt, len(expected), got, excluded)
}

// waitForProviders returns the providers the requestor knows on the task
// topic that may take this task, waiting up to ProviderWait for a first one
// to appear, and how many were known in all.
func (r *Requestor) waitForProviders(t *Task, excluded map[string]bool) (map[peer.ID]struct{}, int) {
	timeout := time.NewTimer(r.cfg.ProviderWait)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		changed := r.peersCh
		r.mu.Unlock()
		expected := map[peer.ID]struct{}{}
		all := r.expectedPeers(t)
		for _, p := range all {
			if excluded[p.String()] {
				continue
			}
			if t.Spec.Provider != "" && p.String() != t.Spec.Provider {
				continue
			}
			expected[p] = struct{}{}
		}
		if len(expected) > 0 || (len(all) > 0 && len(excluded) > 0 && t.Spec.Provider == "") {
			return expected, len(all)
		}
		select {
		case <-changed:
		case <-timeout.C:
			return nil, len(all)
		case <-r.ctx.Done():
			return nil, len(all)
		}
	}
}

// expectedPeers returns the pool's matching providers, or every peer on
// the task topic when the pool knows none.
func (r *Requestor) expectedPeers(t *Task) []peer.ID {
	if r.cfg.KnownProviders != nil {
		if known := r.cfg.KnownProviders(wire.RequirementsOf(t.Spec)); len(known) > 0 {
			return known
		}
	}
	return r.topic.ListPeers()
}

func (r *Requestor) watchTopicPeers(h *pubsub.TopicEventHandler) {
	defer r.wg.Done()
	defer h.Cancel()
	for {
		if _, err := h.NextPeerEvent(r.ctx); err != nil {
			return
		}
		r.mu.Lock()
		close(r.peersCh)
		r.peersCh = make(chan struct{})
		r.mu.Unlock()
	}
}

// failedProviders are skipped in later attempts of a task, together with
// the providers the spec excludes.
func failedProviders(t *Task) map[string]bool {
	out := map[string]bool{}
	for _, p := range t.Spec.Exclude {
		out[p] = true
	}
	for _, e := range t.Executions {
		if e.State == wire.ExecFailed {
			out[e.Provider] = true
		}
	}
	return out
}

// award records the bids of an attempt, picks the best acceptable one and
// sends it the award, falling back to the next bid on a decline.
func (r *Requestor) award(t *Task, attempt, known int, got []bidFrom, excluded map[string]bool) error {
	records := make([]BidRecord, 0, len(got))
	for _, b := range got {
		rec := BidRecord{
			Provider: b.from.String(), Attempt: attempt, Price: b.bid.Price, MaxCost: b.bid.MaxCost,
			StartMS: b.bid.StartMS, HasImage: b.bid.HasImage, InputsLocal: b.bid.InputsLocal, Decline: b.bid.Decline, Busy: b.bid.Busy,
			ReceivedAt: b.at,
		}
		switch {
		case rec.Decline != "":
			rec.Outcome = "declined: " + rec.Decline
		case excluded[rec.Provider]:
			rec.Outcome = "skipped: failed this task before"
		case t.Spec.MaxPrice > 0 && rec.Price > t.Spec.MaxPrice:
			rec.Outcome = fmt.Sprintf("over max price %g", t.Spec.MaxPrice)
		}
		records = append(records, rec)
	}
	order, why := rankBids(records, t.Spec.Strategy, r.rep.snapshot())
	summary := bidSummary(known, records, t.Spec.MaxPrice)
	t, err := r.update(t.ID, transition("", []State{StateBidding}, func(t *Task) {
		t.Bids = append(t.Bids, records...)
		t.Reason = summary
	}))
	if err != nil {
		return err
	}
	for _, i := range order {
		rec := records[i]
		pid, _ := peer.Decode(rec.Provider)
		now := time.Now().UTC()
		t, err = r.update(t.ID, transition(StateAwarded, []State{StateBidding}, func(t *Task) {
			t.Provider = rec.Provider
			t.Reason = fmt.Sprintf("awarded to %s: %s, of %d acceptable bids; preparing image and inputs", short(rec.Provider), why, len(order))
			t.Executions = append(t.Executions, Execution{Provider: rec.Provider, Attempt: attempt, State: "awarded", AwardedAt: now})
			setBidOutcome(t, rec.Provider, attempt, "won: "+why)
		}))
		if err != nil {
			return err
		}
		var reply wire.AwardReply
		err := p2p.Request(r.ctx, r.h, pid, wire.ProtoAward, &wire.Award{TaskID: t.ID, Attempt: attempt, Spec: t.Spec}, wire.MaxAckSize, &reply)
		if err == nil && reply.Accepted {
			observe(r.cfg.Observer).Awarded()
			r.log.Debug("awarded", "task", t.ID, "peer", pid)
			_, err := r.update(t.ID, transition("", nil, func(t *Task) {
				for _, j := range order {
					if o := records[j]; o.Provider != rec.Provider {
						setBidOutcome(t, o.Provider, attempt, fmt.Sprintf("lost to %s (%s)", short(rec.Provider), why))
					}
				}
			}))
			if errors.Is(err, ErrInvalidTransition) {
				err = nil // already finished: the outcome notes do not matter
			}
			var losers []string
			for _, j := range order {
				if o := records[j]; o.Provider != rec.Provider {
					losers = append(losers, o.Provider)
				}
			}
			r.releaseBids(t.ID, attempt, losers)
			return err
		}
		why := "declined the award: " + reply.Reason
		if err != nil {
			why = "award failed: " + err.Error()
		}
		r.log.Info("award not accepted", "task", t.ID, "peer", pid, "reason", why)
		// A provider that answers "no" (its capacity went to another task
		// in between) ran nothing: that costs no retry and does not exclude
		// it later. One that cannot be reached failed.
		state := ExecDeclined
		if err != nil {
			state = wire.ExecFailed
		}
		t, err = r.update(t.ID, transition(StateBidding, []State{StateAwarded}, func(t *Task) {
			t.Provider = ""
			if e := t.execution(rec.Provider, attempt); e != nil {
				e.State = state
				e.FinishedAt = time.Now().UTC()
			}
			setBidOutcome(t, rec.Provider, attempt, why)
			t.Reason = summary + "; " + short(rec.Provider) + " " + why
		}))
		if err != nil {
			return err
		}
	}
	busy := false
	for _, rec := range records {
		busy = busy || rec.Busy
	}
	awardFailed := len(order) > 0
	// Nobody answered at all (not even a decline): the providers we know of
	// may be restarting or cut off; that passes, so announce again.
	silent := len(records) == 0
	return r.noBids(t, summary, busy || awardFailed || silent)
}

// releaseBids tells providers whose bids lost that their reservations can
// go, in the background and best effort (they expire anyway).
func (r *Requestor) releaseBids(task string, attempt int, providers []string) {
	for _, p := range providers {
		pid, err := peer.Decode(p)
		if err != nil {
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			defer cancel()
			var ack wire.Ack
			_ = p2p.Request(ctx, r.h, pid, wire.ProtoCancel, &wire.Cancel{TaskID: task, Attempt: attempt}, wire.MaxAckSize, &ack)
		}()
	}
}

// noBids ends an attempt without an award. When the obstacle may pass (a
// provider was busy, an award raced with another task) the task is
// announced again after a short pause that ends early when a provider
// joins; otherwise it fails with the reason.
func (r *Requestor) noBids(t *Task, reason string, transient bool) error {
	if !transient {
		_, err := r.update(t.ID, transition(StateFailed, nil, func(t *Task) {
			t.Reason = "no provider took the task: " + reason
		}))
		return err
	}
	_, err := r.update(t.ID, transition(StateBidding, nil, func(t *Task) { t.Reason = "waiting for capacity: " + reason }))
	if err != nil {
		return err
	}
	// Wait for capacity: a slot freed by one of our own tasks finishing (the
	// oldest waiter is woken first), a provider joining, or a pause that
	// grows with the attempts.
	wake := make(chan struct{}, 1)
	r.mu.Lock()
	changed := r.peersCh
	r.capWaiters = append(r.capWaiters, wake)
	r.mu.Unlock()
	pause := min(time.Duration(t.Attempt)*500*time.Millisecond, 5*time.Second)
	timer := time.NewTimer(pause)
	defer timer.Stop()
	select {
	case <-changed:
	case <-wake:
	case <-timer.C:
	case <-r.ctx.Done():
	}
	r.mu.Lock()
	for i, w := range r.capWaiters {
		if w == wake {
			r.capWaiters = append(r.capWaiters[:i], r.capWaiters[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	return nil
}

// capacityFreed wakes the task that has waited longest for capacity: one
// of this requestor's tasks just released a slot on some provider.
func (r *Requestor) capacityFreed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.capWaiters) == 0 {
		return
	}
	w := r.capWaiters[0]
	r.capWaiters = r.capWaiters[1:]
	select {
	case w <- struct{}{}:
	default:
	}
}

func bidSummary(known int, records []BidRecord, maxPrice float64) string {
	bids, declines := 0, 0
	lowest := -1.0
	for _, rec := range records {
		if rec.Decline != "" {
			declines++
			continue
		}
		bids++
		if lowest < 0 || rec.Price < lowest {
			lowest = rec.Price
		}
	}
	s := fmt.Sprintf("%d providers known, %d bid, %d declined", known, bids, declines)
	if lowest >= 0 {
		s += fmt.Sprintf(", lowest price %g", lowest)
		if maxPrice > 0 {
			s += fmt.Sprintf(" (max %g)", maxPrice)
		}
	}
	var reasons []string
	for _, rec := range records {
		if rec.Decline != "" {
			reasons = append(reasons, short(rec.Provider)+": "+rec.Decline)
		}
	}
	if len(reasons) > 0 {
		s += " [" + strings.Join(reasons, "; ") + "]"
	}
	return s
}

func setBidOutcome(t *Task, provider string, attempt int, outcome string) {
	for i := range t.Bids {
		if t.Bids[i].Provider == provider && t.Bids[i].Attempt == attempt {
			t.Bids[i].Outcome = outcome
		}
	}
}

func short(p string) string {
	if len(p) > 12 {
		return p[len(p)-8:]
	}
	return p
}

// awaitResult waits for the awarded provider's result, up to the task's
// timeout plus a grace period counted from the award.
func (r *Requestor) awaitResult(t *Task) error {
	ch, stop, err := r.Watch(t.ID)
	if err != nil {
		return err
	}
	defer stop()
	e := t.execution(t.Provider, t.Attempt)
	awardedAt := t.UpdatedAt
	if e != nil {
		awardedAt = e.AwardedAt
	}
	timeout := t.Spec.Timeout()
	if timeout <= 0 {
		timeout = DefaultTaskTimeout
	}
	deadline := time.NewTimer(time.Until(awardedAt.Add(timeout + r.cfg.ResultGrace)))
	defer deadline.Stop()
	attempt := t.Attempt
	r.beat(t.ID)
	defer func() {
		r.mu.Lock()
		delete(r.lastBeat, t.ID)
		r.mu.Unlock()
	}()
	alive := time.NewTicker(r.cfg.HeartbeatTimeout / 4)
	defer alive.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return nil
		case <-alive.C:
			r.mu.Lock()
			silent := time.Since(r.lastBeat[t.ID])
			r.mu.Unlock()
			limit := r.cfg.HeartbeatTimeout
			if pid, err := peer.Decode(t.Provider); err == nil && r.h.Network().Connectedness(pid) != network.Connected {
				limit /= 2 // no connection either: it is most likely gone
			}
			if silent < limit {
				continue
			}
			provider := t.Provider
			why := fmt.Sprintf("%s went silent (no heartbeat for %s)", short(provider), silent.Round(time.Second))
			r.log.Info("provider lost", "task", t.ID, "peer", provider, "silent", silent)
			_, err := r.update(t.ID, transition(StateBidding, []State{StateAwarded, StateRunning}, func(t *Task) {
				if e := t.execution(provider, attempt); e != nil {
					e.State = wire.ExecFailed
					e.FinishedAt = time.Now().UTC()
				}
				t.Provider = ""
				t.Reason = why + "; trying another provider"
			}))
			observeFailover(r.cfg.Observer, err == nil)
			return err
		case cur := <-ch:
			if cur.State.IsTerminal() || cur.Attempt != attempt || cur.State == StateBidding || cur.Result != nil {
				return nil
			}
		case <-deadline.C:
			provider := t.Provider
			why := fmt.Sprintf("no result from %s within %s of the award", short(provider), timeout+r.cfg.ResultGrace)
			_, err := r.update(t.ID, transition(StateBidding, []State{StateAwarded, StateRunning}, func(t *Task) {
				if e := t.execution(provider, attempt); e != nil {
					e.State = wire.ExecFailed
					e.FinishedAt = time.Now().UTC()
				}
				t.Provider = ""
				t.Reason = why
			}))
			observeFailover(r.cfg.Observer, err == nil)
			return err
		}
	}
}

// countersign signs an accepted result's receipt, keeps it in the ledger
// and returns the ack carrying the countersignature.
func (r *Requestor) countersign(rep *wire.Report, rc *wire.Receipt) wire.Ack {
	sr := *rep.Result.Receipt
	if err := sr.Countersign(r.h.Peerstore().PrivKey(r.h.ID())); err != nil {
		r.log.Error("countersign", "task", rep.TaskID, "err", err)
		return wire.Ack{OK: true}
	}
	if r.cfg.Ledger != nil {
		e := &LedgerEntry{Key: fmt.Sprintf("%s/%d/spent", rep.TaskID, rep.Attempt), TaskID: rep.TaskID, Attempt: rep.Attempt,
			Peer: rc.Provider, Role: RoleSpent, Amount: rc.Cost, At: time.Now().UTC(), Receipt: &sr}
		if err := r.cfg.Ledger.Put(e.Key, e); err != nil {
			r.log.Error("record spent", "task", rep.TaskID, "err", err)
		}
	}
	return wire.Ack{OK: true, Countersig: sr.RequestorSig}
}

// beat records that the provider holding task id was heard from.
func (r *Requestor) beat(id string) {
	r.mu.Lock()
	r.lastBeat[id] = time.Now()
	r.mu.Unlock()
}

// outputFetchTries bounds how often fetching a task's outputs is tried.
const outputFetchTries = 3

// fetchOutputs pulls a finished task's outputs from the provider that made
// them (it is already a connected peer: no DHT search first), pins them and
// completes the task.
func (r *Requestor) fetchOutputs(t *Task) error {
	provider, _ := peer.Decode(t.Provider)
	c := t.Result.Outputs
	var err error
	for try := 1; try <= outputFetchTries; try++ {
		err = r.fetchResultContent(t, provider) // outputs and volumes (volume.go)
		if err == nil {
			_, err := r.update(t.ID, transition(StateCompleted, nil, func(t *Task) { t.Reason = "" }))
			return err
		}
		if r.ctx.Err() != nil {
			return nil
		}
		r.log.Warn("fetch outputs", "task", t.ID, "cid", c, "try", try, "err", err)
		select {
		case <-r.ctx.Done():
			return nil
		case <-time.After(time.Duration(try) * time.Second):
		}
	}
	_, err = r.update(t.ID, transition(StateFailed, nil, func(t *Task) {
		t.Reason = fmt.Sprintf("outputs %s could not be fetched from %s: %v", c, short(t.Provider), err)
	}))
	return err
}

// handleBid receives one bid (or decline) from a provider.
func (r *Requestor) handleBid(s network.Stream) {
	defer s.Close()
	from, body, ok := openRequest(s, r.limit, 10*time.Second, wire.MaxBidSize, r.log, "bid")
	if !ok {
		return
	}
	bid, err := wire.Decode[wire.Bid](body)
	if err != nil {
		r.log.Debug("bad bid", "peer", from, "err", err)
		_ = p2p.WriteMsg(s, &wire.BidAck{Reason: err.Error()})
		return
	}
	r.mu.Lock()
	a := r.auctions[bid.TaskID]
	r.mu.Unlock()
	if a == nil || a.attempt != bid.Attempt {
		_ = p2p.WriteMsg(s, &wire.BidAck{Reason: "auction closed"})
		return
	}
	select {
	case a.bids <- bidFrom{from: from, bid: *bid, at: time.Now().UTC()}:
		observe(r.cfg.Observer).BidReceived()
		_ = p2p.WriteMsg(s, &wire.BidAck{OK: true})
	default:
		_ = p2p.WriteMsg(s, &wire.BidAck{Reason: "too many bids"})
	}
}

// handleReport receives a status change or a result from a provider.
func (r *Requestor) handleReport(s network.Stream) {
	defer s.Close()
	from, body, ok := openRequest(s, r.limit, 30*time.Second, wire.MaxReportSize, r.log, "report")
	if !ok {
		return
	}
	rep, err := wire.Decode[wire.Report](body)
	if err != nil {
		r.log.Debug("bad report", "peer", from, "err", err)
		_ = p2p.WriteMsg(s, &wire.Ack{Reason: err.Error()})
		return
	}
	ack := r.applyReport(from, rep)
	_ = p2p.WriteMsg(s, &ack)
}

// applyReport persists a report, then acknowledges it. A report from a peer
// that was never awarded the task is refused. A result of an earlier
// attempt is still taken while the task is not terminal: work is not thrown
// away.
func (r *Requestor) applyReport(from peer.ID, rep *wire.Report) wire.Ack {
	t, err := r.store.Get(rep.TaskID)
	if err != nil {
		return wire.Ack{Reason: "unknown task"}
	}
	if t.execution(from.String(), rep.Attempt) == nil {
		r.log.Debug("report from a peer not awarded", "task", rep.TaskID, "peer", from)
		return wire.Ack{Reason: "not awarded to you"}
	}
	if t.State.IsTerminal() {
		if rep.State == wire.ExecHeartbeat {
			return wire.Ack{Reason: "task already " + string(t.State)}
		}
		// Already settled (canceled, or completed by another attempt):
		// acknowledge so the provider can clear its outbox.
		return wire.Ack{OK: true, Reason: "task already " + string(t.State)}
	}
	provider, attempt := from.String(), rep.Attempt
	if provider == t.Provider && attempt == t.Attempt {
		r.beat(t.ID)
	}
	switch rep.State {
	case wire.ExecHeartbeat:
		if provider != t.Provider || attempt != t.Attempt {
			return wire.Ack{Reason: "no longer yours"}
		}
	case wire.ExecRunning:
		_, err = r.update(t.ID, transition(StateRunning, []State{StateAwarded}, func(t *Task) {
			if e := t.execution(provider, attempt); e != nil {
				e.State = wire.ExecRunning
			}
			t.Reason = "running on " + short(provider)
		}))
		if errors.Is(err, ErrInvalidTransition) {
			err = nil // a late running report after the result: fine
		}
	case wire.ExecCompleted, wire.ExecFailed:
		rc, rerr := checkReceipt(rep, from, r.h.ID())
		if rerr != nil {
			r.log.Warn("result refused", "task", t.ID, "peer", from, "err", rerr)
			return wire.Ack{Reason: "invalid receipt: " + rerr.Error()}
		}
		// Keep the countersigned receipt before the task is seen as
		// finished: whoever watches the task finds the ledger up to date.
		ack := r.countersign(rep, rc)
		res := rep.Result
		retry := rep.State == wire.ExecFailed && res.Retryable && failures(t)+1 <= t.Spec.Retries
		_, err = r.update(t.ID, func(t *Task) error {
			if e := t.execution(provider, attempt); e != nil {
				e.State = rep.State
				e.Result = res
				e.FinishedAt = time.Now().UTC()
			}
			switch {
			case rep.State == wire.ExecCompleted && res.ExitCode == 0 && (res.Outputs != "" || len(res.Volumes) > 0) && r.cfg.Content != nil:
				// Record the result now (the provider may clear its
				// outbox), then fetch the outputs before completing.
				t.Provider, t.Result = provider, res
				t.Reason = "fetching outputs " + res.Outputs + " from " + short(provider)
				return transition(StateRunning, nil, nil)(t)
			case rep.State == wire.ExecCompleted && res.ExitCode == 0:
				t.Provider, t.Result = provider, res
				t.Reason = ""
				return transition(StateCompleted, nil, nil)(t)
			case retry:
				if attempt != t.Attempt {
					return transition("", nil, nil)(t) // stale failure: keep waiting for the current attempt
				}
				t.Provider = ""
				t.Reason = fmt.Sprintf("%s failed (%s); trying another provider", short(provider), res.Error)
				return transition(StateBidding, nil, nil)(t)
			default:
				t.Provider, t.Result = provider, res
				if res.Error != "" {
					t.Reason = res.Error
				} else {
					t.Reason = fmt.Sprintf("exit code %d", res.ExitCode)
				}
				return transition(StateFailed, nil, nil)(t)
			}
		})
		observeFailover(r.cfg.Observer, err == nil && retry && attempt == t.Attempt)
		if err == nil {
			r.capacityFreed()
			// A driver waiting on an older attempt has returned; make sure
			// one runs to re-announce after a retryable failure.
			r.startDriver(t.ID)
			return ack
		}
	}
	if err != nil {
		r.log.Error("apply report", "task", rep.TaskID, "err", err)
		return wire.Ack{Reason: "could not record report"}
	}
	return wire.Ack{OK: true}
}
