package p2p

import (
	"encoding/binary"
	"hash/maphash"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
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
	// copies remembers the messages taken lately (copySet), so that the
	// same message relayed again by other peers is dropped at once.
	copies *copySet
	// graylisted says whether gossipsub ignores from's messages (its
	// score is under the graylist threshold): those are not remembered
	// as taken, or a badly scored peer could relay a message first only
	// to have the honest copies dropped.
	graylisted func(from peer.ID) bool
	copyDrops  atomic.Uint64
}

func newGossipBudget(r rate.Limit, burst int) *gossipBudget {
	if r <= 0 {
		r, burst = DefaultUntrustedGossipRate, DefaultUntrustedGossipBurst
	}
	return &gossipBudget{
		limit: rate.NewLimiter(r, max(burst, 1)), copies: newCopySet(SeenMessagesTTL, maxCopyKeys),
		graylisted: func(peer.ID) bool { return false },
	}
}

// inspect is gossipsub's RPC inspector: it runs on every RPC received, in
// gossipsub's event loop, before anything in it is processed. It keeps
// the RPC's subscriptions and control messages and, of its published
// messages, those that are not copies of a message taken lately and, from
// an untrusted peer, as many of the rest as the budget allows.
//
// Copies first. Each message reaches a node once from every mesh peer
// that relays it. Gossipsub drops a copy cheaply once the first has been
// validated, but a copy that arrives while the first still waits in the
// validation queue has its Ed25519 signature checked again, and every
// copy counted against the untrusted budget. On a loaded node (a long
// queue) that made each message cost several signature checks (at N=512
// in bench/scale, 20 % of an idle node's CPU against 6 % for the one
// check of the record it carries), and in a large swarm the copies of
// honest adverts alone would use up the budget. A copy is the same bytes
// (author, sequence number, topic, data, signature), so it would be
// judged exactly as the message taken: dropping it loses nothing (but
// for a message gossipsub itself dropped because its validation queue was
// full: its copies are then dropped here for up to SeenMessagesTTL, under
// an overload that was already losing messages). Messages over the budget
// and those from a graylisted peer are not remembered as taken.
func (b *gossipBudget) inspect(from peer.ID, rpc *pubsub.RPC) error {
	if len(rpc.Publish) == 0 {
		return nil
	}
	now := time.Now()
	fresh := rpc.Publish[:0]
	keys := make([]uint64, 0, len(rpc.Publish))
	for _, m := range rpc.Publish {
		k := b.copies.key(m)
		if b.copies.has(k, now) {
			b.copyDrops.Add(1)
			continue
		}
		// Remembered at once, so that copies within this RPC are copies.
		b.copies.add(k, now)
		fresh = append(fresh, m)
		keys = append(keys, k)
	}
	clear(rpc.Publish[len(fresh):])
	rpc.Publish = fresh
	n := len(fresh)
	if n == 0 {
		return nil
	}
	trusted := b.fixed[from]
	if t := b.trust.Load(); !trusted && t != nil {
		trusted = (*t)(from)
	}
	if !trusted {
		keep := n
		for keep > 0 && !b.limit.AllowN(now, keep) {
			keep /= 2
		}
		if keep < n {
			b.dropped.Add(uint64(n - keep))
			clear(rpc.Publish[keep:])
			rpc.Publish = rpc.Publish[:keep]
			// Not taken: an honest peer's copy must still get through.
			b.copies.forget(keys[keep:])
		}
	}
	if b.graylisted(from) {
		b.copies.forget(keys)
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

// GossipCopiesDropped is how many copies of gossip messages already taken
// were dropped on arrival since start, before their signature was checked
// again or they counted against the budget (gossipBudget.inspect).
func (h *Host) GossipCopiesDropped() uint64 { return h.budget.copyDrops.Load() }

// maxCopyKeys bounds the messages one generation of copySet remembers.
const maxCopyKeys = 1 << 15

// copySet remembers the messages taken lately by a keyed hash of their
// bytes, for at least ttl and at most twice that: two generations, the
// older dropped when the newer is ttl old or holds max keys (then copies
// of older messages are checked again, as gossipsub alone would). The
// hash is seeded per process, so no peer can make another message look
// like a copy of one taken. It is used from gossipsub's event loop only.
type copySet struct {
	seed      maphash.Seed
	ttl       time.Duration
	max       int
	cur, prev map[uint64]struct{}
	since     time.Time // when cur was started
}

func newCopySet(ttl time.Duration, max int) *copySet {
	return &copySet{seed: maphash.MakeSeed(), ttl: ttl, max: max, cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}}
}

// key hashes every byte that makes the message what it is, each part
// prefixed by its length.
func (c *copySet) key(m *pb.Message) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, part := range [][]byte{m.From, m.Seqno, []byte(m.GetTopic()), m.Data, m.Signature, m.Key} {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum64()
}

// rotate starts a new generation when the current one is ttl old or full.
func (c *copySet) rotate(now time.Time) {
	if now.Sub(c.since) >= c.ttl || len(c.cur) >= c.max {
		c.prev, c.cur, c.since = c.cur, make(map[uint64]struct{}, len(c.cur)), now
	}
}

// has says whether the message with key k was taken lately.
func (c *copySet) has(k uint64, now time.Time) bool {
	c.rotate(now)
	_, inCur := c.cur[k]
	_, inPrev := c.prev[k]
	return inCur || inPrev
}

// add remembers the message with key k as taken.
func (c *copySet) add(k uint64, now time.Time) {
	c.rotate(now)
	c.cur[k] = struct{}{}
}

// forget undoes add for messages that were not taken after all.
func (c *copySet) forget(keys []uint64) {
	for _, k := range keys {
		delete(c.cur, k)
		delete(c.prev, k)
	}
}
