package market

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

// Provider defaults.
const (
	// DefaultReservationTTL is how long capacity is held for a bid.
	DefaultReservationTTL = 15 * time.Second
	// DefaultOutboxTTL is how long an undelivered result is kept and
	// retried before it is given up.
	DefaultOutboxTTL = 24 * time.Hour
	// DefaultHeartbeat is how often a provider tells the requestor it still
	// holds a task.
	DefaultHeartbeat = 2 * time.Second
	// DefaultOutputsQuota bounds a task's outputs.
	DefaultOutputsQuota = 1 << 30
	// DefaultOutputsTTL is how long outputs stay pinned after delivery.
	DefaultOutputsTTL = time.Hour
	// maxRedeliveryPause caps the back-off between delivery attempts.
	maxRedeliveryPause = 30 * time.Second
)

// ExecRecord is the provider's persisted record of one awarded execution;
// while its result is not delivered it is the outbox entry.
type ExecRecord struct {
	Key       string        `json:"key"`
	TaskID    string        `json:"task"`
	Attempt   int           `json:"attempt"`
	Requestor string        `json:"requestor"`
	Spec      wire.TaskSpec `json:"spec"`
	State     ExecState     `json:"state"`
	Report    *wire.Report  `json:"report,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	// OutputsReleased is set once the outputs pin was let go.
	OutputsReleased bool `json:"outputs_released,omitempty"`
	// VolumesReleased is set once the volume pins were let go (service.go).
	VolumesReleased bool `json:"volumes_released,omitempty"`
}

// ExecStore persists provider execution records. storage.Table[ExecRecord]
// implements it.
type ExecStore interface {
	Create(key string, r *ExecRecord) error
	Get(key string) (*ExecRecord, error)
	Update(key string, fn func(*ExecRecord) error) (*ExecRecord, error)
	List() ([]*ExecRecord, error)
}

// ImageChecker is implemented by executors that can tell whether an image
// is available locally without running it.
type ImageChecker interface {
	HasImage(ctx context.Context, ref string) bool
}

// ProviderConfig tunes a Provider.
type ProviderConfig struct {
	// Capacity offered in all. Zero fields are not offered (no GPUs).
	Capacity Capacity
	// Price in credits per CPU-second.
	Price          float64
	ReservationTTL time.Duration
	OutboxTTL      time.Duration
	// OutputsTTL is how long outputs stay pinned after the requestor
	// acknowledged the result (it fetches them right away).
	OutputsTTL time.Duration
	// WorkDir holds per-execution directories (inputs, outputs) and the
	// module cache. Required.
	WorkDir string
	// Content fetches images and inputs and adds outputs; nil disables
	// content (only local images, no inputs or outputs).
	Content ContentStore
	// Images caches loaded images by CID.
	Images ImageCache
	// Heartbeat is the interval of heartbeats while a task is held.
	Heartbeat time.Duration
	// Ledger keeps countersigned receipts of what this provider earned.
	Ledger LedgerStore
	// OutputsQuota bounds the bytes a task may return as outputs
	// (default DefaultOutputsQuota).
	OutputsQuota int64
	// MaxQueue bounds the awards a busy provider accepts to run later
	// (default: four times its CPU count, at least 4); beyond it, it
	// declines "busy".
	MaxQueue int
	Logger   *slog.Logger
	// OnChange, when set, is called after free capacity changed (a
	// reservation, an award, a release). It runs with the provider's
	// capacity lock held: it must only signal (the advertiser's Changed).
	OnChange func()
	// Isolation lists the stronger sandboxes this provider's executors
	// offer (wire.IsolationGVisor); a task asking for another is declined.
	Isolation []string
	// IsolationRequired: every task runs under Isolation[0]; services,
	// which gVisor cannot network, are declined.
	IsolationRequired bool
	// DiskQuota, when set, bounds what each task writes (volumes, /outputs
	// and /work together) at OutputsQuota while it writes. Nil: only what
	// is collected after the run is bounded.
	DiskQuota QuotaMounter
	// AllowedImages are the local images requestors may run by name or ID
	// (path.Match patterns such as "python:3.*"); images given by CID are
	// always allowed. Default: none.
	AllowedImages []string
	// Observer times executor runs (nil: none).
	Observer Observer
}

// Provider runs the provider side of the market: it bids on announced tasks
// it can run, accepts awards while its reservation holds, runs the task on
// an executor and delivers the result, retrying from a persistent outbox
// until the requestor acknowledges it.
type Provider struct {
	h         host.Host
	store     ExecStore
	executors map[string]executor.Executor
	cfg       ProviderConfig
	log       *slog.Logger
	sub       *pubsub.Subscription
	ledger    *ledger

	imageMu sync.Mutex // serializes image loads so each CID loads once
	// queue holds awards accepted while busy, to run as slots free.
	queue *taskQueue
	// annLimit and streamLimit rate-limit peers; answering bounds the
	// bids and declines being sent at once.
	annLimit    *peerLimiter
	streamLimit *peerLimiter
	answering   chan struct{}

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // by exec key
	connCh  chan struct{}                      // closed and replaced on each new connection
	live    liveRegistry                       // running services (service.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewProvider subscribes to the task topic and registers the award and
// cancel protocols. Call Start to begin bidding and to deliver what the
// outbox holds.
func NewProvider(h host.Host, store ExecStore, topic *pubsub.Topic, executors []executor.Executor, cfg ProviderConfig) (*Provider, error) {
	if len(executors) == 0 {
		return nil, errors.New("provider: at least one executor is required")
	}
	if cfg.ReservationTTL <= 0 {
		cfg.ReservationTTL = DefaultReservationTTL
	}
	if cfg.OutboxTTL <= 0 {
		cfg.OutboxTTL = DefaultOutboxTTL
	}
	if cfg.OutputsTTL <= 0 {
		cfg.OutputsTTL = DefaultOutputsTTL
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.OutputsQuota <= 0 {
		cfg.OutputsQuota = DefaultOutputsQuota
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("provider: a work directory is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sub, err := topic.Subscribe()
	if err != nil {
		return nil, fmt.Errorf("provider: subscribe to tasks: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Provider{
		h: h, store: store, executors: map[string]executor.Executor{}, cfg: cfg,
		log: cfg.Logger.With("role", "provider"), sub: sub, ledger: newLedger(cfg.Capacity),
		running: map[string]context.CancelCauseFunc{}, connCh: make(chan struct{}),
		annLimit: newPeerLimiter(announceRate, announceBurst), streamLimit: newPeerLimiter(streamRate, streamBurst),
		answering: make(chan struct{}, 256),
		queue:     newTaskQueue(queueLength(cfg)),
		ctx:       ctx, cancel: cancel,
	}
	for _, e := range executors {
		p.executors[e.Name()] = e
	}
	p.ledger.onChange = cfg.OnChange
	return p, nil
}

// Executors lists the runtimes this provider offers.
func (p *Provider) Executors() []string {
	out := make([]string, 0, len(p.executors))
	for name := range p.executors {
		out = append(out, name)
	}
	return out
}

// Free returns the capacity not held by bids or tasks.
func (p *Provider) Free() Capacity { return p.ledger.Free() }

// Start recovers executions interrupted by a restart, redelivers undelivered
// results, and starts bidding.
func (p *Provider) Start() error {
	p.removeStaleWorkDirs()
	recs, err := p.store.List()
	if err != nil {
		return fmt.Errorf("provider: list executions: %w", err)
	}
	for _, rec := range recs {
		switch rec.State {
		case ExecAccepted, ExecRunning:
			// The process that ran it is gone. Stop what it may have left
			// running (a container outlives its provider), then report it
			// failed and retryable so the requestor moves on at once.
			p.removeLeftovers(rec)
			now := time.Now().UTC()
			rep := &wire.Report{TaskID: rec.TaskID, Attempt: rec.Attempt, State: wire.ExecFailed, Result: &wire.Result{
				ExitCode: -1, Error: "the provider restarted while running the task", Retryable: true,
				StartedAt: rec.CreatedAt, FinishedAt: now,
			}}
			p.sign(rec, rep.Result)
			rec, err = p.store.Update(rec.Key, func(r *ExecRecord) error {
				r.Report = rep
				return r.Transition(ExecDone)
			})
			if err != nil {
				return fmt.Errorf("provider: recover %s: %w", rec.Key, err)
			}
			p.log.Warn("execution interrupted by restart", "task", rec.TaskID)
			fallthrough
		case ExecDone:
			p.goDeliver(rec)
		}
	}
	p.h.Network().Notify(&network.NotifyBundle{ConnectedF: func(network.Network, network.Conn) {
		p.mu.Lock()
		close(p.connCh)
		p.connCh = make(chan struct{})
		p.mu.Unlock()
	}})
	p.startServices()
	p.h.SetStreamHandler(wire.ProtoAward, p.handleAward)
	p.h.SetStreamHandler(wire.ProtoCancel, p.handleCancel)
	p.wg.Add(2)
	go p.readAnnouncements()
	go p.releasePinsLoop()
	return nil
}

// releasePinsLoop lets go of the outputs and volume pins of results that
// were settled (delivered or abandoned) more than OutputsTTL ago.
func (p *Provider) releasePinsLoop() {
	defer p.wg.Done()
	t := time.NewTicker(min(p.cfg.OutputsTTL/4+time.Second, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		recs, err := p.store.List()
		if err != nil || p.cfg.Content == nil {
			continue
		}
		for _, rec := range recs {
			if !rec.State.IsFinal() || rec.Report == nil || rec.Report.Result == nil || time.Since(rec.UpdatedAt) < p.cfg.OutputsTTL {
				continue
			}
			res := rec.Report.Result
			if res.Outputs != "" && !rec.OutputsReleased {
				if err := p.cfg.Content.Unpin(p.ctx, res.Outputs); err != nil {
					p.log.Debug("release outputs", "task", rec.TaskID, "err", err)
				}
			}
			if !rec.VolumesReleased {
				for _, v := range res.Volumes {
					if err := p.cfg.Content.Unpin(p.ctx, v.CID); err != nil {
						p.log.Debug("release volume", "task", rec.TaskID, "volume", v.Name, "err", err)
					}
				}
			}
			if rec.OutputsReleased && rec.VolumesReleased {
				continue
			}
			_, _ = p.store.Update(rec.Key, func(r *ExecRecord) error {
				r.OutputsReleased, r.VolumesReleased = true, true
				return nil
			})
		}
	}
}

// Close stops bidding, cancels running executions (their results are kept
// and delivered after the next start) and waits for every goroutine.
func (p *Provider) Close() error {
	p.h.RemoveStreamHandler(wire.ProtoAward)
	p.h.RemoveStreamHandler(wire.ProtoCancel)
	p.closeServices()
	p.sub.Cancel()
	p.cancel()
	p.wg.Wait()
	return nil
}

// ReasonNoReservation is the award reply of a provider that holds no live
// reservation for the award's requestor, task and attempt (it never bid, or
// its bid expired).
const ReasonNoReservation = "no live reservation for this award (never bid or bid expired)"

// imageRefused says why this provider's operator does not let requestors
// run spec's image, or "" when it may run. Images by CID are always
// allowed (they are loaded untagged and run by their content id); a local
// image by name or ID only when it matches one of AllowedImages.
func (p *Provider) imageRefused(spec wire.TaskSpec) string {
	if spec.Image == "" || spec.ImageIsCID() {
		return ""
	}
	if spec.RuntimeOrDefault() == "wasm" {
		return fmt.Sprintf("wasm module %q must be given by CID", spec.Image)
	}
	for _, pat := range p.cfg.AllowedImages {
		if ok, _ := path.Match(pat, spec.Image); ok {
			return ""
		}
	}
	return fmt.Sprintf("image %s is not one this provider's operator allows by name (give it by CID)", spec.Image)
}

func execKey(requestor, task string, attempt int) string {
	return fmt.Sprintf("%s/%s/%d", requestor, task, attempt)
}

func (p *Provider) readAnnouncements() {
	defer p.wg.Done()
	for {
		msg, err := p.sub.Next(p.ctx)
		if err != nil {
			return
		}
		if msg.GetFrom() == p.h.ID() {
			continue
		}
		if !p.annLimit.allow(msg.GetFrom()) {
			p.log.Debug("announcement over rate", "peer", msg.GetFrom())
			continue
		}
		ann, err := wire.Decode[wire.Announce](msg.Data)
		if err != nil {
			p.log.Debug("bad announcement", "peer", msg.GetFrom(), "err", err)
			continue
		}
		if ann.Requestor != msg.GetFrom().String() {
			p.log.Debug("announcement signed by another peer", "peer", msg.GetFrom(), "claims", ann.Requestor)
			continue
		}
		if ann.Req.Provider != "" && ann.Req.Provider != p.h.ID().String() {
			continue // pinned to another provider
		}
		if slices.Contains(ann.Req.Exclude, p.h.ID().String()) {
			continue // the requestor does not want this provider for it
		}
		select {
		case p.answering <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.answering }()
			p.answer(msg.GetFrom(), ann)
		}()
	}
}

// decide returns a bid or a decline for an announcement, reserving capacity
// for a bid.
func (p *Provider) decide(requestor peer.ID, ann *wire.Announce) wire.Bid {
	bid := wire.Bid{TaskID: ann.TaskID, Attempt: ann.Attempt, Price: p.cfg.Price}
	req := ann.Req
	ex, ok := p.executors[req.Runtime]
	if !ok {
		bid.Decline = fmt.Sprintf("no %s executor", req.Runtime)
		return bid
	}
	if req.Isolation != "" && (req.Runtime != "docker" || !slices.Contains(p.cfg.Isolation, req.Isolation)) {
		bid.Decline = fmt.Sprintf("no %s isolation for %s tasks on this provider", req.Isolation, req.Runtime)
		return bid
	}
	if req.Service && p.cfg.IsolationRequired && req.Runtime == "docker" {
		bid.Decline = "this provider runs every docker task under gVisor, which runs no services"
		return bid
	}
	if why := serviceDecline(ex, req); why != "" {
		bid.Decline = why
		return bid
	}
	res := normalize(req.Resources)
	if res.GPUs > p.cfg.Capacity.GPUs || res.CPUs > p.cfg.Capacity.CPUs || res.MemoryBytes > p.cfg.Capacity.MemoryBytes {
		bid.Decline = fmt.Sprintf("asks for more than this provider has (%.2f cpus, %d MiB, %d gpus)",
			p.cfg.Capacity.CPUs, p.cfg.Capacity.MemoryBytes>>20, p.cfg.Capacity.GPUs)
		return bid
	}
	if req.MaxPrice > 0 && p.cfg.Price > req.MaxPrice {
		bid.Decline = fmt.Sprintf("price %g above max price %g", p.cfg.Price, req.MaxPrice)
		return bid
	}
	if why := p.imageRefused(wire.TaskSpec{Image: req.Image, Runtime: req.Runtime}); why != "" {
		bid.Decline = why
		return bid
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	has, canRun := p.hasImage(ctx, ex, req)
	cancel()
	bid.HasImage = has
	bid.InputsLocal = p.inputsLocal(req.Inputs)
	if !canRun {
		bid.Decline = fmt.Sprintf("image %s not found on this provider", req.Image)
		return bid
	}
	key := execKey(requestor.String(), ann.TaskID, ann.Attempt)
	if why := p.ledger.reserve(key, requestor.String(), res, p.cfg.ReservationTTL); why != "" {
		// Busy: offer a place in the queue, with a later start, rather
		// than a decline the requestor can only answer by asking again.
		startMS, ok := p.queue.hold(key, p.cfg.ReservationTTL, queueSlots(p.cfg.Capacity, res))
		if !ok {
			bid.Decline, bid.Busy = why+" and the queue is full", true
			return bid
		}
		bid.StartMS = startMS
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTaskTimeout
	}
	bid.MaxCost = p.cfg.Price * res.CPUs * timeout.Seconds()
	bid.ReservationMS = p.cfg.ReservationTTL.Milliseconds()
	return bid
}

// answer sends the bid or decline for one announcement to its requestor.
func (p *Provider) answer(requestor peer.ID, ann *wire.Announce) {
	bid := p.decide(requestor, ann)
	key := execKey(requestor.String(), ann.TaskID, ann.Attempt)
	var ack wire.BidAck
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	err := p2p.Request(ctx, p.h, requestor, wire.ProtoBid, &bid, wire.MaxAckSize, &ack)
	if bid.Decline != "" {
		return
	}
	if err != nil || !ack.OK {
		p.ledger.release(key)
		p.queue.release(key)
		p.log.Debug("bid not taken", "task", ann.TaskID, "err", err, "reason", ack.Reason)
	}
}

func (p *Provider) handleAward(s network.Stream) {
	defer s.Close()
	from, body, ok := openRequest(s, p.streamLimit, 10*time.Second, wire.MaxAwardSize, p.log, "award")
	if !ok {
		return
	}
	reply := p.accept(from, body)
	_ = p2p.WriteMsg(s, &reply)
}

// accept persists an award it can honour and starts running it.
func (p *Provider) accept(from peer.ID, body []byte) wire.AwardReply {
	award, err := wire.Decode[wire.Award](body)
	if err != nil {
		return wire.AwardReply{Code: wire.CodeBadRequest, Reason: err.Error()}
	}
	ex, ok := p.executors[award.Spec.RuntimeOrDefault()]
	if !ok {
		return wire.AwardReply{Code: wire.CodeRefused, Reason: "no " + award.Spec.RuntimeOrDefault() + " executor"}
	}
	// An award is honoured only against a live reservation this provider
	// made when it bid for this same requestor, task and attempt: a peer
	// that never received a bid (or whose bid expired) can make this
	// provider spend nothing.
	key := execKey(from.String(), award.TaskID, award.Attempt)
	if owner, ok := p.ledger.owner(key); ok && owner != from.String() {
		return wire.AwardReply{Code: wire.CodeNoReservation, Reason: "not your reservation"}
	} else if !ok && !p.queue.holding(key) {
		return wire.AwardReply{Code: wire.CodeNoReservation, Reason: ReasonNoReservation}
	}
	if why := p.imageRefused(award.Spec); why != "" {
		p.ledger.release(key)
		p.queue.release(key)
		return wire.AwardReply{Code: wire.CodeRefused, Reason: why}
	}
	queued := false
	if why := p.ledger.claim(key, from.String(), normalize(award.Spec.Resources)); why != "" {
		// No free slot now: run it as soon as one frees, in order.
		if !p.queue.enqueue(key) {
			return wire.AwardReply{Code: wire.CodeTooMany, Reason: why + " and the queue is full"}
		}
		queued = true
	}
	now := time.Now().UTC()
	rec := &ExecRecord{
		Key: key, TaskID: award.TaskID, Attempt: award.Attempt, Requestor: from.String(),
		Spec: award.Spec, State: ExecAccepted, CreatedAt: now, UpdatedAt: now,
	}
	if err := p.store.Create(key, rec); err != nil {
		p.ledger.release(key)
		p.queue.remove(key)
		return wire.AwardReply{Code: wire.CodeRefused, Reason: "already awarded"}
	}
	ctx, cancel := context.WithCancelCause(p.ctx)
	p.mu.Lock()
	p.running[key] = cancel
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel(nil)
		p.run(ctx, ex, rec, queued)
	}()
	return wire.AwardReply{Accepted: true}
}

// errCanceled is the cause given to an execution canceled by its requestor.
var errCanceled = errors.New("canceled by the requestor")

// run executes one award and puts its result in the outbox.
func (p *Provider) run(ctx context.Context, ex executor.Executor, rec *ExecRecord, queued bool) {
	defer func() {
		p.mu.Lock()
		delete(p.running, rec.Key)
		p.mu.Unlock()
		p.ledger.release(rec.Key)
		p.queue.slotFreed()
	}()
	beatCtx, stopBeats := context.WithCancel(ctx)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.heartbeat(beatCtx, rec)
	}()
	defer stopBeats()

	started := time.Now().UTC()
	rep := &wire.Report{TaskID: rec.TaskID, Attempt: rec.Attempt, State: wire.ExecCompleted}
	res := &wire.Result{ExitCode: -1, StartedAt: started}
	var out *executor.Result
	pr, err := p.prepare(ctx, ex, rec)
	if pr != nil {
		defer pr.cleanup(p.log)
	}
	if err == nil && queued {
		// Image and inputs are in place; now wait for a free slot.
		need := normalize(rec.Spec.Resources)
		err = p.queue.waitTurn(ctx, rec.Key, func() bool { return p.ledger.claim(rec.Key, rec.Requestor, need) == "" })
	}
	if err == nil {
		res.FetchMS = pr.fetchMS
		// Only now is the task running: fetching its image and inputs is
		// reported apart and does not count against its timeout.
		p.markRunning(ctx, rec)
		ranFrom := time.Now()
		defer func() { p.queue.ran(time.Since(ranFrom)) }()
		out, res.Stages, err = p.runWorkload(ctx, ex, rec, pr, res)
		if err == nil {
			res.Outputs, err = p.collectOutputs(ctx, rec, pr)
		}
	} else if !errors.Is(err, errNotContent) && ctx.Err() == nil {
		// Another provider may reach the content where this one could not.
		err = fmt.Errorf("%w (%w)", err, executor.ErrUnavailable)
	}
	res.FinishedAt = time.Now().UTC()
	if out != nil {
		observe(p.cfg.Observer).ExecutionFinished(ex.Name(), time.Duration(out.Usage.WallMS)*time.Millisecond, err == nil && out.ExitCode == 0)
		res.ExitCode = out.ExitCode
		res.Stdout, res.Stderr = string(out.Stdout), string(out.Stderr)
		res.StdoutSize, res.StderrSize = out.StdoutSize, out.StderrSize
		res.Usage = wire.Usage(out.Usage)
		if !out.StartedAt.IsZero() {
			res.StartedAt, res.FinishedAt = out.StartedAt, out.FinishedAt
		}
		cpuSeconds := float64(out.Usage.CPUMS) / 1000
		if cpuSeconds == 0 {
			cpuSeconds = float64(out.Usage.WallMS) / 1000 * normalize(rec.Spec.Resources).CPUs
		}
		res.Cost = p.cfg.Price * cpuSeconds
	}
	if err != nil {
		rep.State = wire.ExecFailed
		if cause := context.Cause(ctx); errors.Is(cause, errCanceled) {
			err = errCanceled
		}
		res.Error = err.Error()
		res.Retryable = errors.Is(err, executor.ErrImageNotFound) || errors.Is(err, executor.ErrUnavailable)
		if p.ctx.Err() != nil && !errors.Is(err, errCanceled) {
			res.Error, res.Retryable = "the provider shut down while running the task", true
		}
	}
	rep.Result = res
	p.sign(rec, res)
	saved, perr := p.store.Update(rec.Key, func(r *ExecRecord) error {
		r.Report = rep
		return r.Transition(ExecDone)
	})
	if perr != nil {
		p.log.Error("persist result", "task", rec.TaskID, "err", perr)
		return
	}
	p.log.Info("task finished", "task", rec.TaskID, "exit", res.ExitCode, "err", res.Error, "wall_ms", res.Usage.WallMS)
	p.goDeliver(saved)
}

// heartbeat tells the requestor every Heartbeat that this provider still
// holds the task, until ctx ends (the result is ready or the task stopped).
func (p *Provider) heartbeat(ctx context.Context, rec *ExecRecord) {
	requestor, _ := peer.Decode(rec.Requestor)
	t := time.NewTicker(p.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, p.cfg.Heartbeat)
		var ack wire.Ack
		err := p2p.Request(rctx, p.h, requestor, wire.ProtoReport, &wire.Report{TaskID: rec.TaskID, Attempt: rec.Attempt, State: wire.ExecHeartbeat}, wire.MaxAckSize, &ack)
		cancel()
		if err == nil && !ack.OK {
			// The requestor no longer wants it from us (canceled, settled
			// elsewhere, or moved on after losing us): stop.
			p.log.Info("requestor dropped the task", "task", rec.TaskID, "reason", ack.Reason)
			p.mu.Lock()
			stop := p.running[rec.Key]
			p.mu.Unlock()
			if stop != nil {
				stop(errCanceled)
			}
			return
		}
	}
}

// queueLength is how many awards a busy provider keeps waiting: four rounds
// of its CPU slots, at least 4. Bids state the expected start, so a
// requestor in a hurry picks a provider with a shorter queue.
func queueLength(cfg ProviderConfig) int {
	if cfg.MaxQueue > 0 {
		return cfg.MaxQueue
	}
	return max(4, 4*int(cfg.Capacity.CPUs))
}

// TaskRemover is implemented by executors whose workloads can outlive the
// provider process (containers); RemoveTask stops and removes them.
type TaskRemover interface {
	RemoveTask(ctx context.Context, taskID string) error
}

// removeLeftovers removes whatever an interrupted execution left running.
func (p *Provider) removeLeftovers(rec *ExecRecord) {
	ex, ok := p.executors[rec.Spec.RuntimeOrDefault()].(TaskRemover)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := ex.RemoveTask(ctx, execDirName(rec)); err != nil {
		p.log.Warn("remove leftover workload", "task", rec.TaskID, "err", err)
	}
}

// sign attaches the provider's signed receipt to a result.
func (p *Provider) sign(rec *ExecRecord, res *wire.Result) {
	key := p.h.Peerstore().PrivKey(p.h.ID())
	r, err := signReceipt(key, p.h.ID(), rec, res, p.cfg.Price)
	if err != nil {
		p.log.Error("sign receipt", "task", rec.TaskID, "err", err)
		return
	}
	res.Receipt = r
}

// recordEarned keeps the requestor's countersigned receipt in the ledger.
func (p *Provider) recordEarned(rec *ExecRecord, countersig []byte) {
	if p.cfg.Ledger == nil || rec.Report == nil || rec.Report.Result == nil || rec.Report.Result.Receipt == nil || len(countersig) == 0 {
		return
	}
	sr := *rec.Report.Result.Receipt
	sr.RequestorSig = countersig
	rc, err := sr.Verify()
	if err != nil {
		p.log.Warn("bad countersignature", "task", rec.TaskID, "err", err)
		return
	}
	e := &LedgerEntry{Key: rec.Key + "/earned", TaskID: rec.TaskID, Attempt: rec.Attempt, Peer: rec.Requestor,
		Role: RoleEarned, Amount: rc.Cost, At: time.Now().UTC(), Receipt: &sr}
	if err := p.cfg.Ledger.Put(e.Key, e); err != nil {
		p.log.Error("record earned", "task", rec.TaskID, "err", err)
	}
}

// markRunning persists the running state and tells the requestor, best
// effort: the result report supersedes it.
func (p *Provider) markRunning(ctx context.Context, rec *ExecRecord) {
	requestor, _ := peer.Decode(rec.Requestor)
	if _, err := p.store.Update(rec.Key, func(r *ExecRecord) error {
		return r.Transition(ExecRunning)
	}); err != nil {
		p.log.Error("persist running", "task", rec.TaskID, "err", err)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var ack wire.Ack
		_ = p2p.Request(ctx, p.h, requestor, wire.ProtoReport, &wire.Report{TaskID: rec.TaskID, Attempt: rec.Attempt, State: wire.ExecRunning}, wire.MaxAckSize, &ack)
	}()
}

// executorSpec maps an award to what the executor runs; content fields
// (image CIDs, inputs, outputs) are filled in by prepare.
func executorSpec(rec *ExecRecord) executor.Spec {
	s := rec.Spec
	res := normalize(s.Resources)
	return executor.Spec{
		// The execution's own name (requestor, task and attempt), never the
		// task ID alone: two requestors may choose the same task ID, and
		// containers are found and removed by it.
		TaskID: execDirName(rec), Image: s.Image, Entrypoint: s.Entrypoint, Cmd: s.Cmd, Env: s.Env,
		WorkDir: s.WorkDir, Timeout: s.Timeout(), Isolation: s.Isolation,
		Limits: executor.Limits{CPUs: res.CPUs, MemoryBytes: res.MemoryBytes, GPUs: res.GPUs},
	}
}

func (p *Provider) goDeliver(rec *ExecRecord) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.deliver(rec)
	}()
}

// deliver sends a finished execution's report until the requestor
// acknowledges it, pausing with back-off between attempts and retrying at
// once when a new connection comes up (a restarted requestor).
func (p *Provider) deliver(rec *ExecRecord) {
	requestor, err := peer.Decode(rec.Requestor)
	if err != nil || rec.Report == nil {
		return
	}
	pause := 250 * time.Millisecond
	for p.ctx.Err() == nil {
		if time.Since(rec.UpdatedAt) > p.cfg.OutboxTTL {
			p.log.Warn("giving up delivering a result", "task", rec.TaskID, "peer", requestor)
			p.settleOutbox(rec, ExecAbandoned)
			return
		}
		p.mu.Lock()
		connected := p.connCh
		p.mu.Unlock()
		var ack wire.Ack
		err := p2p.Request(p.ctx, p.h, requestor, wire.ProtoReport, rec.Report, wire.MaxAckSize, &ack)
		if err == nil && ack.OK {
			p.recordEarned(rec, ack.Countersig)
			p.settleOutbox(rec, ExecDelivered)
			return
		}
		if err == nil {
			p.log.Warn("result refused", "task", rec.TaskID, "code", ack.Code, "reason", ack.Reason)
			if ack.Code.Final() {
				p.settleOutbox(rec, ExecAbandoned)
				return
			}
		} else {
			p.log.Debug("result delivery failed", "task", rec.TaskID, "err", err)
		}
		select {
		case <-p.ctx.Done():
			return
		case <-connected:
		case <-time.After(pause):
		}
		pause = min(pause*2, maxRedeliveryPause)
	}
}

// settleOutbox ends an outbox entry: delivered (acknowledged) or abandoned
// (refused for good, or past OutboxTTL).
func (p *Provider) settleOutbox(rec *ExecRecord, to ExecState) {
	if _, err := p.store.Update(rec.Key, func(r *ExecRecord) error { return r.Transition(to) }); err != nil {
		p.log.Error("persist outbox entry", "task", rec.TaskID, "state", to, "err", err)
	}
}

func (p *Provider) handleCancel(s network.Stream) {
	defer s.Close()
	from, body, ok := openRequest(s, p.streamLimit, 10*time.Second, wire.MaxAckSize, p.log, "cancel")
	if !ok {
		return
	}
	c, err := wire.Decode[wire.Cancel](body)
	if err != nil {
		_ = p2p.WriteMsg(s, &wire.Ack{Code: wire.CodeBadRequest, Reason: err.Error()})
		return
	}
	key := execKey(from.String(), c.TaskID, c.Attempt)
	p.mu.Lock()
	cancel := p.running[key]
	p.mu.Unlock()
	if cancel == nil {
		// A bid that lost (or a task canceled before its award): give back
		// the capacity reserved for it now rather than at the TTL.
		p.queue.release(key)
		if owner, ok := p.ledger.owner(key); ok && owner == from.String() {
			p.ledger.release(key)
			_ = p2p.WriteMsg(s, &wire.Ack{OK: true, Reason: "reservation released"})
			return
		}
		_ = p2p.WriteMsg(s, &wire.Ack{Code: wire.CodeUnknownTask, Reason: "not running here"})
		return
	}
	cancel(errCanceled)
	_ = p2p.WriteMsg(s, &wire.Ack{OK: true})
}
