package market

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
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
	r.mu.Lock()
	a := r.auctions[bid.TaskID]
	r.mu.Unlock()
	if a == nil || a.attempt != bid.Attempt {
		_ = stream.WriteMsg(s, &wire.BidAck{Code: wire.CodeAuctionClosed, Reason: "auction closed"})
		return
	}
	select {
	case a.bids <- bidFrom{from: from, bid: *bid, at: time.Now().UTC()}:
		observe(r.cfg.Observer).BidReceived()
		_ = stream.WriteMsg(s, &wire.BidAck{OK: true})
	default:
		_ = stream.WriteMsg(s, &wire.BidAck{Code: wire.CodeTooMany, Reason: "too many bids"})
	}
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

// applyReport persists a report, then acknowledges it. Who may send what
// (the authorization rule of ProtoReport): only a provider that was awarded
// the task at that attempt; a heartbeat only for the current attempt. A
// result of an earlier attempt is still taken while the task is not
// terminal: work is not thrown away. The decision is made on the task as it
// stands inside the store's transaction (apply, step), never on an
// earlier read.
func (r *Requestor) applyReport(from peer.ID, rep *wire.Report) wire.Ack {
	t, err := r.store.Get(rep.TaskID)
	if err != nil {
		return wire.Ack{Code: wire.CodeUnknownTask, Reason: "unknown task"}
	}
	provider, attempt := from.String(), rep.Attempt
	if t.execution(provider, attempt) == nil {
		r.log.Debug("report from a peer not awarded", "task", rep.TaskID, "peer", from)
		return wire.Ack{Code: wire.CodeNotAwarded, Reason: "not awarded to you"}
	}
	if t.State.IsTerminal() {
		if rep.State == wire.ExecHeartbeat {
			return wire.Ack{Code: wire.CodeNoLongerYours, Reason: "task already " + string(t.State)}
		}
		// Already settled (canceled, or completed by another attempt):
		// acknowledge so the provider can clear its outbox.
		return wire.Ack{OK: true, Code: wire.CodeSettled, Reason: "task already " + string(t.State)}
	}
	current := provider == t.Provider && attempt == t.Attempt
	if current {
		r.beat(t.ID)
	}
	switch rep.State {
	case wire.ExecHeartbeat:
		if !current {
			return wire.Ack{Code: wire.CodeNoLongerYours, Reason: "no longer yours"}
		}
		return wire.Ack{OK: true}
	case wire.ExecRunning:
		_, err = r.apply(t.ID, event{kind: evRunning, provider: provider, attempt: attempt})
		if errors.Is(err, ErrInvalidTransition) {
			err = nil // a late running report after the result: fine
		}
	default: // completed or failed: a result
		rc, rerr := checkReceipt(rep, from, r.h.ID())
		if rerr != nil {
			r.log.Warn("result refused", "task", t.ID, "peer", from, "err", rerr)
			return wire.Ack{Code: wire.CodeInvalidReceipt, Reason: "invalid receipt: " + rerr.Error()}
		}
		// Keep the countersigned receipt before the task is seen as
		// finished: whoever watches the task finds the ledger up to date.
		ack := r.countersign(rep, rc)
		_, err = r.apply(t.ID, event{kind: evResult, provider: provider, attempt: attempt, reported: rep.State, result: rep.Result})
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
		return wire.Ack{Code: wire.CodeRetryLater, Reason: "could not record report"}
	}
	return wire.Ack{OK: true}
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
