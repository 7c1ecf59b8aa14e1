package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/time/rate"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

// recordBuffer is how many gossiped capability records wait for the
// pool's reader before gossipsub drops them.
const recordBuffer = 1024

// Pool defaults, used when PoolConfig leaves a field at zero.
const (
	// DefaultRecordRate is how many records per second one peer may have
	// accepted in steady state; DefaultRecordBurst how many at once.
	DefaultRecordRate  = 2.0
	DefaultRecordBurst = 10
	// DefaultSweepInterval is how often expired records are dropped.
	DefaultSweepInterval = 2 * time.Second
	// DefaultDiscoverInterval is how often the DHT is searched for
	// providers that gossip did not bring.
	DefaultDiscoverInterval = 2 * time.Minute
	// maxClockSkew is how far in the future a record may claim to be issued.
	maxClockSkew = time.Minute
	// askConcurrency bounds the record exchanges in flight that the pool
	// starts on new connections.
	askConcurrency = 8
	// askTimeout bounds one record exchange.
	askTimeout = 10 * time.Second
	// connectSample is how many records the pool asks of each newly
	// connected peer (a random sample of what the peer holds): enough for
	// a node that just joined to have candidates after its first
	// connection, little enough that connections cost O(1), not O(pool).
	connectSample = 16
	// connectAskBelow: a pool holding this many providers or more no
	// longer asks new connections for samples; gossip keeps it current and
	// Lookup finds what a task lacks.
	connectAskBelow = 64
	// connectRetry is how long a failed request to a new connection waits
	// before its one retry.
	connectRetry = 2 * time.Second
	// serveConcurrency bounds the record requests answered at once (each
	// scans the pool once); serveWait is how long a request waits for its
	// turn before it is reset.
	serveConcurrency = 4
	serveWait        = 2 * time.Second
	// DefaultMaxEntries bounds the providers in the pool: room for a swarm
	// of 10,000 providers with a margin.
	DefaultMaxEntries = 16384
	// DefaultMaxBytes bounds the pool's memory as estimated by entryCost:
	// 16,384 typical records (1-3 KiB signed) fit; records padded to
	// wire.MaxCapRecordSize fit about 3,800 times.
	DefaultMaxBytes = 128 << 20
	// entryOverhead is what one entry costs beyond its bytes: the map
	// slot, the PoolEntry, slice and string headers, the peer ID key and
	// the persist bookkeeping (measured by TestPoolCapWithFreshIdentities).
	entryOverhead = 1024
	// maxRatedPeers bounds the per-peer record rate table; senders beyond
	// it wait until buckets refill (p2p.PeerRate).
	maxRatedPeers = 4096
)

// PoolEntry is one provider in the pool: its record, the signed envelope it
// came in (served again to peers that ask) and when it was last seen.
type PoolEntry struct {
	Record   wire.CapRecord `json:"record"`
	Envelope []byte         `json:"envelope"`
	SeenAt   time.Time      `json:"seen_at"`
	// Renewals counts the newer records this peer sent since it entered
	// the pool: a provider that keeps advertising is worth more than one
	// heard from once, and is evicted last when the pool is full.
	Renewals uint32 `json:"renewals,omitempty"`
}

// entryCost estimates the memory an entry holds: the envelope, the decoded
// record (its strings are at most the envelope's size again, as the record
// travels base64-encoded inside it) and a fixed overhead. Field counts and
// lengths are bounded by wire.CapRecord.Validate and the envelope by
// wire.MaxCapRecordSize, so one entry costs at most about 33 KiB.
func entryCost(e *PoolEntry) int64 { return 2*int64(len(e.Envelope)) + entryOverhead }

// PoolStore persists pool entries by peer ID; storage.Table[PoolEntry]
// implements it. Entries past their record's expiry are deleted.
type PoolStore interface {
	PutMany(entries map[string]*PoolEntry) error
	Delete(k string) error
	List() ([]*PoolEntry, error)
}

// PoolConfig tunes a Pool.
type PoolConfig struct {
	// RecordRate and RecordBurst limit accepted records per peer.
	RecordRate  float64
	RecordBurst int
	// SweepInterval is how often expired records leave the pool.
	SweepInterval time.Duration
	// DiscoverInterval is how often the DHT is searched for providers;
	// negative turns the search off (Discover can still be called).
	DiscoverInterval time.Duration
	// NoAskOnConnect stops asking each newly connected peer for a sample
	// of its records (a test knob: records then come from gossip, Lookup
	// and Discover).
	NoAskOnConnect bool
	// MaxEntries bounds the providers in the pool (default
	// DefaultMaxEntries) and MaxBytes their estimated memory (default
	// DefaultMaxBytes). When a new provider's record would exceed either,
	// the least useful entries leave first: expired ones, then those never
	// renewed, then those seen longest ago. The node's own record stays.
	MaxEntries int
	MaxBytes   int64
	Logger     *slog.Logger
}

// PoolStats counts what the pool did with the records it was offered.
// Rejected records are forged, malformed or oversized: on gossip they also
// lower the sender's peer score. Ignored records are stale, expired or over
// the sender's rate limit.
type PoolStats struct {
	Accepted uint64 `json:"accepted"`
	Ignored  uint64 `json:"ignored"`
	Rejected uint64 `json:"rejected"`
	Expired  uint64 `json:"expired"`
	// Evicted counts entries dropped to stay within MaxEntries/MaxBytes.
	Evicted uint64            `json:"evicted"`
	Reasons map[string]uint64 `json:"reasons"`
}

// ExchangeStats counts the work of record exchanges and lookups.
type ExchangeStats struct {
	// Unverified counts records dropped (as stale or expired) before their
	// signature was checked: mostly duplicates in answers to our requests.
	Unverified uint64
	// Lookups counts the searches Lookup started (concurrent calls for
	// the same requirements share one); LookupAsks the record requests
	// they sent (to connected peers and to providers found in the DHT).
	Lookups    uint64
	LookupAsks uint64
}

// ExchangeStats returns the exchange and lookup counters.
func (p *Pool) ExchangeStats() ExchangeStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.xstats
}

// Pool is every node's view of the providers in its swarm, built from
// signed capability records: gossiped on wire.TopicCaps (checked by the
// topic's validator, CheckGossip, so bad records stop at the first hop),
// sampled from peers on connect while the pool is small (wire.ProtoCaps,
// so a node that joins late has candidates at once), and found by Lookup
// and Discover (peers asked for matching records, the DHT under capability
// terms). Entries leave the
// pool when their record expires, or when the pool is full (PoolConfig.
// MaxEntries, MaxBytes). The pool is cached in a PoolStore.
type Pool struct {
	h     host.Host
	net   Network
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	store PoolStore
	cfg   PoolConfig
	log   *slog.Logger

	mu       sync.Mutex
	entries  map[peer.ID]*PoolEntry
	bytes    int64 // sum of entryCost over entries
	limiters *p2p.PeerRate
	asking   map[peer.ID]bool
	dirty    map[peer.ID]bool
	stats    PoolStats
	xstats   ExchangeStats
	lookups  map[string]*lookup   // in flight, by lookupKey
	shortAt  map[string]time.Time // when a lookup last ended short, by lookupKey

	persistCh chan struct{}
	askSem    chan struct{}
	serveSem  chan struct{}
	lookupSem chan struct{}
	notifee   *network.NotifyBundle
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	started   bool
}

// Network is what discovery needs of the node's libp2p stack. Tests give
// it an in-memory network (mocknet) and no Routing.
type Network struct {
	Host   host.Host
	PubSub *pubsub.PubSub
	// Routing announces and finds providers of capability terms (the
	// DHT); nil: discovery through gossip and peer exchange only.
	Routing routing.ContentRouting
	// Namespace is "" in the public swarm and the swarm ID in a private
	// one (p2p.Host.Namespace); it keys the DHT terms (TermCID).
	Namespace string
}

// NewPool loads the cached entries that have not expired. topic must be the
// host's wire.TopicCaps topic. Register the topic's validator next, with
// CheckGossip as its check (the node does so in node/validate.go, beside
// every other topic's), then call Start, which subscribes. Without a
// validator the pool still checks every record it reads, but bad records
// are relayed and their senders keep their score.
func NewPool(net Network, topic *pubsub.Topic, store PoolStore, cfg PoolConfig) (*Pool, error) {
	h := net.Host
	if cfg.RecordRate <= 0 {
		cfg.RecordRate = DefaultRecordRate
	}
	if cfg.RecordBurst <= 0 {
		cfg.RecordBurst = DefaultRecordBurst
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.DiscoverInterval == 0 {
		cfg.DiscoverInterval = DefaultDiscoverInterval
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		h: h, net: net, topic: topic, store: store, cfg: cfg, log: cfg.Logger.With("sys", "pool"),
		entries: map[peer.ID]*PoolEntry{}, limiters: p2p.NewPeerRate(rate.Limit(cfg.RecordRate), cfg.RecordBurst, maxRatedPeers),
		asking: map[peer.ID]bool{}, dirty: map[peer.ID]bool{},
		lookups: map[string]*lookup{}, shortAt: map[string]time.Time{},
		stats:     PoolStats{Reasons: map[string]uint64{}},
		persistCh: make(chan struct{}, 1), askSem: make(chan struct{}, askConcurrency),
		serveSem: make(chan struct{}, serveConcurrency), lookupSem: make(chan struct{}, maxLookups),
		ctx: ctx, cancel: cancel,
	}
	cached, err := store.List()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("pool: load cache: %w", err)
	}
	now := time.Now()
	for _, e := range cached {
		id := e.Record.PeerID()
		if id == "" || e.Record.Expired(now) || id == h.ID() {
			_ = store.Delete(e.Record.Peer)
			continue
		}
		if cur, ok := p.entries[id]; ok {
			p.bytes -= entryCost(cur)
		}
		p.entries[id] = e
		p.bytes += entryCost(e)
	}
	evicted := p.makeRoomLocked("", 0, now)
	p.forget(evicted)
	return p, nil
}

// Start serves wire.ProtoCaps, asks every connected peer (and every peer
// that connects later, while the pool holds fewer than 64 providers) for
// a sample of the records it holds, and starts the loops that read gossip,
// drop expired records, persist the cache and search the DHT.
func (p *Pool) Start() error {
	sub, err := p.topic.Subscribe(pubsub.WithBufferSize(recordBuffer))
	if err != nil {
		return fmt.Errorf("pool: subscribe to capability adverts: %w", err)
	}
	p.mu.Lock()
	p.sub = sub
	p.started = true
	p.mu.Unlock()
	p.h.SetStreamHandler(wire.ProtoCaps, p.handleCaps)
	if !p.cfg.NoAskOnConnect {
		p.notifee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
			p.goAsk(c.RemotePeer())
		}}
		p.h.Network().Notify(p.notifee)
		for _, id := range p.h.Network().Peers() {
			p.goAsk(id)
		}
	}
	p.wg.Add(3)
	go p.readLoop()
	go p.sweepLoop()
	go p.persistLoop()
	if p.cfg.DiscoverInterval > 0 && p.net.Routing != nil {
		p.wg.Add(1)
		go p.discoverLoop()
	}
	return nil
}

// Close stops the pool's goroutines and flushes the cache.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.h.RemoveStreamHandler(wire.ProtoCaps)
		if p.notifee != nil {
			p.h.Network().StopNotify(p.notifee)
		}
		p.mu.Lock()
		sub := p.sub
		p.mu.Unlock()
		if sub != nil {
			sub.Cancel()
		}
		// Cancel under mu: goAsk checks the context and adds to wg under
		// mu, so no goroutine starts once Wait may run.
		p.mu.Lock()
		p.cancel()
		p.mu.Unlock()
		p.wg.Wait()
		p.flush()
	})
	return nil
}

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Reasons = make(map[string]uint64, len(p.stats.Reasons))
	for k, v := range p.stats.Reasons {
		s.Reasons[k] = v
	}
	return s
}

// List returns the unexpired entries matching f, ordered by peer ID. The
// node's own record is included when it advertises.
func (p *Pool) List(f PoolFilter) []PoolEntry {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []PoolEntry{}
	for _, e := range p.entries {
		if !e.Record.Expired(now) && f.Match(&e.Record) {
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b PoolEntry) int { return strings.Compare(a.Record.Peer, b.Record.Peer) })
	return out
}

// KnownProviders returns the other providers in the pool that may take a
// task with these requirements and are alive: connected, or their record
// was issued within the last advert interval and a half (a provider that
// went away stops holding auctions open long before its record expires).
func (p *Pool) KnownProviders(req wire.Requirements) []peer.ID {
	var out []peer.ID
	p.eachAlive(req, func(id peer.ID, _ *PoolEntry) bool { out = append(out, id); return true })
	slices.SortFunc(out, func(a, b peer.ID) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// count records an outcome. Caller holds mu.
func (p *Pool) countLocked(res pubsub.ValidationResult, reason string) {
	switch res {
	case pubsub.ValidationAccept:
		p.stats.Accepted++
	case pubsub.ValidationIgnore:
		p.stats.Ignored++
	default:
		p.stats.Rejected++
	}
	if reason != "" {
		p.stats.Reasons[reason]++
	}
}

// check decides what to do with a signed record; author is the gossip
// message's signer, or "" for records relayed over ProtoCaps (where only
// the record's own signature vouches for it). Records that would be
// ignored anyway (expired, stale) are dropped before their signature is
// checked: an answer to a record request is mostly records the pool holds.
func (p *Pool) check(data []byte, author peer.ID) (*wire.CapRecord, pubsub.ValidationResult, string) {
	if len(data) > wire.MaxCapRecordSize {
		return nil, pubsub.ValidationReject, "oversized"
	}
	rec, env, err := wire.ParseCapRecord(data)
	if err != nil {
		return nil, pubsub.ValidationReject, "malformed"
	}
	id := rec.PeerID()
	if author != "" && id != author {
		return nil, pubsub.ValidationReject, "author mismatch"
	}
	now := time.Now()
	stale := func() bool {
		cur, ok := p.entries[id]
		return ok && rec.Seq <= cur.Record.Seq
	}
	var reason string
	p.mu.Lock()
	switch {
	case rec.Expired(now):
		reason = "expired"
	case time.UnixMilli(rec.IssuedAt).After(now.Add(maxClockSkew)):
		reason = "issued in the future"
	case stale():
		reason = "stale"
	}
	if reason != "" {
		p.xstats.Unverified++
		p.mu.Unlock()
		return nil, pubsub.ValidationIgnore, reason
	}
	p.mu.Unlock()
	if err := wire.VerifyCapRecord(rec, env); err != nil {
		return nil, pubsub.ValidationReject, "bad signature"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if stale() {
		return nil, pubsub.ValidationIgnore, "stale"
	}
	if !p.limiters.AllowAt(id, now) {
		return nil, pubsub.ValidationIgnore, "rate limited"
	}
	return rec, pubsub.ValidationAccept, ""
}

// CheckGossip is the check of wire.TopicCaps's validator (a p2p.TopicRule's
// Check): size, envelope and record decoding (wire.ParseCapRecord), the
// record's peer equal to the message's author (its From, whose signature
// gossipsub checked), expiry, clock skew and freshness (Seq), then the
// record's signature (wire.VerifyCapRecord) and the author's rate. Forged, malformed and oversized
// records are rejected, which lowers the sender's peer score; expired,
// stale and over-rate ones are ignored (they depend on this node's clock
// and holdings, and an honest relay may have passed them). An accepted
// record is left in msg.ValidatorData for the pool's reader. Every outcome
// is counted (Stats).
func (p *Pool) CheckGossip(_ context.Context, msg *pubsub.Message) (pubsub.ValidationResult, string) {
	if msg.GetFrom() == p.h.ID() {
		return pubsub.ValidationAccept, "" // our own advert, put in the pool directly
	}
	rec, res, reason := p.check(msg.Data, msg.GetFrom())
	p.mu.Lock()
	p.countLocked(res, reason)
	p.mu.Unlock()
	if res == pubsub.ValidationAccept {
		msg.ValidatorData = rec
	} else {
		p.log.Debug("capability record dropped", "peer", msg.GetFrom(), "reason", reason)
	}
	return res, reason
}

// ingest takes a record relayed over ProtoCaps.
func (p *Pool) ingest(data []byte) {
	rec, res, reason := p.check(data, "")
	p.mu.Lock()
	p.countLocked(res, reason)
	p.mu.Unlock()
	if res == pubsub.ValidationAccept {
		p.put(rec, data)
	}
}

// put stores a checked record unless a newer one arrived meanwhile, making
// room first when the pool is full.
func (p *Pool) put(rec *wire.CapRecord, env []byte) {
	id := rec.PeerID()
	now := time.Now()
	e := &PoolEntry{Record: *rec, Envelope: env, SeenAt: now.UTC()}
	p.mu.Lock()
	cur, known := p.entries[id]
	if known && rec.Seq <= cur.Record.Seq {
		p.mu.Unlock()
		return
	}
	if known {
		e.Renewals = cur.Renewals + 1
		p.bytes -= entryCost(cur)
	}
	evicted := p.makeRoomLocked(id, entryCost(e), now)
	p.entries[id] = e
	p.bytes += entryCost(e)
	p.dirty[id] = true
	p.mu.Unlock()
	p.forget(evicted)
	select {
	case p.persistCh <- struct{}{}:
	default:
	}
	if id == p.h.ID() {
		return
	}
	// Let streams (bids, awards) reach the provider without a DHT lookup.
	ttl := time.Until(time.UnixMilli(rec.Expires))
	for _, s := range rec.Addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			p.h.Peerstore().AddAddr(id, a, min(ttl, peerstore.TempAddrTTL))
		}
	}
	if !known {
		p.log.Debug("provider joined the pool", "peer", id)
	}
}

// makeRoomLocked evicts entries until one more entry of cost bytes (for
// peer id, whose old entry is already out of p.bytes) fits within
// MaxEntries and MaxBytes, and returns the evicted peers. The least useful
// entry goes first: an expired one, then one never renewed, then the one
// seen longest ago; the node's own record and id's are never chosen. Each
// eviction scans the pool once (16,384 entries take well under a
// millisecond). Caller holds mu.
func (p *Pool) makeRoomLocked(id peer.ID, cost int64, now time.Time) []peer.ID {
	var out []peer.ID
	for {
		n := len(p.entries)
		if _, ok := p.entries[id]; id != "" && !ok {
			n++ // the entry to come
		}
		if n <= p.cfg.MaxEntries && p.bytes+cost <= p.cfg.MaxBytes {
			return out
		}
		victim, ok := p.victimLocked(id, now)
		if !ok {
			return out
		}
		e := p.entries[victim]
		delete(p.entries, victim)
		delete(p.dirty, victim)
		p.bytes -= entryCost(e)
		if e.Record.Expired(now) {
			p.stats.Expired++
		} else {
			p.stats.Evicted++
		}
		out = append(out, victim)
	}
}

// victimLocked picks the least useful entry other than keep and the node's
// own. Caller holds mu.
func (p *Pool) victimLocked(keep peer.ID, now time.Time) (peer.ID, bool) {
	var (
		best     peer.ID
		bestRank int
		bestSeen time.Time
	)
	nowMS := now.UnixMilli()
	for pid, e := range p.entries {
		if pid == keep || pid == p.h.ID() {
			continue
		}
		rank := 2 // renewed
		switch {
		case nowMS >= e.Record.Expires:
			rank = 0
		case e.Renewals == 0:
			rank = 1
		}
		if best == "" || rank < bestRank || (rank == bestRank && e.SeenAt.Before(bestSeen)) {
			best, bestRank, bestSeen = pid, rank, e.SeenAt
		}
	}
	return best, best != ""
}

// forget deletes evicted peers from the cache and drops the addresses their
// records added to the peerstore (unless they are connected).
func (p *Pool) forget(ids []peer.ID) {
	for _, id := range ids {
		if err := p.store.Delete(id.String()); err != nil {
			p.log.Warn("pool cache delete", "peer", id, "err", err)
		}
		if p.h.Network().Connectedness(id) != network.Connected {
			p.h.Peerstore().ClearAddrs(id)
		}
	}
	if len(ids) > 0 {
		p.log.Debug("pool full: evicted providers", "count", len(ids))
	}
}

// putLocal puts the node's own advert into its pool.
func (p *Pool) putLocal(rec *wire.CapRecord, env []byte) { p.put(rec, env) }

func (p *Pool) readLoop() {
	defer p.wg.Done()
	for {
		msg, err := p.sub.Next(p.ctx)
		if err != nil {
			return
		}
		if msg.GetFrom() == p.h.ID() {
			continue
		}
		rec, ok := msg.ValidatorData.(*wire.CapRecord)
		if !ok {
			// No validator ran (see NewPool): check here, the second line.
			var res pubsub.ValidationResult
			var reason string
			rec, res, reason = p.check(msg.Data, msg.GetFrom())
			p.mu.Lock()
			p.countLocked(res, reason)
			p.mu.Unlock()
			if res != pubsub.ValidationAccept {
				continue
			}
		}
		p.put(rec, msg.Data)
	}
}

// sweepLoop drops expired records.
func (p *Pool) sweepLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			p.sweep(now)
		}
	}
}

func (p *Pool) sweep(now time.Time) {
	var gone []peer.ID
	p.mu.Lock()
	for id, e := range p.entries {
		if e.Record.Expired(now) {
			delete(p.entries, id)
			delete(p.dirty, id)
			p.bytes -= entryCost(e)
			p.stats.Expired++
			gone = append(gone, id)
		}
	}
	p.mu.Unlock()
	for _, id := range gone {
		p.log.Debug("provider record expired", "peer", id)
		if err := p.store.Delete(id.String()); err != nil {
			p.log.Warn("pool cache delete", "peer", id, "err", err)
		}
	}
}

// persistInterval is the least time between two writes of the pool's
// cache: records arrive in bursts (a thousand providers renewing), and one
// batch a second costs the node's database one write however many came.
const persistInterval = time.Second

// persistLoop writes changed entries to the store off the receive path,
// in one batch at most every persistInterval.
func (p *Pool) persistLoop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			p.flush()
			return
		case <-p.persistCh:
			p.flush()
		}
		select {
		case <-p.ctx.Done():
			p.flush()
			return
		case <-time.After(persistInterval):
		}
	}
}

func (p *Pool) flush() {
	p.mu.Lock()
	var batch []*PoolEntry
	for id := range p.dirty {
		if e, ok := p.entries[id]; ok {
			c := *e
			batch = append(batch, &c)
		}
	}
	clear(p.dirty)
	p.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	items := make(map[string]*PoolEntry, len(batch))
	for _, e := range batch {
		items[e.Record.Peer] = e
	}
	if err := p.store.PutMany(items); err != nil {
		p.log.Warn("pool cache write", "entries", len(items), "err", err)
	}
}
