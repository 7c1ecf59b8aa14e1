package p2p

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// TopicRule says how the messages of one gossipsub topic are checked before
// they reach the node's subscribers or are relayed to any other peer. The
// node lists its rules in one place (node/validate.go) and registers them
// with Host.RegisterTopicRules before it subscribes.
//
// A rule's validator runs, in order:
//
//  1. size: data longer than MaxSize is rejected (gossipsub itself drops
//     any RPC larger than MaxPubSubMessage before it is parsed);
//  2. rate: a message whose author (the message's From, which gossipsub
//     has already checked against the message signature under StrictSign)
//     has used up its token bucket is ignored;
//  3. Check: decoding, Validate, and any binding between the message and
//     its author.
//
// Outcomes. Reject is for what is wrong in the message itself (oversized,
// malformed, forged): every honest relay's validator rejects it too, so the
// peer that delivered it is misbehaving, and gossipsub lowers that peer's
// score (invalid message deliveries, see TopicScoreParams). Ignore is for
// what depends on this node's own view (a rate, a clock, what it already
// holds): a peer that relays a message which was fine at its own
// validator must not be penalized for our view of it. In particular an
// over-rate message is ignored, not rejected: the bucket is keyed by the
// author, but gossipsub penalizes whoever delivered the message, which is
// often an honest relay whose own bucket for that author had tokens left.
type TopicRule struct {
	// Topic is the base topic name (see Host.Topic).
	Topic string
	// MaxSize bounds one message's data in bytes; it must be in
	// (0, MaxPubSubMessage].
	MaxSize int
	// Rate and Burst bound the messages each author may have accepted
	// (a token bucket per author). Rate 0 leaves the rate to Check (the
	// capability pool applies its own per-peer rate, shared with records
	// that arrive over streams).
	Rate  rate.Limit
	Burst int
	// Check decodes and validates the message. It returns the outcome and,
	// when not accepting, a short reason for logs and TopicStats. It may
	// set msg.ValidatorData for the subscriber. Required.
	Check func(ctx context.Context, msg *pubsub.Message) (pubsub.ValidationResult, string)
}

// TopicStats counts what a topic's validator decided.
type TopicStats struct {
	Accepted uint64 `json:"accepted"`
	Ignored  uint64 `json:"ignored"`
	Rejected uint64 `json:"rejected"`
	// Reasons counts the reasons given for messages ignored or rejected.
	Reasons map[string]uint64 `json:"reasons"`
}

// Per-author rate state of a topic rule.
const (
	// maxRatedAuthors bounds the authors one topic rule tracks.
	maxRatedAuthors = 4096
)

// RegisterTopicRules registers a validator for each rule on this host's
// name of the rule's topic (see Topic). Register before subscribing: a
// subscription that exists before its validator delivers and relays
// unchecked messages. The validators run inline (they are cheap and
// bounded); each counts its outcomes (TopicStats).
func (h *Host) RegisterTopicRules(rules ...TopicRule) error {
	for _, r := range rules {
		if r.Topic == "" || r.Check == nil {
			return fmt.Errorf("p2p: topic rule %q needs a topic and a check", r.Topic)
		}
		if r.MaxSize <= 0 || r.MaxSize > MaxPubSubMessage {
			return fmt.Errorf("p2p: topic rule %q: max size %d not in (0, %d]", r.Topic, r.MaxSize, MaxPubSubMessage)
		}
		if r.Rate < 0 || (r.Rate > 0 && r.Burst <= 0) {
			return fmt.Errorf("p2p: topic rule %q: rate %v needs a positive burst", r.Topic, r.Rate)
		}
		name := h.Topic(r.Topic)
		tv := &topicValidator{h: h, rule: r, name: name, stats: TopicStats{Reasons: map[string]uint64{}}}
		if r.Rate > 0 {
			tv.authors = NewPeerRate(r.Rate, r.Burst, maxRatedAuthors)
		}
		if err := h.PubSub.RegisterTopicValidator(name, tv.validate, pubsub.WithValidatorInline(true)); err != nil {
			return fmt.Errorf("p2p: register validator of %s: %w", name, err)
		}
		h.valMu.Lock()
		h.validators[name] = tv
		h.valMu.Unlock()
	}
	return nil
}

// TopicStats returns the counters of every topic with a registered rule,
// by full topic name.
func (h *Host) TopicStats() map[string]TopicStats {
	h.valMu.Lock()
	vals := make([]*topicValidator, 0, len(h.validators))
	for _, tv := range h.validators {
		vals = append(vals, tv)
	}
	h.valMu.Unlock()
	out := make(map[string]TopicStats, len(vals))
	for _, tv := range vals {
		tv.mu.Lock()
		s := tv.stats
		s.Reasons = maps.Clone(tv.stats.Reasons)
		tv.mu.Unlock()
		out[tv.name] = s
	}
	return out
}

// PeerScore returns the gossipsub score this host gave id at the last
// score inspection (once a second), and whether id was scored then.
func (h *Host) PeerScore(id peer.ID) (float64, bool) {
	m := h.scores.Load()
	if m == nil {
		return 0, false
	}
	s, ok := (*m)[id]
	return s, ok
}

type topicValidator struct {
	h       *Host
	rule    TopicRule
	name    string
	authors *PeerRate

	mu    sync.Mutex
	stats TopicStats
}

func (tv *topicValidator) validate(ctx context.Context, src peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	res, reason := tv.judge(ctx, msg)
	tv.mu.Lock()
	switch res {
	case pubsub.ValidationAccept:
		tv.stats.Accepted++
	case pubsub.ValidationIgnore:
		tv.stats.Ignored++
	default:
		tv.stats.Rejected++
	}
	if res != pubsub.ValidationAccept && reason != "" {
		tv.stats.Reasons[reason]++
	}
	tv.mu.Unlock()
	if res != pubsub.ValidationAccept {
		// A remote peer's fault: debug only, so a hostile peer cannot flood
		// the log.
		tv.h.log.Debug("gossip message dropped", "topic", tv.name, "peer", src, "author", msg.GetFrom(),
			"reason", reason, "reject", res == pubsub.ValidationReject)
	}
	return res
}

func (tv *topicValidator) judge(ctx context.Context, msg *pubsub.Message) (pubsub.ValidationResult, string) {
	if len(msg.Data) > tv.rule.MaxSize {
		return pubsub.ValidationReject, "oversized"
	}
	from := msg.GetFrom()
	if from == "" {
		// StrictSign makes gossipsub refuse unsigned messages first; this
		// guards a host built otherwise.
		return pubsub.ValidationReject, "no author"
	}
	if tv.authors != nil && from != tv.h.ID() && !tv.authors.Allow(from) {
		return pubsub.ValidationIgnore, "rate limited"
	}
	return tv.rule.Check(ctx, msg)
}

// PeerRate is a token bucket per peer, bounded in the number of peers it
// tracks. A bucket that has filled up again is dropped (it would behave
// exactly like a new one), at the latest PeerRate's prune interval after
// the peer went idle, and at once when the table is full. When the table
// is full of peers that all sent within their refill time, a peer not in
// it is refused until buckets refill: under a flood of fresh identities
// the table stays bounded and new senders wait (fail closed), while the
// peers already in it keep their own rate. It is safe for concurrent use.
type PeerRate struct {
	mu        sync.Mutex
	r         rate.Limit
	burst     int
	max       int
	m         map[peer.ID]*rate.Limiter
	lastPrune time.Time
}

const (
	// peerRatePruneEvery is how often idle buckets are dropped while
	// messages arrive.
	peerRatePruneEvery = time.Minute
	// peerRateFullPruneGap bounds how often a full table is scanned for
	// refilled buckets, so that a flood costs one scan per gap, not per
	// message.
	peerRateFullPruneGap = 100 * time.Millisecond
)

// NewPeerRate allows each peer r events a second with bursts of burst,
// tracking at most maxPeers peers at once.
func NewPeerRate(r rate.Limit, burst, maxPeers int) *PeerRate {
	return &PeerRate{r: r, burst: burst, max: max(maxPeers, 1), m: map[peer.ID]*rate.Limiter{}}
}

// Allow reports whether id may have one more event now, and takes its token.
func (l *PeerRate) Allow(id peer.ID) bool { return l.AllowAt(id, time.Now()) }

// AllowAt is Allow at the given time (for tests and callers that already
// read the clock).
func (l *PeerRate) AllowAt(id peer.ID, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) >= peerRatePruneEvery {
		l.pruneLocked(now)
	}
	lim := l.m[id]
	if lim == nil {
		if len(l.m) >= l.max && now.Sub(l.lastPrune) >= peerRateFullPruneGap {
			l.pruneLocked(now)
		}
		if len(l.m) >= l.max {
			return false
		}
		lim = rate.NewLimiter(l.r, l.burst)
		l.m[id] = lim
	}
	return lim.AllowN(now, 1)
}

// Len returns how many peers are tracked.
func (l *PeerRate) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

func (l *PeerRate) pruneLocked(now time.Time) {
	l.lastPrune = now
	for id, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, id)
		}
	}
}
