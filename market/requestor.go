package market

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/oklog/ulid/v2"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
	"github.com/offload-project/offload/storage"
)

// Requestor defaults, used when RequestorConfig leaves a field at zero.
const (
	// DefaultBidWindow caps how long bids are collected: each wave of asks
	// of a targeted auction, or a gossiped announcement's window; either
	// closes earlier as soon as every provider asked (or, for gossip,
	// every provider on the topic) answered.
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
	// DefaultRetries is wire.DefaultRetries, the retry budget of a spec
	// that does not say.
	DefaultRetries = wire.DefaultRetries
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
	// Candidates, when set, returns what the pool knows of the providers
	// that match req (their adverts): the auction asks a few of them
	// directly (targeted.go) rather than announcing to all. When it
	// returns none, the task is announced on the topic and every peer
	// there is expected to answer.
	Candidates func(req wire.Requirements) []Candidate
	// Discover, when set, looks for more providers matching req until
	// want of them are known or ctx ends (Pool.Lookup); it is called in
	// the background when Candidates returns fewer than Fanout.
	Discover func(ctx context.Context, req wire.Requirements, want int) int
	// Fanout is how many candidates an auction asks first (default
	// DefaultFanout); it asks more only when those decline or are silent.
	Fanout int
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
	h     host.Host
	store TaskStore
	cfg   RequestorConfig
	log   *slog.Logger
	topic *pubsub.Topic

	mu       sync.Mutex
	auctions map[string]*auction // by task id
	watchers map[string]map[*watcher]struct{}
	// drivers holds, for each task a driver works on, the task as last
	// written: the driver's turns, Watch, Get and the reports of its
	// provider read it there rather than decoding the stored record
	// again. See driven.
	drivers map[string]*driven
	rep     *repBook
	limit   *stream.Limiter // bids and reports per provider
	// capWaiters are tasks waiting for a provider's capacity, oldest first.
	capWaiters []chan struct{}
	// verifyFns are the embedding program's piece verifications.
	verifyFns map[string]VerifyFunc
	peersCh   chan struct{} // closed and replaced when topic peers change
	// lastBeat is when the provider holding a task was last heard from
	// (kept in memory: after a restart every provider gets a fresh grace).
	lastBeat map[string]time.Time
	// shares end the content shares made for each task's providers (task
	// id → provider → release); see share.go.
	shares map[string]map[string]func()
	// silent counts, per known provider, the auctions in a row it left
	// unanswered (see dropSilent); heard holds the providers that ever
	// answered one (see runAuction). Both at most maxSilentBook entries.
	silent map[peer.ID]int
	heard  map[peer.ID]bool
	// views refine the pool's adverts with what this requestor saw of
	// each provider (by peer id), holders the providers that said they
	// hold an image (by image); looking and lookedAt pace lookupMore. See
	// targeted.go.
	// cpFetching marks the tasks whose checkpoint is being fetched
	// (checkpoint.go).
	cpFetching map[string]bool
	views      map[peer.ID]*provView
	holders    map[string]map[peer.ID]bool
	looking    bool
	lookedAt   time.Time
	all        allWatchers // WatchAll's feeds (watch.go)
	volMu      sync.Mutex  // serializes volume table swaps (volume.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type auction struct {
	attempt int
	bids    chan bidFrom
	// pinned is the only provider that may bid ("" for any), excluded
	// those that may not; seen the providers that bid (guarded by
	// Requestor.mu, at most maxBidsPerAuction).
	pinned   string
	excluded map[string]bool
	seen     map[peer.ID]bool
	// image is the task's image, for noteAnswer.
	image string
	// verdicts are the ask streams of taken bids waiting for the outcome
	// (targeted.go: verdict), by provider (guarded by Requestor.mu).
	verdicts map[peer.ID]chan *wire.BidAck
}

type bidFrom struct {
	from peer.ID
	bid  wire.Bid
	at   time.Time
}

type watcher struct{ ch chan *Task }

// NewRequestor joins the task topic and registers the bid and report
// protocols on h. Call Start to resume stored tasks.
func NewRequestor(h host.Host, store TaskStore, topic *pubsub.Topic, cfg RequestorConfig) (*Requestor, error) {
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
	if cfg.Fanout <= 0 {
		cfg.Fanout = DefaultFanout
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Requestor{
		h: h, store: store, cfg: cfg, log: cfg.Logger.With("role", "requestor"), topic: topic,
		auctions: map[string]*auction{}, watchers: map[string]map[*watcher]struct{}{},
		drivers: map[string]*driven{}, rep: newRepBook(nil), limit: stream.NewLimiter(streamRate, streamBurst), verifyFns: map[string]VerifyFunc{}, peersCh: make(chan struct{}), lastBeat: map[string]time.Time{}, shares: map[string]map[string]func(){}, silent: map[peer.ID]int{}, heard: map[peer.ID]bool{},
		views: map[peer.ID]*provView{}, holders: map[string]map[peer.ID]bool{}, cpFetching: map[string]bool{},
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
			if t.Provider != "" && (t.State == StateAwarded || t.State == StateRunning) {
				r.share(t, t.Provider) // it may still be fetching
			}
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
	// Content held here is declared at its size, which bounds what each
	// provider fetches (declared.go).
	if err := r.declareSizes(ctx, &spec); err != nil {
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
		var targets []string
		if spec.Each {
			var err error
			if targets, err = r.eachTargets(ctx, spec); err != nil {
				return nil, err
			}
		}
		t.Group = newGroup(spec, targets)
	}
	if err := r.store.Create(t.ID, t); err != nil {
		return nil, fmt.Errorf("store task: %w", err)
	}
	if fn != nil {
		r.SetVerifyFunc(t.ID, fn)
	}
	// The driver starts first, so that notify hands it the task (its
	// first turn reads no record).
	r.startDriver(t.ID)
	r.notify(t)
	return t, nil
}

// Get returns a task by id. The task may be shared with other readers:
// the caller must not modify it.
func (r *Requestor) Get(id string) (*Task, error) {
	t, err := r.load(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	}
	return t, nil
}

// driven is the snapshot of a task that one driver holds, from its start
// to its end: nil until the task is first read or written. Every write of
// the task (update, Submit) puts its result here through notify, and a
// read of the store begun while this driver ran puts what it read; the
// higher revision wins, so the snapshot is never older than the last
// write. A read begun under an earlier driver puts nothing: a write made
// between the two drivers was never held, and that read may predate it.
// Snapshots are shared with every reader: nobody modifies one.
type driven struct{ t *Task }

// load returns task id as last written: the snapshot its driver holds,
// else the stored record (reload). The task may be shared: never modify
// it.
func (r *Requestor) load(id string) (*Task, error) {
	r.mu.Lock()
	var t *Task
	if d := r.drivers[id]; d != nil {
		t = d.t
	}
	r.mu.Unlock()
	if t != nil {
		return t, nil
	}
	return r.reload(id)
}

// reload reads task id from the store and gives it to the task's driver
// (see driven). It returns the newer of what it read and what the driver
// holds.
func (r *Requestor) reload(id string) (*Task, error) {
	r.mu.Lock()
	d := r.drivers[id]
	r.mu.Unlock()
	t, err := r.store.Get(id)
	if err != nil {
		return nil, err
	}
	if d != nil {
		r.mu.Lock()
		if r.drivers[id] == d {
			d.hold(t)
			t = d.t
		}
		r.mu.Unlock()
	}
	return t, nil
}

// hold keeps t unless the snapshot held is newer. Call with r.mu held.
func (d *driven) hold(t *Task) {
	if d.t == nil || d.t.Revision < t.Revision {
		d.t = t
	}
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
// Snapshots are shared with other readers: never modify one.
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
	t, err := r.update(id, move(StateCanceled, nil, func(t *Task) {
		provider, attempt = t.Provider, t.Attempt
		t.Reason = "canceled by the requestor"
	}))
	if err != nil {
		return nil, err
	}
	r.cancelChildren(t)
	if provider != "" {
		if pid, err := peerIDs.Decode(provider); err == nil {
			var ack wire.Ack
			if err := stream.Request(ctx, r.h, pid, wire.ProtoCancel, &wire.Cancel{TaskID: id, Attempt: attempt}, wire.MaxAckSize, &ack); err != nil {
				r.log.Warn("cancel not delivered to provider", "task", id, "peer", provider, "err", err)
			}
		}
	}
	return t, nil
}

// offer puts v in a one-slot channel, replacing what is pending there
// unless that is a newer snapshot (a higher Revision): snapshots can be
// offered out of order (Watch's first read races with notify), and the
// last one must never be lost.
func offer(ch chan *Task, v *Task) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case old := <-ch:
			if old.Revision > v.Revision {
				v = old // keep the newer one and put it back
			}
		default:
		}
	}
}

// notify hands t, just written, to its driver (hold) and its watchers.
// A watcher registered before this holds the lock gets t; one registered
// after reads it (or a newer one) from the driver's snapshot or the store.
func (r *Requestor) notify(t *Task) {
	r.all.publish(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.drivers[t.ID]; d != nil {
		d.hold(t)
	}
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
// mutation finished feed the providers' reputations. When the task's
// driver holds its snapshot and the store can update from it
// (heldTaskUpdater), the record is not read and decoded again: fn runs on a
// shallow copy of the snapshot that owns what fn may change in place
// (Task.ownNested), and the write lands only if the stored record is still
// the snapshot; otherwise fn runs on the stored record.
func (r *Requestor) update(id string, fn func(*Task) error) (*Task, error) {
	return r.updateAlso(id, fn, nil)
}

// updateAlso is update that also writes also in the task's transaction;
// also must be empty unless the store is a taskAlsoUpdater.
func (r *Requestor) updateAlso(id string, fn func(*Task) error, also []storage.Entry) (*Task, error) {
	var before map[string]AttemptState
	mut := func(t *Task) error {
		t.ownNested()
		before = map[string]AttemptState{}
		for _, e := range t.Executions {
			before[fmt.Sprint(e.Provider, "/", e.Attempt)] = e.State
		}
		return fn(t)
	}
	var held *Task
	hs, canHold := r.store.(heldTaskUpdater)
	if canHold {
		r.mu.Lock()
		if d := r.drivers[id]; d != nil {
			held = d.t
		}
		r.mu.Unlock()
	}
	var t *Task
	var err error
	as, canAlso := r.store.(taskAlsoUpdater)
	switch {
	case len(also) > 0 && !canAlso:
		return nil, fmt.Errorf("task %s: the store cannot write other entries with a task", id)
	case len(also) > 0 && held != nil:
		t, err = as.UpdateHeldAlso(id, held, mut, also...)
	case len(also) > 0:
		t, err = as.UpdateAlso(id, mut, also...)
	case held != nil:
		t, err = hs.UpdateHeld(id, held, mut)
	default:
		t, err = r.store.Update(id, mut)
	}
	if err != nil {
		return nil, err
	}
	for _, e := range t.Executions {
		if prev := before[fmt.Sprint(e.Provider, "/", e.Attempt)]; prev != e.State && (e.State == AttemptCompleted || e.State == AttemptFailed) {
			r.rep.record(e)
		}
	}
	r.noteExecutions(before, t)
	r.unshareEnded(t)
	if t.State.IsTerminal() && t.Checkpoint != nil {
		r.dropCheckpoint(t)
	}
	observeUpdate(r.cfg.Observer, t)
	r.notify(t)
	return t, nil
}

// HeardFrom reports whether provider answered an auction of this
// requestor (a bid or a decline): a provider it knows, whom the node trusts
// with more than strangers.
func (r *Requestor) HeardFrom(provider peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.heard[provider]
}

// Reputations returns what this requestor learned of each provider.
func (r *Requestor) Reputations() map[string]Reputation { return r.rep.snapshot() }
