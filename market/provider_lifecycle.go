package market

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// An execution's life on the provider, read top to bottom (the machine is
// in state.go):
//
//  1. readAnnouncements → answer: decide bids (reserving capacity or a
//     queue place in admission) or declines with the reason, and sends it.
//  2. handleAward → accept: only against a live reservation for that
//     requestor, task and attempt; persists the record (accepted) and
//     starts run.
//  3. run: prepare (image, inputs, volumes), wait for a slot when queued,
//     markRunning (running), run the workload, collect outputs, sign the
//     receipt and put the result in the outbox (done).
//  4. deliver: send the result until the requestor acknowledges it
//     (delivered) or refuses it for good / OutboxTTL passes (abandoned).
//
// handleCancel stops a run (or lets go of a bid's reservation); heartbeat
// tells the requestor the provider still holds the task, and stops the run
// when the requestor says it is no longer ours.

func (p *Provider) readAnnouncements() {
	defer p.wg.Done()
	for {
		msg, err := p.sub.Next(p.ctx)
		if err != nil {
			return
		}
		from := msg.GetFrom()
		if from == p.h.ID() {
			continue
		}
		ann, why := p.authorizeAnnounce(from, msg.Data)
		if ann == nil {
			if why != "" {
				p.log.Debug("announcement refused", "peer", from, "reason", why)
			}
			continue
		}
		p.goAnswer(from, ann)
	}
}

// goAnswer answers one announcement in its own goroutine, within bounds:
// at most maxAnswersPerRequestor to one requestor, maxAnswering in all to
// requestors this provider is connected to (waited for: the reader slows
// down rather than dropping an honest burst), and maxDialing to requestors
// it must dial first (dropped when full, so announcements from peers that
// cannot be reached never hold up the others).
func (p *Provider) goAnswer(requestor peer.ID, ann *wire.Announce) {
	done, ok := p.takeInflight(requestor)
	if !ok {
		p.log.Debug("announcement dropped: too many answers in flight to its requestor", "peer", requestor, "task", ann.TaskID)
		return
	}
	slots := p.answering
	if p.h.Network().Connectedness(requestor) != network.Connected {
		slots = p.dialing
		select {
		case slots <- struct{}{}:
		default:
			done()
			p.log.Debug("announcement dropped: too many requestors being dialed", "peer", requestor, "task", ann.TaskID)
			return
		}
	} else {
		select {
		case slots <- struct{}{}:
		case <-p.ctx.Done():
			done()
			return
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer done()
		defer func() { <-slots }()
		p.answer(requestor, ann)
	}()
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
	if why := machineDecline(&p.cfg.Hardware, req.Labels, req.Machine); why != "" {
		bid.Decline = why
		return bid
	}
	res := normalize(req.Resources)
	if len(p.cfg.GPUs) > 0 {
		if why := gpuDecline(p.cfg.GPUs, res.GPUs, req.GPU); why != "" {
			bid.Decline = why
			return bid
		}
	} else if req.GPU != nil && res.GPUs <= p.cfg.Capacity.GPUs {
		bid.Decline = "this provider does not know its GPUs' types (it offers a GPU count only): it cannot meet " + req.GPU.String()
		return bid
	}
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
	who := peerIDs.String(requestor)
	key := execKey(who, ann.TaskID, ann.Attempt)
	// Busy: a place in the queue, with a later start, rather than a
	// decline the requestor can only answer by asking again.
	ttl := p.reservationTTL(who, ann)
	startMS, why := p.admit.reserve(key, who, res, ttl)
	if why != "" {
		bid.Decline, bid.Busy = why, true
		return bid
	}
	if startMS == 0 {
		// Capacity now: the GPUs that meet the task are given to the bid
		// (a queue place gets them when its turn comes).
		if _, why := p.admit.assignGPUs(key, res.GPUs, req.GPU); why != "" {
			p.admit.release(key)
			bid.Decline, bid.Busy = why, true
			return bid
		}
	}
	bid.StartMS = startMS
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTaskTimeout
	}
	bid.MaxCost = p.cfg.Price * res.CPUs * timeout.Seconds()
	bid.ReservationMS = ttl.Milliseconds()
	return bid
}

// newcomerAwardGrace is how long after its bid deadline a requestor that
// is new to this provider (admission.vouch) may still award what the provider reserved.
const newcomerAwardGrace = 2 * time.Second

// reservationTTL is how long a bid for ann holds what it reserves: the
// provider's ReservationTTL for a known customer; for a newcomer only
// until the announcement's bid deadline plus newcomerAwardGrace (an honest
// requestor awards right after its deadline), so that bids a Sybil accepts
// and never awards hold capacity for as short a time as can be.
func (p *Provider) reservationTTL(requestor string, ann *wire.Announce) time.Duration {
	ttl := p.cfg.ReservationTTL
	if p.admit.isKnown(requestor) {
		return ttl
	}
	return max(min(ttl, time.Until(time.UnixMilli(ann.BidDeadline))+newcomerAwardGrace), newcomerAwardGrace)
}

// answer sends the bid or decline for one announcement to its requestor.
// It connects first, holding nothing: capacity is reserved (decide) only
// once the requestor is reachable, and given back when the bid is not
// taken.
func (p *Provider) answer(requestor peer.ID, ann *wire.Announce) {
	if p.h.Network().Connectedness(requestor) != network.Connected {
		ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
		_, err := p.h.Network().DialPeer(ctx, requestor)
		cancel()
		if err != nil {
			p.log.Debug("requestor unreachable; not answering", "peer", requestor, "task", ann.TaskID, "err", err)
			return
		}
	}
	bid := p.decide(requestor, ann)
	key := execKey(peerIDs.String(requestor), ann.TaskID, ann.Attempt)
	var ack wire.BidAck
	ctx, cancel := context.WithTimeout(p.ctx, bidTimeout)
	defer cancel()
	err := stream.Request(ctx, p.h, requestor, wire.ProtoBid, &bid, wire.MaxAckSize, &ack)
	if bid.Decline != "" {
		return
	}
	if err != nil || !ack.OK {
		p.admit.release(key)
		p.log.Debug("bid not taken", "task", ann.TaskID, "err", err, "reason", ack.Reason)
	}
}

// askTimeout bounds reading an ask, and then answering it and reading the
// requestor's ack; an honest requestor sends both at once.
const askTimeout = 5 * time.Second

// handleAsk answers an announcement a requestor sent to this provider
// alone (a targeted auction): the bid or decline goes back on the same
// stream, with no dial and no second stream, and the requestor's ack
// follows on it once its auction decided: OK for the winner, "lost" (or
// nothing within askTimeout) for the others, whose reservations are then
// given back here, without a cancel stream. Asks count against the same per-peer rate and the
// same bounds on answers in flight as gossiped announcements; over those
// bounds the answer is a busy decline, never a wait.
func (p *Provider) handleAsk(s network.Stream) {
	defer s.Close()
	from, body, ok := stream.Accept(s, p.annLimit, askTimeout, wire.MaxAnnounceSize, p.log, "ask")
	if !ok {
		return
	}
	if from == p.h.ID() {
		s.Reset()
		return
	}
	ann, why := p.authorizeAsk(from, body)
	if ann == nil {
		if why == "" {
			why = "not for this provider"
		}
		p.log.Debug("ask refused", "peer", from, "reason", why)
		_ = stream.WriteMsg(s, &wire.Bid{TaskID: "refused", Decline: "ask refused: " + why})
		return
	}
	release, busy := p.takeAnswerSlot(from)
	if busy != "" {
		_ = stream.WriteMsg(s, &wire.Bid{TaskID: ann.TaskID, Attempt: ann.Attempt, Price: p.cfg.Price, Decline: busy, Busy: true})
		return
	}
	defer release()
	bid := p.decide(from, ann)
	// The requestor's ack is its verdict, sent once its auction decided
	// (within askTimeout of the bid).
	_ = s.SetDeadline(time.Now().Add(askTimeout))
	err := stream.WriteMsg(s, &bid)
	if bid.Decline != "" {
		return
	}
	var ack wire.BidAck
	if err == nil {
		err = stream.ReadMsg(stream.NewReader(s), wire.MaxAckSize, &ack)
	}
	if err != nil || !ack.OK {
		// The ack comes once the auction decided: a bid that lost lets go
		// of its reservation here. Only a reservation: an award claimed
		// meanwhile (its ack lost in a reset) keeps running.
		p.admit.releaseReservation(execKey(peerIDs.String(from), ann.TaskID, ann.Attempt), peerIDs.String(from))
		p.log.Debug("asked bid not taken", "task", ann.TaskID, "err", err, "reason", ack.Reason)
	}
}

// takeAnswerSlot takes one of the answers in flight to requestor and one
// of all answers in flight, without waiting: it returns the release, or
// why there is no slot now.
func (p *Provider) takeAnswerSlot(requestor peer.ID) (func(), string) {
	done, ok := p.takeInflight(requestor)
	if !ok {
		return nil, "too many answers in flight to this requestor"
	}
	select {
	case p.answering <- struct{}{}:
	default:
		done()
		return nil, "too many answers in flight"
	}
	return func() { <-p.answering; done() }, ""
}

// takeInflight counts one more answer in flight to requestor, unless it
// has maxAnswersPerRequestor already; done counts it out.
func (p *Provider) takeInflight(requestor peer.ID) (done func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight[requestor] >= maxAnswersPerRequestor {
		return nil, false
	}
	p.inflight[requestor]++
	return func() {
		p.mu.Lock()
		if p.inflight[requestor]--; p.inflight[requestor] <= 0 {
			delete(p.inflight, requestor)
		}
		p.mu.Unlock()
	}, true
}

func (p *Provider) handleAward(s network.Stream) {
	defer s.Close()
	from, body, ok := stream.Accept(s, p.streamLimit, 10*time.Second, wire.MaxAwardSize, p.log, "award")
	if !ok {
		return
	}
	reply := p.accept(from, body)
	_ = stream.WriteMsg(s, &reply)
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
	who := peerIDs.String(from)
	key := execKey(who, award.TaskID, award.Attempt)
	if refusal := p.authorizeAward(from, key); refusal != nil {
		p.log.Debug("award refused", "peer", from, "task", award.TaskID, "reason", refusal.Reason)
		return *refusal
	}
	if why := p.imageRefused(award.Spec); why != "" {
		p.admit.release(key)
		return wire.AwardReply{Code: wire.CodeRefused, Reason: why}
	}
	// The award's spec may ask more than the announcement the bid was for.
	if why := machineDecline(&p.cfg.Hardware, award.Spec.Labels, award.Spec.Machine); why != "" {
		p.admit.release(key)
		return wire.AwardReply{Code: wire.CodeRefused, Reason: why}
	}
	// No free slot now: it runs as soon as one frees, in order.
	queued, why := p.admit.claim(key, who, normalize(award.Spec.Resources))
	if why != "" {
		p.admit.release(key)
		return wire.AwardReply{Code: wire.CodeTooMany, Reason: why}
	}
	now := time.Now().UTC()
	rec := &ExecRecord{
		Key: key, TaskID: award.TaskID, Attempt: award.Attempt, Requestor: who,
		Spec: award.Spec, State: ExecAccepted, CreatedAt: now, UpdatedAt: now,
	}
	if err := p.store.Create(key, rec); err != nil {
		p.admit.release(key)
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
		p.admit.release(rec.Key)
	}()
	var cps *checkpointState
	if rec.Spec.Checkpoint != nil {
		cps = newCheckpointState()
	}
	beatCtx, stopBeats := context.WithCancel(ctx)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.heartbeat(beatCtx, rec, cps)
	}()
	defer stopBeats()

	started := time.Now().UTC()
	rep := &wire.Report{TaskID: rec.TaskID, Attempt: rec.Attempt, State: wire.ExecCompleted}
	res := &wire.Result{ExitCode: -1, StartedAt: started}
	var out *executor.Result
	// However slowly a peer sends the image and inputs, preparing holds
	// the award's capacity (and an image's lock) for PrepareTimeout at most.
	pctx, pcancel := context.WithTimeoutCause(ctx, p.cfg.PrepareTimeout,
		fmt.Errorf("fetching the image and inputs took longer than %s", p.cfg.PrepareTimeout))
	pr, err := p.prepare(pctx, ex, rec)
	if err != nil && pctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", context.Cause(pctx), err)
	}
	pcancel()
	if pr != nil {
		defer pr.cleanup(p.log)
	}
	p.log.Debug("prepared", "task", rec.TaskID, "peer", rec.Requestor, "queued", queued, "ms", time.Since(started).Milliseconds(), "err", err)
	if err == nil && queued {
		// Image and inputs are in place; now wait for a free slot.
		need := normalize(rec.Spec.Resources)
		waited := time.Now()
		p.log.Debug("waiting for a slot", "task", rec.TaskID, "admission", p.admit.String())
		err = p.admit.waitTurn(ctx, rec.Key, rec.Requestor, need, rec.Spec.GPU)
		p.log.Debug("turn came", "task", rec.TaskID, "waited_ms", time.Since(waited).Milliseconds(), "err", err)
	}
	if err == nil {
		res.FetchMS = pr.fetchMS
		// Its GPUs are its own, by device id, until release (run's exit).
		var gpuWhy string
		pr.spec.Limits.GPUDevices, gpuWhy = p.admit.assignGPUs(rec.Key, normalize(rec.Spec.Resources).GPUs, rec.Spec.GPU)
		if gpuWhy != "" {
			err = fmt.Errorf("%s: %w", gpuWhy, errGPUsTaken)
		}
	}
	if err == nil {
		// Only now is the task running: fetching its image and inputs is
		// reported apart and does not count against its timeout.
		workloadEnded := p.markRunning(ctx, rec)
		ranFrom := time.Now()
		defer func() { p.admit.ran(time.Since(ranFrom)) }()
		// Its output is kept as it is written, for the requestor's live
		// logs (logs.go).
		runLog := p.logs.open(rec.Key)
		pr.spec.Log = runLog.write
		// Its checkpoint directory is snapshot while it runs
		// (checkpoint.go).
		cpCtx, stopCheckpoints := context.WithCancel(ctx)
		cpDone := make(chan struct{})
		if cps != nil {
			go func() {
				defer close(cpDone)
				p.checkpointLoop(cpCtx, rec, pr, cps)
			}()
		} else {
			close(cpDone)
		}
		out, res.Stages, err = p.runWorkload(ctx, ex, rec, pr, res)
		workloadEnded()
		stopCheckpoints()
		<-cpDone
		p.logs.close(rec.Key, runLog)
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
		res.Retryable = errors.Is(err, executor.ErrImageNotFound) || errors.Is(err, executor.ErrUnavailable) || errors.Is(err, errGPUsTaken)
		if p.ctx.Err() != nil && !errors.Is(err, errCanceled) {
			res.Error, res.Retryable = "the provider shut down while running the task", true
		}
	}
	rep.Result = res
	p.sign(rec, res)
	// rec is the record as accepted; unless the running state was written
	// since, the result is written without reading it again.
	saved, perr := p.updateHeld(rec, func(r *ExecRecord) error {
		r.Report = rep
		return r.Transition(ExecDone)
	})
	if perr != nil {
		p.log.Error("persist result", "task", rec.TaskID, "err", perr)
		return
	}
	p.log.Info("task finished", "task", rec.TaskID, "exit", res.ExitCode, "err", res.Error, "wall_ms", res.Usage.WallMS)
	p.shareOutputs(saved) // before the requestor hears of them
	p.goDeliver(saved)
}

// markRunning persists the running state and tells the requestor, best
// effort: the result report supersedes it.
func (p *Provider) markRunning(ctx context.Context, rec *ExecRecord) (ended func()) {
	requestor, _ := peerIDs.Decode(rec.Requestor)
	// Its content arrived and its workload starts: the requestor has done
	// real business here, as one that paid has (admission.vouch). A flood
	// of awards whose content never arrives never gets this far.
	p.admit.vouch(rec.Requestor, time.Now())
	// The running state is recorded and reported only once the workload
	// has run for runningReportDelay: a shorter run reports its result
	// alone (accepted → done, awarded → completed), one synced write, one
	// stream and one requestor write fewer. A restart recovers accepted
	// and running executions alike.
	timer := time.NewTimer(runningReportDelay)
	stop := make(chan struct{})
	var mu sync.Mutex // orders the running write before the result's
	done := false
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		select {
		case <-timer.C:
		case <-stop:
			timer.Stop()
			return
		case <-ctx.Done():
			timer.Stop()
			return
		}
		mu.Lock()
		if done {
			mu.Unlock()
			return
		}
		_, err := p.store.Update(rec.Key, func(r *ExecRecord) error {
			return r.Transition(ExecRunning)
		})
		mu.Unlock()
		if err != nil {
			p.log.Error("persist running", "task", rec.TaskID, "err", err)
			return
		}
		var ack wire.Ack
		_ = stream.Request(ctx, p.h, requestor, wire.ProtoReport, &wire.Report{TaskID: rec.TaskID, Attempt: rec.Attempt, State: wire.ExecRunning}, wire.MaxAckSize, &ack)
	}()
	var once sync.Once
	return func() {
		mu.Lock()
		done = true
		mu.Unlock()
		once.Do(func() { close(stop) })
	}
}

// runningReportDelay is how long a workload runs before its provider
// records and reports it running (markRunning).
const runningReportDelay = 250 * time.Millisecond

// heartbeat tells the requestor every Heartbeat that this provider still
// holds the task, until ctx ends (the result is ready or the task stopped).
func (p *Provider) heartbeat(ctx context.Context, rec *ExecRecord, cps *checkpointState) {
	requestor, _ := peerIDs.Decode(rec.Requestor)
	t := time.NewTicker(p.cfg.Heartbeat)
	defer t.Stop()
	var fresh chan struct{} // a new checkpoint is told at once
	if cps != nil {
		fresh = cps.fresh
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-fresh:
		}
		rctx, cancel := context.WithTimeout(ctx, p.cfg.Heartbeat)
		var ack wire.Ack
		beat := &wire.Report{TaskID: rec.TaskID, Attempt: rec.Attempt, State: wire.ExecHeartbeat, Checkpoint: cps.ref()}
		err := stream.Request(rctx, p.h, requestor, wire.ProtoReport, beat, wire.MaxAckSize, &ack)
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
	requestor, err := peerIDs.Decode(rec.Requestor)
	if err != nil || rec.Report == nil {
		return
	}
	pause := 250 * time.Millisecond
	ttl := p.cfg.OutboxTTL
	if !p.admit.isKnown(rec.Requestor) {
		// A requestor new to this provider gets its result kept
		// and retried for newcomerOutboxTTL at most: awards from fresh
		// identities that never collect cannot hold a delivery loop a day.
		ttl = min(ttl, newcomerOutboxTTL)
	}
	for p.ctx.Err() == nil {
		if time.Since(rec.UpdatedAt) > ttl {
			p.log.Warn("giving up delivering a result", "task", rec.TaskID, "peer", requestor)
			p.settleOutbox(rec, ExecAbandoned, nil)
			return
		}
		p.mu.Lock()
		connected := p.connCh
		p.mu.Unlock()
		var ack wire.Ack
		err := stream.Request(p.ctx, p.h, requestor, wire.ProtoReport, rec.Report, wire.MaxAckSize, &ack)
		if err == nil && ack.OK {
			p.settleOutbox(rec, ExecDelivered, p.earned(rec, ack.Countersig))
			return
		}
		if err == nil {
			p.log.Warn("result refused", "task", rec.TaskID, "code", ack.Code, "reason", ack.Reason)
			if ack.Code.Final() {
				p.settleOutbox(rec, ExecAbandoned, nil)
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

// newcomerOutboxTTL bounds how long the result of a requestor that never
// did no business with this provider before is kept and retried.
const newcomerOutboxTTL = time.Hour

// settleOutbox ends an outbox entry: delivered (acknowledged) or abandoned
// (refused for good, or past OutboxTTL). earned, when not nil, is the
// ledger entry of the countersigned receipt (see earned): where the stores
// allow it, it is written in the same transaction as the settled state,
// else just before it (as a write of its own, which the settled state
// never precedes).
func (p *Provider) settleOutbox(rec *ExecRecord, to ExecState, earned *LedgerEntry) {
	settle := func(r *ExecRecord) error { return r.Transition(to) }
	if earned != nil {
		le, okL := p.cfg.Ledger.(ledgerEntries)
		es, okE := p.store.(heldAlsoUpdater)
		if okL && okE {
			e, err := le.Entry(earned.Key, earned)
			if err == nil {
				// rec is the record as the result was written: settled
				// without reading it again unless it changed since.
				_, err = es.UpdateHeldAlso(rec.Key, rec, settle, e)
			}
			if err != nil {
				p.log.Error("persist outbox entry and earned receipt", "task", rec.TaskID, "state", to, "err", err)
			}
			return
		}
		if err := p.cfg.Ledger.Put(earned.Key, earned); err != nil {
			p.log.Error("record earned", "task", rec.TaskID, "err", err)
		}
	}
	if _, err := p.updateHeld(rec, settle); err != nil {
		p.log.Error("persist outbox entry", "task", rec.TaskID, "state", to, "err", err)
	}
}

func (p *Provider) handleCancel(s network.Stream) {
	defer s.Close()
	from, body, ok := stream.Accept(s, p.streamLimit, 10*time.Second, wire.MaxAckSize, p.log, "cancel")
	if !ok {
		return
	}
	c, err := wire.Decode[wire.Cancel](body)
	if err != nil {
		_ = stream.WriteMsg(s, &wire.Ack{Code: wire.CodeBadRequest, Reason: err.Error()})
		return
	}
	key := execKey(peerIDs.String(from), c.TaskID, c.Attempt)
	p.mu.Lock()
	cancel := p.running[key]
	p.mu.Unlock()
	if cancel == nil {
		// A bid that lost (or a task canceled before its award): give back
		// the capacity reserved for it now rather than at the TTL.
		if p.admit.releaseReservation(key, peerIDs.String(from)) {
			_ = stream.WriteMsg(s, &wire.Ack{OK: true, Reason: "reservation released"})
			return
		}
		p.log.Debug("cancel refused: nothing of this peer's runs or is reserved under that task", "peer", from, "task", c.TaskID)
		_ = stream.WriteMsg(s, &wire.Ack{Code: wire.CodeUnknownTask, Reason: "not running here"})
		return
	}
	cancel(errCanceled)
	_ = stream.WriteMsg(s, &wire.Ack{OK: true})
}

// machineDecline says why a provider whose machine is hw does not take a
// task with these label and machine requirements, or "".
func machineDecline(hw *wire.Hardware, labels map[string]string, m *wire.MachineRequirements) string {
	if why := wire.LabelsUnmet(hw.Labels, labels); why != "" {
		return "this provider has " + why
	}
	if why := wire.MachineUnmet(hw, m); why != "" {
		return "this provider's machine has " + why
	}
	return ""
}
