package market

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

// Authorization: who may send each protocol message, and in which state.
// Every message a peer sends is checked by exactly one function here per
// role, so the table in SECURITY.md ("Who may send what") can be read
// against this file:
//
//	message              receiver    function            rule
//	announce (gossip)    provider    authorizeAnnounce   signed by the requestor it names; within its rate
//	ask (announce sent   provider    authorizeAsk        sent by the requestor it names; within the same rate
//	to one provider)
//	bid                  requestor   authorizeBid        an open auction of that task and attempt; at most maxBidsPerAuction
//	award                provider    authorizeAward      a live reservation of this provider for that requestor, task and attempt
//	report (heartbeat,   requestor   authorizeReport     the provider of the task's current attempt, while that attempt is
//	running, result)                                     neither declined nor failed over and the task is not terminal;
//	                                                     a result's receipt at most the cost the bid allowed
//	cancel               provider    (execKey)           the requestor of that execution only: the key contains its peer id
//	tunnel, exec         provider    (service.go)        the requestor of that running service only
//
// A bid that answers an ask on the ask's own stream is authorized by
// authorizeBid like one sent on a bid stream.
//
// Identities are the libp2p peer ids of the authenticated streams (or, on
// gossip, of the message's signature), never a name a message carries.

// maxBidsPerAuction bounds the bids one auction takes (and stores with the
// task): more providers than this answering one announcement are refused
// with CodeTooMany.
const maxBidsPerAuction = 256

// costSlack is the rounding a receipt's cost may exceed the bid's maximum
// by (floating point arithmetic on the provider).
const costSlack = 1e-9

// authorizeAnnounce decides whether the provider answers an announcement
// that came from the gossip peer from (the signer of the message, checked
// by pubsub). It returns the announcement, or nil and why not ("" for an
// announcement that is simply not for this provider: pinned elsewhere, or
// excluding it). The node's topic validator has refused malformed and
// forged messages before they got here (and penalized their senders); this
// is the market's own second check.
func (p *Provider) authorizeAnnounce(from peer.ID, data []byte) (*wire.Announce, string) {
	if !p.annLimit.Allow(from) {
		return nil, "over its rate"
	}
	return p.checkAnnounce(from, data, "signed")
}

// authorizeAsk is authorizeAnnounce for an announcement that came on an
// ask stream from from (the stream's authenticated peer), whose per-peer
// rate the stream handler has already counted (stream.Accept with the
// same announcement limiter): an ask is an announcement sent to this
// provider alone, under the same rules.
func (p *Provider) authorizeAsk(from peer.ID, data []byte) (*wire.Announce, string) {
	return p.checkAnnounce(from, data, "sent")
}

// checkAnnounce is the part of authorizeAnnounce and authorizeAsk after
// the per-peer rate; how says how from vouched for the message ("signed"
// on gossip, "sent" on a stream).
func (p *Provider) checkAnnounce(from peer.ID, data []byte, how string) (*wire.Announce, string) {
	if !p.admit.isKnown(peerIDs.String(from)) && !p.newcomerAnn.Allow() {
		return nil, "over the rate shared by requestors new to this provider"
	}
	if len(data) > wire.MaxAnnounceSize {
		return nil, fmt.Sprintf("%d bytes, over %d", len(data), wire.MaxAnnounceSize)
	}
	ann, err := wire.Decode[wire.Announce](data)
	if err != nil {
		return nil, err.Error()
	}
	if ann.Requestor != peerIDs.String(from) {
		return nil, how + " by another peer than the requestor it names (" + ann.Requestor + ")"
	}
	if ann.Req.Provider != "" && ann.Req.Provider != peerIDs.String(p.h.ID()) {
		return nil, "" // pinned to another provider
	}
	if slices.Contains(ann.Req.Exclude, peerIDs.String(p.h.ID())) {
		return nil, "" // the requestor does not want this provider for it
	}
	return ann, ""
}

// authorizeAward decides whether from may award the execution key: only
// against a live reservation or queue place this provider made when it bid
// for that same requestor, task and attempt. A peer that never received a
// bid (or whose bid expired) makes this provider spend nothing.
func (p *Provider) authorizeAward(from peer.ID, key string) *wire.AwardReply {
	if ok, why := p.admit.reservedFor(key, peerIDs.String(from)); !ok {
		return &wire.AwardReply{Code: wire.CodeNoReservation, Reason: why}
	}
	return nil
}

// authorizeBid decides whether from may bid into a (nil when no auction of
// the task is open), and counts the bid when it may. It is called with
// Requestor.mu held. A provider bids once per auction; the task's pinned
// provider alone, and never an excluded one, may bid; an auction takes at
// most maxBidsPerAuction bids.
func authorizeBid(a *auction, from peer.ID, bid *wire.Bid) *wire.BidAck {
	refuse := func(code wire.AckCode, reason string) *wire.BidAck { return &wire.BidAck{Code: code, Reason: reason} }
	switch {
	case a == nil || a.attempt != bid.Attempt:
		return refuse(wire.CodeAuctionClosed, "auction closed")
	case a.seen[from]:
		return refuse(wire.CodeTooMany, "one bid per provider and auction")
	case a.pinned != "" && a.pinned != peerIDs.String(from):
		return refuse(wire.CodeRefused, "the task is pinned to another provider")
	case a.excluded[peerIDs.String(from)]:
		return refuse(wire.CodeRefused, "the task excludes this provider")
	case len(a.seen) >= maxBidsPerAuction:
		return refuse(wire.CodeTooMany, "the auction has all the bids it takes")
	}
	a.seen[from] = true
	return nil
}

// authorizeReport decides whether provider may send rep about t. It runs on
// the task as it stands inside the store's transaction (step) and, as a
// cheap filter, before it. rc is the verified receipt of a result (nil for
// a heartbeat or a running report).
//
// It returns nil when rep may change the task, else the Ack to answer with:
//
//   - no execution of provider at that attempt → CodeNotAwarded (final);
//   - the task is terminal → a result is acknowledged (OK, CodeSettled) so
//     the provider clears its outbox, and changes nothing; any other report
//     gets CodeNoLongerYours;
//   - a stale execution (declined, failed over, or not the task's current
//     provider and attempt) → CodeNoLongerYours (final): it can never settle
//     the task;
//   - a result the task already holds (a redelivery whose ack was lost) →
//     OK, CodeSettled, changing nothing and countersigning nothing again;
//   - a receipt whose cost is above the maximum the provider's bid named, or
//     whose unit price is above the bid's → CodeInvalidReceipt (final).
func authorizeReport(t *Task, provider string, rep *wire.Report, rc *wire.Receipt) *wire.Ack {
	refuse := func(code wire.AckCode, format string, a ...any) *wire.Ack {
		return &wire.Ack{Code: code, Reason: fmt.Sprintf(format, a...)}
	}
	isResult := rep.State == wire.ExecCompleted || rep.State == wire.ExecFailed
	e := t.execution(provider, rep.Attempt)
	if e == nil {
		return refuse(wire.CodeNotAwarded, "not awarded to you")
	}
	if t.State.IsTerminal() {
		if isResult {
			return &wire.Ack{OK: true, Code: wire.CodeSettled, Reason: "task already " + string(t.State)}
		}
		return refuse(wire.CodeNoLongerYours, "task already %s", t.State)
	}
	if isResult && e.Result != nil {
		return &wire.Ack{OK: true, Code: wire.CodeSettled, Reason: "result already recorded"}
	}
	switch {
	case e.State == AttemptDeclined:
		return refuse(wire.CodeNoLongerYours, "you declined attempt %d", rep.Attempt)
	case e.State == AttemptFailed:
		return refuse(wire.CodeNoLongerYours, "attempt %d was failed over", rep.Attempt)
	case provider != t.Provider || rep.Attempt != t.Attempt:
		return refuse(wire.CodeNoLongerYours, "the task moved on to attempt %d", t.Attempt)
	}
	if !isResult {
		return nil
	}
	if rc == nil {
		return refuse(wire.CodeInvalidReceipt, "result without a verified receipt")
	}
	bid := t.bid(provider, rep.Attempt)
	if bid == nil {
		return refuse(wire.CodeNotAwarded, "no bid of yours for attempt %d", rep.Attempt)
	}
	if rc.Cost > bid.MaxCost*(1+costSlack)+costSlack {
		return refuse(wire.CodeInvalidReceipt, "receipt cost %g is above your bid's maximum %g", rc.Cost, bid.MaxCost)
	}
	if rc.Price > bid.Price*(1+costSlack)+costSlack {
		return refuse(wire.CodeInvalidReceipt, "receipt price %g is above your bid's price %g", rc.Price, bid.Price)
	}
	return nil
}

// bid returns the offer (not a decline) provider made for attempt, or nil.
func (t *Task) bid(provider string, attempt int) *BidRecord {
	for i := range t.Bids {
		b := &t.Bids[i]
		if b.Provider == provider && b.Attempt == attempt && b.Decline == "" {
			return b
		}
	}
	return nil
}
