package market

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
	"github.com/offload-project/offload/storage"
)

// Per-peer rates for messages that make this node do work. They are far
// above what an honest peer sends (a requestor announcing hundreds of tasks
// a second stays under them) and stop a flood at the first hop.
const (
	announceRate  = 500 // announcements per second per requestor
	announceBurst = 1000
	// newcomerAnnounceRate bounds the announcements this provider answers
	// from all requestors that never did business with it (see
	// admission.vouch), together: a thousand fresh
	// identities cost it no more than one busy customer, and a known
	// customer's announcements never wait behind theirs.
	newcomerAnnounceRate  = 200
	newcomerAnnounceBurst = 400
	streamRate            = 1000 // bids, reports, awards per second per peer
	streamBurst           = 2000
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
	// DefaultRecordTTL is how long a settled execution's record (delivered
	// or abandoned, its pins released) is kept before it is deleted.
	DefaultRecordTTL = 72 * time.Hour
	// DefaultPrepareTimeout bounds fetching and loading a task's image,
	// inputs and volumes, however slowly a peer drips the bytes.
	DefaultPrepareTimeout = 15 * time.Minute
	// bidTimeout bounds sending one bid (or decline) and reading its ack;
	// an honest requestor acknowledges at once.
	bidTimeout = 3 * time.Second
	// dialTimeout bounds connecting to a requestor this provider is not
	// connected to before it answers; no capacity is held meanwhile.
	dialTimeout = 3 * time.Second
	// maxAnswersPerRequestor bounds the answers in flight to one
	// requestor; maxAnswering and maxDialing bound them all, for
	// requestors this provider is connected to and for those it must dial.
	maxAnswersPerRequestor = 32
	maxAnswering           = 256
	maxDialing             = 16
	// announceBuffer is how many announcements wait for readAnnouncements.
	announceBuffer = 1024
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
	Delete(key string) error
}

// heldUpdater is implemented by stores that can update a record from the
// copy the caller holds, without reading and decoding it again
// (storage.Table.UpdateHeld).
type heldUpdater interface {
	UpdateHeld(key string, held *ExecRecord, fn func(*ExecRecord) error) (*ExecRecord, error)
}

// updateHeld updates the record of rec, which the caller holds as it was
// last written, through the store's UpdateHeld where it has one, else
// through Update. fn must only set fields of the record it is given, never
// modify what they point to (it may be a shallow copy of rec). Should the
// stored record have changed since rec, fn runs on the stored one.
func (p *Provider) updateHeld(rec *ExecRecord, fn func(*ExecRecord) error) (*ExecRecord, error) {
	if s, ok := p.store.(heldUpdater); ok {
		return s.UpdateHeld(rec.Key, rec, fn)
	}
	return p.store.Update(rec.Key, fn)
}

// ledgerEntries is implemented by ledgers that can encode an entry for
// another table's write (storage.Table.Entry), and heldAlsoUpdater by
// execution stores that write such entries with a held update, in one
// transaction (storage.Table.UpdateHeldAlso).
type (
	ledgerEntries interface {
		Entry(key string, e *LedgerEntry) (storage.Entry, error)
	}
	heldAlsoUpdater interface {
		UpdateHeldAlso(key string, held *ExecRecord, fn func(*ExecRecord) error, also ...storage.Entry) (*ExecRecord, error)
	}
)

// The node's stores are storage tables; these optional interfaces must
// stay theirs, or the provider and requestor quietly take the slower path.
var (
	_ heldUpdater     = (*storage.Table[ExecRecord])(nil)
	_ heldAlsoUpdater = (*storage.Table[ExecRecord])(nil)
	_ ledgerEntries   = (*storage.Table[LedgerEntry])(nil)
	_ heldTaskUpdater = (*storage.Table[Task])(nil)
	_ taskAlsoUpdater = (*storage.Table[Task])(nil)
)

// ImageChecker is implemented by executors that can tell whether an image
// is available locally without running it.
type ImageChecker interface {
	HasImage(ctx context.Context, ref string) bool
}

// ProviderConfig tunes a Provider.
type ProviderConfig struct {
	// Capacity offered in all. Zero fields are not offered (no GPUs).
	Capacity Capacity
	// GPUs are the devices behind Capacity.GPUs, given to tasks
	// exclusively by id and matched against their typed requirements
	// (gpu.go). Empty: GPUs are counted only, and the engine picks.
	GPUs []GPUDevice
	// Hardware is this provider's machine as its capability record
	// advertises it, labels included: a task whose label or machine
	// requirements it does not meet (wire.LabelsUnmet,
	// wire.MachineUnmet) is declined.
	Hardware wire.Hardware
	// Price in credits per CPU-second.
	Price          float64
	ReservationTTL time.Duration
	OutboxTTL      time.Duration
	// OutputsTTL is how long outputs stay pinned after the requestor
	// acknowledged the result (it fetches them right away).
	OutputsTTL time.Duration
	// RecordTTL is how long a settled execution's record is kept once its
	// pins are released (DefaultRecordTTL when zero).
	RecordTTL time.Duration
	// PrepareTimeout bounds the fetch of a task's image, inputs and
	// volumes (DefaultPrepareTimeout when zero).
	PrepareTimeout time.Duration
	// WorkDir holds per-execution directories (inputs, outputs) and the
	// module cache. Required.
	WorkDir string
	// Content fetches images and inputs and adds outputs; nil disables
	// content (only local images, no inputs or outputs).
	Content ContentStore
	// Images records the images loaded by CID (the image cache,
	// imagecache.go).
	Images ImageCache
	// ImageCacheBytes bounds the images and WASM modules loaded by CID
	// that are kept for later tasks, together; the least recently used
	// that no task uses are removed to make room (default
	// DefaultImageCacheBytes).
	ImageCacheBytes int64
	// Heartbeat is the interval of heartbeats while a task is held.
	Heartbeat time.Duration
	// Ledger keeps countersigned receipts of what this provider earned.
	Ledger LedgerStore
	// OutputsQuota bounds the bytes a task may return as outputs
	// (default DefaultOutputsQuota).
	OutputsQuota int64
	// MaxFetchBytes bounds each fetch of a task's image, inputs and
	// volumes, measured as the content's DAG size, while it is fetched;
	// a declared size below it bounds that fetch instead (default
	// DefaultMaxFetchBytes).
	MaxFetchBytes int64
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
	// admit holds capacity and queue places for bids and runs.
	admit *admission

	imageLocks keyLocks   // serializes image loads per CID so each loads once
	cache      imageCache // what was loaded by CID, within its budget (imagecache.go)
	// annLimit and streamLimit rate-limit peers; answering and dialing
	// bound the bids and declines being sent at once (to requestors this
	// provider is connected to, and to those it must dial first), inflight
	// those to each requestor (guarded by mu).
	annLimit    *stream.Limiter
	newcomerAnn *rate.Limiter
	streamLimit *stream.Limiter
	answering   chan struct{}
	dialing     chan struct{}
	inflight    map[peer.ID]int

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // by exec key
	shares  map[string]func()                  // release of each record's outputs share, by exec key
	connCh  chan struct{}                      // closed and replaced on each new connection
	live    liveRegistry                       // running services (service.go)
	logs    logBook                            // live output of runs (logs.go)

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
	if cfg.RecordTTL <= 0 {
		cfg.RecordTTL = DefaultRecordTTL
	}
	if cfg.PrepareTimeout <= 0 {
		cfg.PrepareTimeout = DefaultPrepareTimeout
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
	// A burst of announcements (or a flood of them from strangers) is
	// queued rather than dropped before readAnnouncements sees it.
	sub, err := topic.Subscribe(pubsub.WithBufferSize(announceBuffer))
	if err != nil {
		return nil, fmt.Errorf("provider: subscribe to tasks: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Provider{
		h: h, store: store, executors: map[string]executor.Executor{}, cfg: cfg,
		log: cfg.Logger.With("role", "provider"), sub: sub, admit: newAdmission(cfg.Capacity, queueLength(cfg), cfg.OnChange, cfg.GPUs),
		running: map[string]context.CancelCauseFunc{}, connCh: make(chan struct{}),
		annLimit: stream.NewLimiter(announceRate, announceBurst), newcomerAnn: rate.NewLimiter(newcomerAnnounceRate, newcomerAnnounceBurst), streamLimit: stream.NewLimiter(streamRate, streamBurst),
		answering: make(chan struct{}, maxAnswering), dialing: make(chan struct{}, maxDialing), inflight: map[peer.ID]int{},
		shares: map[string]func(){},
		ctx:    ctx, cancel: cancel,
	}
	for _, e := range executors {
		p.executors[e.Name()] = e
	}
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

// Knows reports whether requestor did business with this provider (a task
// of its ran here, or it countersigned a receipt): a known customer, whom
// the node trusts with more than strangers.
func (p *Provider) Knows(requestor peer.ID) bool { return p.admit.isKnown(peerIDs.String(requestor)) }

// Free returns the capacity not held by bids or tasks.
func (p *Provider) Free() Capacity { return p.admit.Free() }

// Start recovers executions interrupted by a restart, redelivers undelivered
// results, and starts bidding.
func (p *Provider) Start() error {
	p.removeStaleWorkDirs()
	p.vouchFromLedger()
	recs, err := p.store.List()
	if err != nil {
		return fmt.Errorf("provider: list executions: %w", err)
	}
	for _, rec := range recs {
		if rec.State == ExecDone || (rec.State.IsFinal() && !rec.OutputsReleased) {
			p.shareOutputs(rec) // the requestor may still fetch them
		}
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
	p.h.SetStreamHandler(wire.ProtoAsk, p.handleAsk)
	p.h.SetStreamHandler(wire.ProtoLogs, p.handleLogs)
	p.h.SetStreamHandler(wire.ProtoAward, p.handleAward)
	p.h.SetStreamHandler(wire.ProtoCancel, p.handleCancel)
	p.wg.Add(2)
	go p.readAnnouncements()
	go p.releasePinsLoop()
	return nil
}

// releasePinsLoop lets go of the outputs and volume pins of results that
// were settled (delivered or abandoned) more than OutputsTTL ago, and
// deletes the records of settled executions whose pins are released and
// that are older than RecordTTL: nothing a requestor makes this provider
// store is kept for good.
func (p *Provider) releasePinsLoop() {
	defer p.wg.Done()
	t := time.NewTicker(min(min(p.cfg.OutputsTTL, p.cfg.RecordTTL)/4+time.Second, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		p.releasePins()
	}
}

// releasePins is one round of releasePinsLoop.
func (p *Provider) releasePins() {
	recs, err := p.store.List()
	if err != nil {
		p.log.Error("list executions", "err", err)
		return
	}
	for _, rec := range recs {
		if !rec.State.IsFinal() || time.Since(rec.UpdatedAt) < p.cfg.OutputsTTL {
			continue
		}
		released := rec.OutputsReleased && rec.VolumesReleased
		if released || rec.Report == nil || rec.Report.Result == nil || p.cfg.Content == nil {
			if time.Since(rec.UpdatedAt) >= p.cfg.RecordTTL {
				if err := p.store.Delete(rec.Key); err != nil {
					p.log.Error("delete settled execution", "task", rec.TaskID, "err", err)
				}
			}
			continue
		}
		p.unshare(rec.Key)
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
		// UpdatedAt is not touched: the record's age still counts from
		// when it was settled.
		_, _ = p.store.Update(rec.Key, func(r *ExecRecord) error {
			r.OutputsReleased, r.VolumesReleased = true, true
			return nil
		})
	}
}

// shareOutputs lets rec's requestor fetch its outputs and volumes from
// this provider (content is private by default) until unshare.
func (p *Provider) shareOutputs(rec *ExecRecord) {
	if p.cfg.Content == nil || rec.Report == nil || rec.Report.Result == nil {
		return
	}
	requestor, err := peerIDs.Decode(rec.Requestor)
	if err != nil {
		return
	}
	res := rec.Report.Result
	var roots []string
	if res.Outputs != "" {
		roots = append(roots, res.Outputs)
	}
	for _, v := range res.Volumes {
		roots = append(roots, v.CID)
	}
	if len(roots) == 0 {
		return
	}
	release := p.cfg.Content.Share(requestor, roots...)
	p.mu.Lock()
	old := p.shares[rec.Key]
	p.shares[rec.Key] = release
	p.mu.Unlock()
	if old != nil {
		old()
	}
}

// unshare ends the share shareOutputs made for key, if any.
func (p *Provider) unshare(key string) {
	p.mu.Lock()
	release := p.shares[key]
	delete(p.shares, key)
	p.mu.Unlock()
	if release != nil {
		release()
	}
}

// vouchFromLedger marks the requestors that paid this provider before a
// restart as known (admission.vouch).
func (p *Provider) vouchFromLedger() {
	if p.cfg.Ledger == nil {
		return
	}
	entries, err := p.cfg.Ledger.List()
	if err != nil {
		p.log.Warn("read ledger", "err", err)
		return
	}
	for _, e := range entries {
		if e.Role == RoleEarned && e.Receipt != nil && len(e.Receipt.RequestorSig) > 0 {
			p.admit.vouch(e.Peer, e.At)
		}
	}
}

// Close stops bidding, cancels running executions (their results are kept
// and delivered after the next start) and waits for every goroutine.
func (p *Provider) Close() error {
	p.h.RemoveStreamHandler(wire.ProtoAsk)
	p.h.RemoveStreamHandler(wire.ProtoLogs)
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
	if spec.RuntimeOrDefault() == wire.RuntimeBuild && spec.Image == "scratch" {
		return "" // a build from nothing
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

// earned checks the requestor's countersignature on rec's receipt and
// returns the ledger entry that keeps the countersigned receipt, for
// settleOutbox to write with the delivered state; nil when there is
// nothing to keep (no receipt or countersignature, a bad one, no ledger).
func (p *Provider) earned(rec *ExecRecord, countersig []byte) *LedgerEntry {
	if rec.Report == nil || rec.Report.Result == nil || rec.Report.Result.Receipt == nil || len(countersig) == 0 {
		return nil
	}
	sr := *rec.Report.Result.Receipt
	sr.RequestorSig = countersig
	// The body and its first signature are this provider's own, from its
	// record; only the requestor's signature came from the network.
	rc, err := sr.VerifyCountersignature()
	if err != nil {
		p.log.Warn("bad countersignature", "task", rec.TaskID, "err", err)
		return nil
	}
	// A requestor that signed for work is a known customer: its bids may
	// reserve all of the capacity (admission.vouch).
	p.admit.vouch(rec.Requestor, time.Now())
	if p.cfg.Ledger == nil {
		return nil
	}
	return &LedgerEntry{Key: rec.Key + "/earned", TaskID: rec.TaskID, Attempt: rec.Attempt, Peer: rec.Requestor,
		Role: RoleEarned, Amount: rc.Cost, At: time.Now().UTC(), Receipt: &sr}
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
