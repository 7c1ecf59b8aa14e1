package market

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
	"github.com/offload-project/offload/storage"
)

// handleBid receives one bid (or decline) from a provider.
func (r *Requestor) handleBid(s network.Stream) {
	defer s.Close()
	from, body, ok := stream.Accept(s, r.limit, 10*time.Second, wire.MaxBidSize, r.log, "bid")
	if !ok {
		return
	}
	bid, err := wire.Decode[wire.Bid](body)
	if err != nil {
		r.log.Debug("bad bid", "peer", from, "err", err)
		_ = stream.WriteMsg(s, &wire.BidAck{Code: wire.CodeBadRequest, Reason: err.Error()})
		return
	}
	ack := r.takeBid(from, bid, nil)
	_ = stream.WriteMsg(s, ack)
}

// handleReport receives a status change or a result from a provider.
func (r *Requestor) handleReport(s network.Stream) {
	defer s.Close()
	from, body, ok := stream.Accept(s, r.limit, 30*time.Second, wire.MaxReportSize, r.log, "report")
	if !ok {
		return
	}
	rep, err := wire.Decode[wire.Report](body)
	if err != nil {
		r.log.Debug("bad report", "peer", from, "err", err)
		_ = stream.WriteMsg(s, &wire.Ack{Code: wire.CodeBadRequest, Reason: err.Error()})
		return
	}
	ack := r.applyReport(from, rep)
	_ = stream.WriteMsg(s, &ack)
}

// applyReport persists a report, then acknowledges it. Whether the sender
// may send it is authorizeReport's to decide (see authz.go); the decision
// is made again on the task as it stands inside the store's transaction
// (apply, step), never only on an earlier read. A result's receipt is
// countersigned before the write, but the countersignature is kept (the
// ledger's spent entry, written in the task's transaction) and handed to
// the provider only once the result has changed the task.
func (r *Requestor) applyReport(from peer.ID, rep *wire.Report) wire.Ack {
	t, err := r.load(rep.TaskID)
	if err != nil {
		return wire.Ack{Code: wire.CodeUnknownTask, Reason: "unknown task"}
	}
	provider, attempt := peerIDs.String(from), rep.Attempt
	isResult := rep.State == wire.ExecCompleted || rep.State == wire.ExecFailed
	var rc *wire.Receipt
	if isResult {
		// The signature is checked once, outside the transaction.
		var rerr error
		if rc, rerr = checkReceipt(rep, from, r.h.ID()); rerr != nil {
			r.log.Warn("result refused", "task", t.ID, "peer", from, "err", rerr)
			return wire.Ack{Code: wire.CodeInvalidReceipt, Reason: "invalid receipt: " + rerr.Error()}
		}
	}
	if refusal := authorizeReport(t, provider, rep, rc); refusal != nil {
		if !refusal.OK {
			r.log.Info("report refused", "task", t.ID, "peer", from, "attempt", attempt, "state", rep.State, "code", refusal.Code, "reason", refusal.Reason)
		}
		return *refusal
	}
	r.beat(t.ID)
	switch rep.State {
	case wire.ExecHeartbeat:
		if rep.Checkpoint != nil && t.Spec.Checkpoint != nil {
			r.takeCheckpoint(t.ID, attempt, from, *rep.Checkpoint)
		}
		return wire.Ack{OK: true}
	case wire.ExecRunning:
		_, err = r.apply(t.ID, event{kind: evRunning, provider: provider, attempt: attempt})
		var refused *refusedError
		if errors.As(err, &refused) {
			return refused.ack // the task moved on meanwhile
		}
		if errors.Is(err, ErrInvalidTransition) {
			err = nil // a late running report after the result: fine
		}
	default: // completed or failed: a result
		ack, spent := r.countersign(rep, rc)
		ev := event{kind: evResult, provider: provider, attempt: attempt, reported: rep.State, result: rep.Result, receipt: rc}
		if spent != nil {
			if e, ok := r.spentEntry(spent); ok {
				ev.also = []storage.Entry{e}
			} else {
				ev.settled = func() { r.keepSpent(spent) }
			}
		}
		_, err = r.apply(t.ID, ev)
		var refused *refusedError
		if errors.As(err, &refused) {
			r.log.Info("result refused", "task", t.ID, "peer", from, "attempt", attempt, "code", refused.ack.Code, "reason", refused.ack.Reason)
			return refused.ack
		}
		if err == nil {
			r.capacityFreed()
			// A driver waiting on an earlier step has returned; make sure
			// one runs to re-announce after a retryable failure.
			r.startDriver(t.ID)
			return ack
		}
	}
	if err != nil {
		r.log.Error("apply report", "task", rep.TaskID, "err", err)
		return wire.Ack{Code: wire.CodeRetryLater, Reason: "could not record report"}
	}
	return wire.Ack{OK: true}
}

// refusedError is what step returns when authorizeReport, run inside the
// transaction, refuses an event: the task changed since the first check.
type refusedError struct{ ack wire.Ack }

func (e *refusedError) Error() string { return "refused: " + e.ack.Reason }

// countersign signs a result's receipt and returns the ack that carries
// the countersignature and the ledger entry that keeps the countersigned
// receipt (nil without a ledger or a signature). applyReport hands the ack
// out, and keeps the entry, only once the result has changed the task.
func (r *Requestor) countersign(rep *wire.Report, rc *wire.Receipt) (wire.Ack, *LedgerEntry) {
	sr := *rep.Result.Receipt
	if err := sr.Countersign(r.h.Peerstore().PrivKey(r.h.ID())); err != nil {
		r.log.Error("countersign", "task", rep.TaskID, "err", err)
		return wire.Ack{OK: true}, nil
	}
	ack := wire.Ack{OK: true, Countersig: sr.RequestorSig}
	if r.cfg.Ledger == nil {
		return ack, nil
	}
	return ack, &LedgerEntry{Key: fmt.Sprintf("%s/%d/spent", rep.TaskID, rep.Attempt), TaskID: rep.TaskID, Attempt: rep.Attempt,
		Peer: rc.Provider, Role: RoleSpent, Amount: rc.Cost, At: time.Now().UTC(), Receipt: &sr}
}

// spentEntry encodes e to be written in the task's transaction, when the
// ledger and the task store allow it (ledgerEntries, taskAlsoUpdater).
func (r *Requestor) spentEntry(e *LedgerEntry) (storage.Entry, bool) {
	le, okL := r.cfg.Ledger.(ledgerEntries)
	_, okT := r.store.(taskAlsoUpdater)
	if !okL || !okT {
		return storage.Entry{}, false
	}
	se, err := le.Entry(e.Key, e)
	if err != nil {
		r.log.Error("encode spent", "task", e.TaskID, "err", err)
		return storage.Entry{}, false
	}
	return se, true
}

// keepSpent writes e to the ledger on its own: where the stores cannot
// write it in the task's transaction, from inside it, before the task.
func (r *Requestor) keepSpent(e *LedgerEntry) {
	if err := r.cfg.Ledger.Put(e.Key, e); err != nil {
		r.log.Error("record spent", "task", e.TaskID, "err", err)
	}
}
