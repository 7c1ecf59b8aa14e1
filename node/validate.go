package node

import (
	"context"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

// Gossip topics: every gossipsub topic the node joins is listed in
// topicRules, with how its messages are checked before they reach the
// market or are relayed to any other peer. The rules are registered before
// anything subscribes (New), so no message is delivered or relayed
// unchecked. p2p.TopicRule documents the order of checks and when a message
// is rejected (the sender's peer score drops; see p2p.TopicScoreParams) or
// ignored; the market decodes every message again as a second line.
//
//	topic            max size               per-author rate          check
//	wire.TopicTasks  wire.MaxAnnounceSize   announceRate/Burst       checkAnnounce
//	wire.TopicCaps   wire.MaxCapRecordSize  the pool's (RecordRate)  discovery.Pool.CheckGossip
const (
	// announceRate and announceBurst bound the announcements one requestor
	// may have relayed: a requestor announces once per task attempt, and
	// one submitting hundreds of tasks a second stays under it (the same
	// bound as the provider's own, market's announceRate).
	announceRate  = 500
	announceBurst = 1000
	// announceSkew is how far in the past an announcement's bid deadline
	// may lie (clocks differ) before the announcement is stale.
	announceSkew = time.Minute
)

// topicRules returns the rule of every topic the node joins.
func topicRules(pool *discovery.Pool) []p2p.TopicRule {
	return []p2p.TopicRule{
		announceRule(),
		{Topic: wire.TopicCaps, MaxSize: wire.MaxCapRecordSize, Check: pool.CheckGossip},
	}
}

// announceRule is wire.TopicTasks's rule.
func announceRule() p2p.TopicRule {
	return p2p.TopicRule{
		Topic: wire.TopicTasks, MaxSize: wire.MaxAnnounceSize,
		Rate: announceRate, Burst: announceBurst,
		Check: checkAnnounce,
	}
}

// checkAnnounce checks a task announcement: it must decode and validate as
// a wire.Announce (rejected otherwise), and name its author as Requestor
// (rejected otherwise: bids go to the Requestor, so a peer that names
// another would point every provider's bids at a victim). An announcement
// whose bid deadline passed more than announceSkew ago is ignored: that is
// a judgement of this node's clock, not proof of a forgery.
func checkAnnounce(_ context.Context, msg *pubsub.Message) (pubsub.ValidationResult, string) {
	ann, err := wire.Decode[wire.Announce](msg.Data)
	if err != nil {
		return pubsub.ValidationReject, "malformed announcement"
	}
	if ann.Requestor != msg.GetFrom().String() {
		return pubsub.ValidationReject, "requestor is not the author"
	}
	if time.UnixMilli(ann.BidDeadline).Before(time.Now().Add(-announceSkew)) {
		return pubsub.ValidationIgnore, "bid deadline passed"
	}
	return pubsub.ValidationAccept, ""
}

// registerTopicRules registers topicRules on the node's host; the pool must
// exist and nothing may have subscribed yet.
func (n *Node) registerTopicRules() error {
	return n.host.RegisterTopicRules(topicRules(n.pool)...)
}
