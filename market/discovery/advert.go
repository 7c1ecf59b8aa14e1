package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

// Advertiser defaults, used when AdvertiserConfig leaves a field at zero.
//
// Capability gossip costs every node one signature check per advert, so
// its volume is what bounds a swarm's size: a provider sends at most one
// advert per MinGap whatever happens to it, 60 s / DefaultAdvertMinGap = 1
// advert a minute with the defaults, and at least one per Interval
// (jittered) while it runs. A swarm of 10,000 providers then costs each
// node at most 170 checks a second while every provider's capacity keeps
// changing, and about 40 when it holds still.
const (
	// DefaultAdvertInterval is how often a provider republishes its record
	// when nothing else made it advertise; each wait is drawn uniformly
	// within ±20 % of it, so providers started together drift apart.
	DefaultAdvertInterval = 4 * time.Minute
	// DefaultAdvertTTL is how long a record stays valid (wire.MaxCapsTTL):
	// enough for a refresh to be lost (the longest wait is 4.8 min), so a
	// provider that goes away leaves every pool within ten minutes.
	// Requestors stop counting on it sooner (Candidates: a record issued
	// more than 1.5 Interval ago, from a peer not connected).
	DefaultAdvertTTL = 10 * time.Minute
	// DefaultAdvertMinGap is the least time between two adverts of one
	// provider, whatever triggered them: changes of free capacity that
	// come sooner are coalesced into the next advert.
	DefaultAdvertMinGap = time.Minute
	// DefaultAdvertHold is how long a change of free capacity that matters
	// must last before it is advertised. A provider running short tasks
	// fills up and frees again many times a second; advertising each
	// state it happened to be in when MinGap allowed cost every node of
	// the swarm a signature check and the gossip mesh its forwarding, a
	// cost that grows with the swarm (at N=128 in bench/scale, 14 records
	// received per task and 7x the CPU per task of N=4), for a state
	// that was gone before the record arrived. Requestors learn a short
	// busy spell from declines instead.
	DefaultAdvertHold = 10 * time.Second
	// DefaultProvideInterval is how often the DHT provider records of the
	// capability terms are refreshed.
	DefaultProvideInterval = 10 * time.Minute
	// freePoll is how often free capacity is compared with the last advert
	// (reservations expire without an event).
	freePoll = 5 * time.Second
	// firstRefresh is when the first refresh after Start comes (Interval
	// when shorter, MinGap when longer).
	firstRefresh = time.Minute
	// intervalJitter is the fraction by which each refresh wait may differ
	// from Interval.
	intervalJitter = 0.2
)

// AdvertiserConfig describes what a provider advertises.
type AdvertiserConfig struct {
	Hardware  wire.Hardware
	Executors []string
	// Isolation lists the stronger sandboxes offered ("gvisor");
	// IsolationRequired says every task runs so.
	Isolation         []string
	IsolationRequired bool
	// Price in credits per CPU-second.
	Price float64
	// Capacity is what the provider offers in all.
	Capacity wire.Resources
	// Free returns the capacity free now (Provider.Free).
	Free func() wire.Resources
	// Software is the node's version string.
	Software string
	// Interval, TTL, MinGap, Hold and ProvideInterval: see the Default*
	// constants. MinGap is raised to at most Interval. A negative Hold
	// advertises changes without waiting; a negative ProvideInterval turns
	// DHT provider records off.
	Interval        time.Duration
	TTL             time.Duration
	MinGap          time.Duration
	Hold            time.Duration
	ProvideInterval time.Duration
	Logger          *slog.Logger
}

// Advertiser publishes a provider's signed capability record on the pool's
// topic at start, when free capacity changed in a way that matters
// (FreeChangeMatters; Changed says when to look, and free capacity is also
// polled every 5 s) and stayed so for Hold, and otherwise about every
// Interval, never two adverts less than MinGap apart. It puts each record
// in its own pool (so it is served to peers that ask), and announces the
// record's capability terms as DHT provider records. A record's free capacity may thus be up to
// MinGap (plus Hold) old, or differ from the truth by less than a step that
// matters: requestors learn the rest from bids and declines.
type Advertiser struct {
	pool *Pool
	key  crypto.PrivKey
	cfg  AdvertiserConfig
	log  *slog.Logger

	mu       sync.Mutex
	seq      uint64
	lastFree wire.Resources // free capacity in the last advert
	lastAt   time.Time      // when the last advert was published
	current  []byte
	adverts  uint64 // records published since Start

	changeCh  chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewAdvertiser prepares the adverts of the node that runs pool. Call Start
// to publish.
func NewAdvertiser(pool *Pool, cfg AdvertiserConfig) (*Advertiser, error) {
	key := pool.h.Peerstore().PrivKey(pool.h.ID())
	if key == nil {
		return nil, errors.New("advertiser: the host's private key is not in its peerstore")
	}
	if cfg.Free == nil {
		return nil, errors.New("advertiser: Free is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultAdvertInterval
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultAdvertTTL
	}
	if cfg.TTL > wire.MaxCapsTTL {
		cfg.TTL = wire.MaxCapsTTL
	}
	if cfg.MinGap <= 0 {
		cfg.MinGap = DefaultAdvertMinGap
	}
	cfg.MinGap = min(cfg.MinGap, cfg.Interval)
	switch {
	case cfg.Hold == 0:
		cfg.Hold = DefaultAdvertHold
	case cfg.Hold < 0:
		cfg.Hold = 0
	}
	if cfg.ProvideInterval == 0 {
		cfg.ProvideInterval = DefaultProvideInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Advertiser{
		pool: pool, key: key, cfg: cfg, log: cfg.Logger.With("sys", "advert"),
		changeCh: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
	}, nil
}

// Start publishes the first record and starts the advert loop.
func (a *Advertiser) Start() error {
	// The host's own addresses changing (a relay reservation taken, a
	// port mapped) makes the record's addresses stale: that is told at
	// once (addrMinGap), not at the next refresh.
	sub, err := a.pool.h.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		return fmt.Errorf("advertiser: watch addresses: %w", err)
	}
	rec, err := a.publish()
	if err != nil {
		sub.Close()
		return err
	}
	a.wg.Add(1)
	go a.loop(sub)
	if a.cfg.ProvideInterval > 0 && a.pool.net.Routing != nil {
		a.wg.Add(1)
		go a.provideLoop(Terms(rec))
	}
	return nil
}

// Changed tells the advertiser that free capacity may have changed; when
// the change matters (FreeChangeMatters) it republishes as soon as MinGap
// allows, coalescing every change meanwhile into that one advert. Cheap
// and safe to call from any goroutine, as often as capacity changes.
func (a *Advertiser) Changed() {
	select {
	case a.changeCh <- struct{}{}:
	default:
	}
}

// Adverts returns how many records the advertiser has published.
func (a *Advertiser) Adverts() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.adverts
}

// Current returns the signed envelope last published.
func (a *Advertiser) Current() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

// Close stops advertising. The last record stays valid in other pools
// until it expires.
func (a *Advertiser) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.wg.Wait()
	})
	return nil
}

// record builds the next record.
func (a *Advertiser) record(free wire.Resources) *wire.CapRecord {
	h := a.pool.h
	now := time.Now()
	a.seq = max(a.seq+1, uint64(now.UnixNano()))
	addrs := a.addrs()
	exs := slices.Clone(a.cfg.Executors)
	slices.Sort(exs)
	return &wire.CapRecord{
		Version: wire.Version, Peer: h.ID().String(), Addrs: addrs, Hardware: a.cfg.Hardware,
		Executors: exs, Isolation: slices.Clone(a.cfg.Isolation), IsolationRequired: a.cfg.IsolationRequired,
		Price:    a.cfg.Price,
		Capacity: a.cfg.Capacity,
		Free:     wire.Resources{CPUs: max(free.CPUs, 0), MemoryBytes: max(free.MemoryBytes, 0), GPUs: max(free.GPUs, 0)},
		Software: a.cfg.Software, Seq: a.seq,
		IssuedAt: now.UnixMilli(), Expires: now.Add(a.cfg.TTL).UnixMilli(),
	}
}

// publish signs a fresh record, puts it in the pool and gossips it.
func (a *Advertiser) publish() (*wire.CapRecord, error) {
	free := a.cfg.Free()
	a.mu.Lock()
	rec := a.record(free)
	env, err := wire.SignCapRecord(rec, a.key)
	if err == nil {
		a.current, a.lastFree, a.lastAt = env, free, time.Now()
		a.adverts++
	}
	a.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("advertiser: %w", err)
	}
	a.pool.putLocal(rec, env)
	if err := a.pool.topic.Publish(a.ctx, env); err != nil && a.ctx.Err() == nil {
		return rec, fmt.Errorf("advertiser: publish: %w", err)
	}
	return rec, nil
}

// loop publishes on a change that matters once it has lasted Hold (every
// look at free capacity in between, on Changed and on the poll, found it
// so) and on the jittered refresh, always at least MinGap after the
// previous advert.
func (a *Advertiser) loop(addrSub event.Subscription) {
	defer a.wg.Done()
	defer addrSub.Close()
	// The first refresh comes after firstRefresh, not Interval: peers
	// that connected while the node started may have missed Start's
	// advert (gossip reaches only peers whose subscription is known, and
	// their record request may have come before the pool served one).
	refresh := time.NewTimer(jittered(max(min(firstRefresh, a.cfg.Interval), a.cfg.MinGap)))
	defer refresh.Stop()
	poll := time.NewTicker(freePoll)
	defer poll.Stop()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer hold.Stop()
	var heldSince time.Time // when the change now pending was first seen
	for {
		periodic, addrs := false, false
		select {
		case <-a.ctx.Done():
			return
		case <-refresh.C:
			periodic = true
		case <-poll.C:
		case <-hold.C:
		case <-a.changeCh:
		case <-addrSub.Out():
			addrs = a.addrsChanged()
			periodic = addrs
		}
		if !periodic {
			if !a.changed() {
				heldSince = time.Time{}
				hold.Stop()
				continue
			}
			if heldSince.IsZero() {
				heldSince = time.Now()
			}
			if left := a.cfg.Hold - time.Since(heldSince); left > 0 {
				hold.Reset(left)
				continue
			}
		}
		gap := a.cfg.MinGap
		if addrs {
			gap = addrMinGap
		}
		a.mu.Lock()
		wait := gap - time.Since(a.lastAt)
		a.mu.Unlock()
		if wait > 0 {
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(wait):
			}
			// Capacity may have come back meanwhile (a later change then
			// waits its own Hold); the refresh may also have fired, and
			// is reset below.
			if !periodic && !a.changed() {
				heldSince = time.Time{}
				continue
			}
		}
		if _, err := a.publish(); err != nil {
			a.log.Warn("capability advert", "err", err)
		}
		heldSince = time.Time{}
		hold.Stop()
		refresh.Reset(jittered(a.cfg.Interval))
	}
}

// addrMinGap spaces adverts made because the host's addresses changed
// (rare: a relay reservation, a port mapping; a flapping interface is
// held to one advert per addrMinGap).
const addrMinGap = 5 * time.Second

// addrsChanged reports whether the addresses a record would carry now
// differ from those of the last advert.
func (a *Advertiser) addrsChanged() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, err := wire.DecodeCapRecord(a.current)
	if err != nil {
		return true
	}
	now := a.addrs()
	return !slices.Equal(now, rec.Addrs)
}

// addrs are the host's addresses as a record carries them (p2p.AdvertAddrs:
// no LAN address beside a public or relay one; at most 32).
func (a *Advertiser) addrs() []string {
	addrs := []string{}
	for _, m := range p2p.AdvertAddrs(a.pool.h.Addrs()) {
		if len(addrs) == 32 {
			break
		}
		addrs = append(addrs, m.String())
	}
	return addrs
}

// changed reports whether free capacity moved in a way that matters since
// the last advert.
func (a *Advertiser) changed() bool {
	free := a.cfg.Free()
	a.mu.Lock()
	defer a.mu.Unlock()
	return FreeChangeMatters(a.lastFree, free, a.cfg.Capacity)
}

// jittered returns d changed by a uniform random fraction within
// ±intervalJitter.
func jittered(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (1 - intervalJitter + 2*intervalJitter*rand.Float64()))
}

// FreeChangeMatters reports whether free capacity moving from was to now
// should be advertised before the next refresh: when the provider fills
// up or frees again (less than one CPU free, no GPU free, or less than
// 512 MiB of memory free, or back), or when free CPUs, GPUs or memory move
// by more than half of what it offers. Anything smaller waits for the
// periodic refresh: requestors learn it from bids and declines (and from
// what they placed there themselves), so that running tasks does not make
// every node in the swarm check an advert for each one (with adverts on
// every step, one task on an idle provider cost each of N nodes a
// signature check). A 2-CPU provider going from 2 free CPUs to 1 stays
// quiet, from 1 to 0 does not; a 64-CPU provider going from 60 to 40 stays
// quiet, to 27 does not.
func FreeChangeMatters(was, now, capacity wire.Resources) bool {
	half := func(a, b, c float64) bool { return c > 0 && math.Abs(a-b) > c/2 }
	full := func(r wire.Resources, gpus bool) bool {
		return r.CPUs < 1 || r.MemoryBytes < minFreeMemory || (gpus && r.GPUs <= 0)
	}
	gpus := capacity.GPUs > 0
	switch {
	case full(was, false) != full(now, false), gpus && (was.GPUs <= 0) != (now.GPUs <= 0):
		return true
	case half(was.CPUs, now.CPUs, capacity.CPUs), half(float64(was.GPUs), float64(now.GPUs), float64(capacity.GPUs)),
		half(float64(was.MemoryBytes), float64(now.MemoryBytes), float64(capacity.MemoryBytes)):
		return true
	}
	return false
}

// minFreeMemory is the free memory below which a provider counts as full
// for FreeChangeMatters (a typical small task's memory).
const minFreeMemory = 512 << 20

// provideLoop announces the record's terms in the DHT, again every
// ProvideInterval, and retries sooner while the routing table is empty.
func (a *Advertiser) provideLoop(terms []string) {
	defer a.wg.Done()
	wait := time.Second
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(wait):
		}
		var failed error
		for _, term := range terms {
			ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
			err := a.pool.net.Routing.Provide(ctx, TermCID(a.pool.net.Namespace, term), true)
			cancel()
			if err != nil {
				failed = err
				break
			}
		}
		if a.ctx.Err() != nil {
			return
		}
		if failed != nil {
			a.log.Debug("dht provide", "err", failed)
			wait = min(max(wait*2, 5*time.Second), a.cfg.ProvideInterval)
			continue
		}
		wait = a.cfg.ProvideInterval
	}
}
