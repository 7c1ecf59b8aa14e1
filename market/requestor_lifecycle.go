package market

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// A task's life on the requestor, read top to bottom: drive takes a task
// from one state to the next (see state.go for the machine); each step is a
// method below, in the order a task meets them. Messages from providers
// (bids, reports) arrive through the handlers in requestor_handlers.go,
// which turn them into events; apply and step (requestor_events.go) make
// the move each event means.

// drive takes one task through its states until it is terminal or the
// requestor closes. Each turn loads the task as last written (the
// driver's snapshot, see driven) and runs the step of its state; a step
// returns once it moved the task (or saw it moved). A step whose write
// was refused because the task had moved is followed by a read of the
// store: the snapshot may not hold that move yet.
//
//	pending   waitForStart (start time, volumes), then runAuction
//	bidding   runAuction: announce, collect bids, award → awarded, or
//	          noBids → bidding again | failed
//	awarded,  awaitResult: a report's event moves it → running | verifying |
//	running   completed | bidding | failed; silence or the deadline is an
//	          evLost event → bidding
//	verifying fetchOutputs → completed | failed
//
// A group parent (redundancy, subtasks) is driven by driveGroup (group.go).
func (r *Requestor) drive(id string) {
	reread := false
	for r.ctx.Err() == nil {
		load := r.load
		if reread {
			load, reread = r.reload, false
		}
		t, err := load(id)
		if err != nil {
			r.log.Error("load task", "task", id, "err", err)
			return
		}
		if t.State.IsTerminal() {
			return
		}
		switch {
		case t.Group != nil:
			if err = r.driveGroup(t); err == nil {
				return
			}
		case t.State == StatePending:
			if t, err = r.waitForStart(t); err == nil && r.ctx.Err() == nil {
				err = r.runAuction(t)
			}
		case t.State == StateBidding:
			err = r.runAuction(t)
		case (t.State == StateAwarded || t.State == StateRunning) && t.Result != nil:
			// Stored by a version without the verifying state.
			_, err = r.update(id, move(StateVerifying, nil, nil))
		case t.State == StateAwarded, t.State == StateRunning:
			err = r.awaitResult(t)
		case t.State == StateVerifying:
			err = r.fetchOutputs(t)
		}
		if err != nil && r.ctx.Err() == nil {
			if errors.Is(err, ErrInvalidTransition) {
				reread = true
				continue // someone else (cancel, a report) moved it: look again
			}
			r.log.Error("task driver", "task", id, "err", err)
			if _, ferr := r.update(id, move(StateFailed, nil, func(t *Task) {
				t.Reason = "internal error: " + err.Error()
			})); ferr != nil && !errors.Is(ferr, ErrInvalidTransition) {
				r.log.Error("mark task failed", "task", id, "err", ferr)
			}
			return
		}
	}
}

// startDriver runs drive for a task unless one already runs.
func (r *Requestor) startDriver(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drivers[id] != nil || r.ctx.Err() != nil {
		return
	}
	r.drivers[id] = &driven{}
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

// waitForStart holds a task until its start time, then resolves its
// volumes. It returns the task as it stands; when the task was settled
// meanwhile (canceled) or the requestor is closing, the caller's loop sees
// that.
func (r *Requestor) waitForStart(t *Task) (*Task, error) {
	if at := startTime(t); t.Attempt == 0 && time.Until(at) > 0 {
		reason := "scheduled for " + at.Format(time.RFC3339)
		if t.Reason != reason {
			var err error
			if t, err = r.update(t.ID, edit([]State{StatePending}, func(t *Task) { t.Reason = reason })); err != nil {
				return t, err
			}
		}
		ch, stop, err := r.Watch(t.ID)
		if err != nil {
			return t, err
		}
		timer := time.NewTimer(time.Until(at))
		defer timer.Stop()
	wait:
		for {
			select {
			case <-r.ctx.Done():
				stop()
				return t, nil
			case cur := <-ch:
				if cur.State.IsTerminal() {
					stop()
					return cur, ErrInvalidTransition
				}
			case <-timer.C:
				break wait
			}
		}
		stop()
		if t, err = r.Get(t.ID); err != nil {
			return t, err
		}
		r.log.Info("scheduled task due", "task", t.ID)
	}
	return r.resolveVolumes(t)
}

// runAuction announces the task, collects bids and awards it. It returns
// with the task awarded, failed, or back to bidding for another attempt.
func (r *Requestor) runAuction(t *Task) error {
	if n := failures(t); n > t.Spec.RetryBudget() {
		_, err := r.update(t.ID, move(StateFailed, nil, func(t *Task) {
			t.Reason = fmt.Sprintf("retry budget spent after %d failed executions: %s", n, t.Reason)
		}))
		return err
	}
	if time.Since(queuedSince(t)) > DefaultQueueTimeout {
		_, err := r.update(t.ID, move(StateFailed, nil, func(t *Task) {
			t.Reason = fmt.Sprintf("not started within %s: %s", DefaultQueueTimeout, t.Reason)
		}))
		return err
	}
	attempt := t.Attempt + 1
	t, err := r.update(t.ID, move(StateBidding, []State{StatePending, StateBidding}, func(t *Task) {
		t.Attempt = attempt
		t.Reason = "waiting for bids"
	}))
	if err != nil {
		return err
	}
	excluded := failedProviders(t)
	// A provider that failed this task may still bid (its bid is recorded
	// as skipped, for "why is my task waiting"); one the spec excludes may not.
	notAllowed := map[string]bool{}
	for _, p := range t.Spec.Exclude {
		notAllowed[p] = true
	}
	a := &auction{attempt: attempt, bids: make(chan bidFrom, maxBidsPerAuction), pinned: t.Spec.Provider, excluded: notAllowed, seen: map[peer.ID]bool{}, image: t.Spec.Image, verdicts: map[peer.ID]chan *wire.BidAck{}}
	r.mu.Lock()
	r.auctions[t.ID] = a
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.auctions[t.ID] == a {
			delete(r.auctions, t.ID)
		}
		r.mu.Unlock()
		r.lostAll(a, "the auction ended") // every ask stream still open is answered
	}()
	ann := wire.Announce{
		Version: wire.Version, TaskID: t.ID, Attempt: attempt, Requestor: peerIDs.String(r.h.ID()),
		Req: wire.RequirementsOf(t.Spec),
	}

	// Targeted first: ask the best few candidates the pool knows
	// (targeted.go); announce to all only when it knows none, or when
	// none of those asked answered at all.
	var cands []Candidate
	if r.cfg.Candidates != nil {
		cands = r.cfg.Candidates(ann.Req)
	}
	if len(cands) < r.cfg.Fanout {
		r.lookupMore(ann.Req, r.cfg.Fanout)
	}
	var got []bidFrom
	var unanswered map[peer.ID]error
	head := ""
	if ranked := r.chooseCandidates(t, cands, excluded, r.cfg.Fanout); len(ranked) > 0 {
		got, unanswered = r.askWaves(t, a, ann, ranked, r.cfg.Fanout)
		asked := map[peer.ID]struct{}{}
		answered := map[peer.ID]bool{}
		for _, b := range got {
			asked[b.from], answered[b.from] = struct{}{}, true
		}
		for p := range unanswered {
			asked[p] = struct{}{}
		}
		r.noteSilent(asked, answered)
		head = fmt.Sprintf("asked %d of %d candidates", len(asked), len(ranked))
		r.log.Debug("asked candidates", "task", t.ID, "attempt", attempt, "asked", len(asked), "candidates", len(ranked), "answers", len(got))
	}
	if len(got) == 0 {
		var err error
		if got, head, err = r.announce(t, a, ann, excluded, head); err != nil || got == nil && head == "" {
			return err
		}
	}
	// Close the auction before awarding: a bid that comes now is answered
	// "auction closed" (its provider lets go of what it reserved) rather
	// than acknowledged and left unread, holding its reservation for its
	// whole TTL. Bids already taken are awarded with the rest.
	r.mu.Lock()
	if r.auctions[t.ID] == a {
		delete(r.auctions, t.ID)
	}
	r.mu.Unlock()
	answered := map[peer.ID]bool{}
	for _, b := range got {
		answered[b.from] = true
	}
drain:
	for {
		select {
		case b := <-a.bids:
			if !answered[b.from] {
				answered[b.from] = true
				got = append(got, b)
			}
		default:
			break drain
		}
	}
	return r.award(t, a, head, got, unanswered, excluded)
}

// announce is the untargeted auction: it gossips the announcement to
// every provider on the task topic and collects bids until every provider
// it expects answered or the bid window closed. It returns the answers
// and the head of the bid summary; when no provider is reachable at all it
// fails the task and returns neither (with the update's error).
func (r *Requestor) announce(t *Task, a *auction, ann wire.Announce, excluded map[string]bool, asked string) ([]bidFrom, string, error) {
	expected, known := r.waitForProviders(t, excluded)
	if len(expected) == 0 && asked != "" && time.Since(queuedSince(t)) < silentPatience {
		// The pool knows candidates, none answered, and nobody is on the
		// topic: they may be reachable again in a moment (a relay
		// reservation that changed their addresses, a restart). This
		// attempt ends without bids and the task is asked again.
		return nil, asked + ", none answered", nil
	}
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
		if asked != "" {
			why += "; " + asked + ", none answered"
		}
		_, err := r.update(t.ID, move(StateFailed, nil, func(t *Task) { t.Reason = why }))
		return nil, "", err
	}

	deadline := time.Now().Add(r.cfg.BidWindow)
	ann.BidDeadline = deadline.UnixMilli()
	data, err := json.Marshal(&ann)
	if err != nil {
		return nil, "", fmt.Errorf("encode announce: %w", err)
	}
	if err := r.topic.Publish(r.ctx, data); err != nil {
		return nil, "", fmt.Errorf("publish announce: %w", err)
	}
	r.log.Debug("announced", "task", t.ID, "attempt", ann.Attempt, "providers", len(expected))

	var got []bidFrom
	answered := map[peer.ID]bool{}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	// Providers this requestor never heard from (new ones, and every
	// identity that only advertises) are waited for only newcomerGrace
	// beyond the last answer of those it has heard from, when there are
	// any: an honest newcomer answers within milliseconds, an advert from
	// a Sybil costs an auction no more than the grace.
	heard := r.heardOf(expected)
	waiting, graceStarted := len(heard), false
collect:
	for len(answered) < len(expected) {
		if !graceStarted && len(heard) > 0 && waiting == 0 {
			graceStarted = true
			if time.Until(deadline) > newcomerGrace {
				timer.Reset(newcomerGrace)
			}
		}
		select {
		case <-r.ctx.Done():
			return nil, "", r.ctx.Err()
		case <-timer.C:
			break collect
		case b := <-a.bids:
			if answered[b.from] {
				continue
			}
			answered[b.from] = true
			if heard[b.from] {
				waiting--
			}
			got = append(got, b)
			if _, ok := expected[b.from]; !ok {
				expected[b.from] = struct{}{}
			}
		}
	}
	r.noteSilent(expected, answered)
	head := fmt.Sprintf("%d providers known", len(expected))
	if asked != "" {
		head = asked + ", none answered; announced to all: " + head
	}
	return got, head, nil
}

// silentPatience is how long after it was queued a task whose candidates
// all stay silent (with no provider on the task topic) is asked again
// rather than failed.
const silentPatience = 30 * time.Second

// maxSilentAuctions is how many auctions in a row a known provider may
// leave unanswered before the requestor stops waiting for it (it may still
// bid, and is waited for again once it does): an advert costs nothing, so
// a peer that advertises and never answers (a Sybil, a provider gone
// without a word) must not hold every auction open for its whole window.
const maxSilentAuctions = 2

// maxSilentBook bounds the providers the silence book remembers.
const maxSilentBook = 1 << 14

// newcomerGrace is how long an auction waits for providers the requestor
// never heard from once every provider it has heard from answered.
const newcomerGrace = 150 * time.Millisecond

// heardOf returns the expected providers that answered an auction of this
// requestor before.
func (r *Requestor) heardOf(expected map[peer.ID]struct{}) map[peer.ID]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[peer.ID]bool{}
	for p := range expected {
		if r.heard[p] {
			out[p] = true
		}
	}
	return out
}

// noteSilent records which of the expected providers answered an auction
// (and, in heard, which ever did).
func (r *Requestor) noteSilent(expected map[peer.ID]struct{}, answered map[peer.ID]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range expected {
		if answered[p] {
			delete(r.silent, p)
			if !r.heard[p] {
				if len(r.heard) >= maxSilentBook {
					clear(r.heard)
				}
				r.heard[p] = true
			}
			continue
		}
		if len(r.silent) >= maxSilentBook {
			clear(r.silent) // forget rather than grow: the next auctions relearn
		}
		r.silent[p]++
	}
}

// dropSilent removes from expected the providers that left their last
// maxSilentAuctions auctions unanswered; when that would leave none it
// keeps them all (they may be restarting).
func (r *Requestor) dropSilent(expected map[peer.ID]struct{}) map[peer.ID]struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := make(map[peer.ID]struct{}, len(expected))
	for p := range expected {
		if r.silent[p] < maxSilentAuctions {
			kept[p] = struct{}{}
		}
	}
	if len(kept) == 0 {
		return expected
	}
	return kept
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
			return r.dropSilent(expected), len(all)
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

// expectedPeers returns every peer on the task topic: an announcement
// that was not targeted expects an answer from each.
func (r *Requestor) expectedPeers(*Task) []peer.ID {
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
		if e.State == AttemptFailed {
			out[e.Provider] = true
		}
	}
	return out
}

// failures counts the executions of a task that failed.
func failures(t *Task) int {
	n := 0
	for _, e := range t.Executions {
		if e.State == AttemptFailed {
			n++
		}
	}
	return n
}

// award records the bids of an attempt, picks the best acceptable one and
// sends it the award, falling back to the next bid on a decline.
func (r *Requestor) award(t *Task, a *auction, head string, got []bidFrom, unanswered map[peer.ID]error, excluded map[string]bool) error {
	attempt := a.attempt
	records := make([]BidRecord, 0, len(got)+len(unanswered))
	for _, b := range got {
		rec := BidRecord{
			Provider: peerIDs.String(b.from), Attempt: attempt, Price: b.bid.Price, MaxCost: b.bid.MaxCost,
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
	now := time.Now().UTC()
	for p, err := range unanswered {
		why := "asked, no answer"
		if err != nil {
			why += ": " + err.Error()
		}
		records = append(records, BidRecord{Provider: peerIDs.String(p), Attempt: attempt, Silent: true, ReceivedAt: now, Outcome: why})
	}
	var rep map[string]Reputation
	if t.Spec.Strategy == StrategyReputation {
		bidders := make([]string, len(records))
		for i, b := range records {
			bidders[i] = b.Provider
		}
		rep = r.rep.of(bidders...)
	}
	order, why := rankBids(records, t.Spec.Strategy, rep)
	summary := bidSummary(head, records, t.Spec.MaxPrice)
	// The answers are stored with the attempt's first write that follows
	// (the first award, or the end without one): one write fewer per task.
	unstored := records
	storeBids := func(t *Task) {
		t.Bids = append(t.Bids, unstored...)
	}
	var err error
	for k, i := range order {
		rec := records[i]
		pid, _ := peerIDs.Decode(rec.Provider)
		now := time.Now().UTC()
		t, err = r.update(t.ID, move(StateAwarded, []State{StateBidding}, func(t *Task) {
			storeBids(t)
			t.Provider = rec.Provider
			t.Reason = fmt.Sprintf("awarded to %s: %s, of %d acceptable bids; preparing image and inputs", short(rec.Provider), why, len(order))
			t.Executions = append(t.Executions, Execution{Provider: rec.Provider, Attempt: attempt, State: AttemptAwarded, AwardedAt: now})
			setBidOutcome(t, rec.Provider, attempt, "won: "+why)
			// The bids not tried yet lose to this one, unless it declines
			// (then the next award writes theirs again): written with the
			// award, so a task that ends at once keeps them, at no extra
			// write.
			for _, j := range order[k+1:] {
				setBidOutcome(t, records[j].Provider, attempt, fmt.Sprintf("lost to %s (%s)", short(rec.Provider), why))
			}
		}))
		if err != nil {
			return err
		}
		unstored = nil
		// The provider fetches the image and inputs right after it
		// accepts: they must be shared with it before (share.go).
		r.share(t, rec.Provider)
		var reply wire.AwardReply
		err := stream.Request(r.ctx, r.h, pid, wire.ProtoAward, &wire.Award{TaskID: t.ID, Attempt: attempt, Spec: awardSpec(t)}, wire.MaxAckSize, &reply)
		if err == nil && reply.Accepted {
			observe(r.cfg.Observer).Awarded()
			r.log.Debug("awarded", "task", t.ID, "peer", pid)
			// Losers asked directly hear it on their ask streams; those
			// that bid on gossip get a cancel stream.
			r.verdict(a, pid, &wire.BidAck{OK: true})
			var losers []string
			for _, j := range order {
				if o := records[j]; o.Provider != rec.Provider {
					lost, _ := peerIDs.Decode(o.Provider)
					if !r.verdict(a, lost, &wire.BidAck{Code: wire.CodeAuctionClosed, Reason: "lost to " + short(rec.Provider)}) {
						losers = append(losers, o.Provider)
					}
				}
			}
			r.releaseBids(t.ID, attempt, losers)
			return nil
		}
		why := "declined the award: " + reply.Reason
		if err != nil {
			why = "award failed: " + err.Error()
		}
		r.log.Info("award not accepted", "task", t.ID, "peer", pid, "reason", why)
		// A provider that answers "no" (its capacity went to another task
		// in between) ran nothing: that costs no retry and does not exclude
		// it later. One that cannot be reached failed.
		state := AttemptDeclined
		if err != nil && r.ctx.Err() == nil {
			state = AttemptFailed
		}
		if r.ctx.Err() != nil {
			// This requestor is stopping: the provider did nothing wrong
			// (it may be awarded again after the restart).
			why = "the requestor stopped while awarding"
		}
		t, err = r.update(t.ID, move(StateBidding, []State{StateAwarded}, func(t *Task) {
			t.Provider = ""
			if e := t.execution(rec.Provider, attempt); e != nil {
				e.Transition(state)
			}
			setBidOutcome(t, rec.Provider, attempt, why)
			t.Reason = summary + "; " + short(rec.Provider) + " " + why
		}))
		if err != nil {
			return err
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err() // bidding again after the restart
		}
	}
	busy := false
	var offered []string
	for _, rec := range records {
		busy = busy || rec.Busy
		if rec.Decline == "" && !rec.Silent {
			offered = append(offered, rec.Provider)
		}
	}
	// No award: let every provider that offered go of what it reserved
	// (one that declined the award has already): on its ask stream, or
	// with a cancel stream when it bid on gossip.
	var cancels []string
	for _, p := range offered {
		pid, _ := peerIDs.Decode(p)
		if !r.verdict(a, pid, &wire.BidAck{Code: wire.CodeAuctionClosed, Reason: "no award"}) {
			cancels = append(cancels, p)
		}
	}
	r.releaseBids(t.ID, attempt, cancels)
	awardFailed := len(order) > 0
	// Nobody answered at all (not even a decline): the providers we know of
	// may be restarting or cut off; that passes, so announce again.
	silent := !slices.ContainsFunc(records, func(b BidRecord) bool { return !b.Silent })
	return r.noBids(t, summary, busy || awardFailed || silent, storeBids)
}

// releaseBids tells providers whose bids lost that their reservations can
// go, in the background and best effort (they expire anyway).
func (r *Requestor) releaseBids(task string, attempt int, providers []string) {
	for _, p := range providers {
		pid, err := peerIDs.Decode(p)
		if err != nil {
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			defer cancel()
			var ack wire.Ack
			_ = stream.Request(ctx, r.h, pid, wire.ProtoCancel, &wire.Cancel{TaskID: task, Attempt: attempt}, wire.MaxAckSize, &ack)
		}()
	}
}

// noBids ends an attempt without an award. When the obstacle may pass (a
// provider was busy, an award raced with another task) the task is
// announced again after a short pause that ends early when a provider
// joins; otherwise it fails with the reason.
func (r *Requestor) noBids(t *Task, reason string, transient bool, storeBids func(*Task)) error {
	if !transient {
		_, err := r.update(t.ID, move(StateFailed, nil, func(t *Task) {
			storeBids(t)
			t.Reason = "no provider took the task: " + reason
		}))
		return err
	}
	_, err := r.update(t.ID, move(StateBidding, []State{StateBidding}, func(t *Task) {
		storeBids(t)
		t.Reason = "waiting for capacity: " + reason
	}))
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

func bidSummary(head string, records []BidRecord, maxPrice float64) string {
	bids, declines, silent := 0, 0, 0
	lowest := -1.0
	for _, rec := range records {
		if rec.Silent {
			silent++
			continue
		}
		if rec.Decline != "" {
			declines++
			continue
		}
		bids++
		if lowest < 0 || rec.Price < lowest {
			lowest = rec.Price
		}
	}
	s := fmt.Sprintf("%s, %d bid, %d declined", head, bids, declines)
	if silent > 0 {
		s += fmt.Sprintf(", %d silent", silent)
	}
	if lowest >= 0 {
		s += fmt.Sprintf(", lowest price %g", lowest)
		if maxPrice > 0 {
			s += fmt.Sprintf(" (max %g)", maxPrice)
		}
	}
	var reasons []string
	for _, rec := range records {
		switch {
		case rec.Decline != "":
			reasons = append(reasons, short(rec.Provider)+": "+rec.Decline)
		case rec.Silent:
			reasons = append(reasons, short(rec.Provider)+": "+rec.Outcome)
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
			_, err := r.apply(t.ID, event{kind: evLost, provider: provider, attempt: attempt, why: why + "; trying another provider"})
			return err
		case cur := <-ch:
			if cur.State.IsTerminal() || cur.Attempt != attempt || (cur.State != StateAwarded && cur.State != StateRunning) {
				return nil
			}
		case <-deadline.C:
			provider := t.Provider
			why := fmt.Sprintf("no result from %s within %s of the award", short(provider), timeout+r.cfg.ResultGrace)
			_, err := r.apply(t.ID, event{kind: evLost, provider: provider, attempt: attempt, why: why})
			return err
		}
	}
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
	provider, _ := peerIDs.Decode(t.Provider)
	c := t.Result.Outputs
	var err error
	for try := 1; try <= outputFetchTries; try++ {
		err = r.fetchResultContent(t, provider) // outputs and volumes (volume.go)
		if err == nil {
			_, err := r.update(t.ID, move(StateCompleted, []State{StateVerifying}, func(t *Task) { t.Reason = "" }))
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
	_, err = r.update(t.ID, move(StateFailed, nil, func(t *Task) {
		t.Reason = fmt.Sprintf("outputs %s could not be fetched from %s: %v", c, short(t.Provider), err)
	}))
	return err
}
