package p2p

import (
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// Defaults of the gossip budget of peers the node does not trust.
const (
	// DefaultUntrustedGossipRate is how many gossip messages a second the
	// node takes from all the peers it does not trust, together.
	DefaultUntrustedGossipRate = 500
	// DefaultUntrustedGossipBurst is that budget's burst.
	DefaultUntrustedGossipBurst = 1000
)

// gossipBudget bounds the gossip messages the node takes from peers it
// does not trust, before gossipsub checks a single signature.
//
// Gossipsub verifies every message's signature before any topic validator
// runs, and per-author rates (TopicRule) do not stop a thousand fresh
// identities that each stay under theirs: each message they send costs
// every node an Ed25519 verification and a place in its seen-message
// memory. The budget is shared by all untrusted delivering peers, so what
// such a flood costs a node is bounded whatever the number of identities;
// messages from peers the node trusts (Host.SetTrust: the requestors that
// did business with this provider, the providers this requestor has
// heard from, its
// bootstrap peers) never count against it. Messages over the budget are
// dropped before they are parsed further (never counted against the
// sender's score: the node's budget is its own view).
type gossipBudget struct {
	limit   *rate.Limiter
	trust   atomic.Pointer[func(peer.ID) bool]
	fixed   map[peer.ID]bool // bootstrap peers: always trusted
	dropped atomic.Uint64
}

func newGossipBudget(r rate.Limit, burst int) *gossipBudget {
	if r <= 0 {
		r, burst = DefaultUntrustedGossipRate, DefaultUntrustedGossipBurst
	}
	return &gossipBudget{limit: rate.NewLimiter(r, max(burst, 1))}
}

// inspect is gossipsub's RPC inspector: it runs on every RPC received, in
// gossipsub's event loop, before anything in it is processed. It keeps
// the RPC's subscriptions and control messages and as many of its
// published messages as the budget allows.
func (b *gossipBudget) inspect(from peer.ID, rpc *pubsub.RPC) error {
	n := len(rpc.Publish)
	if n == 0 {
		return nil
	}
	if b.fixed[from] {
		return nil
	}
	if trusted := b.trust.Load(); trusted != nil && (*trusted)(from) {
		return nil
	}
	now := time.Now()
	keep := n
	for keep > 0 && !b.limit.AllowN(now, keep) {
		keep /= 2
	}
	if keep < n {
		b.dropped.Add(uint64(n - keep))
		rpc.Publish = rpc.Publish[:keep]
	}
	return nil
}

// SetTrust sets which delivering peers are exempt from the untrusted
// gossip budget (see gossipBudget), beyond the bootstrap peers, which
// always are. fn must be cheap and safe for
// concurrent use: it runs in gossipsub's event loop for every RPC that
// carries messages.
func (h *Host) SetTrust(fn func(peer.ID) bool) {
	h.budget.trust.Store(&fn)
}

// GossipDropped is how many gossip messages from untrusted peers were
// dropped over the budget since start.
func (h *Host) GossipDropped() uint64 { return h.budget.dropped.Load() }
