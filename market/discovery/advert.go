package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/offload-project/offload/market/wire"
)

// Advertiser defaults, used when AdvertiserConfig leaves a field at zero.
const (
	// DefaultAdvertInterval is how often a provider republishes its record.
	DefaultAdvertInterval = 30 * time.Second
	// DefaultAdvertTTL is how long a record stays valid: four intervals, so
	// a provider that goes away leaves every pool within two minutes.
	DefaultAdvertTTL = 2 * time.Minute
	// DefaultAdvertMinGap spaces adverts triggered by changes of free
	// capacity (the receivers' rate limit allows about two a second).
	DefaultAdvertMinGap = time.Second
	// DefaultProvideInterval is how often the DHT provider records of the
	// capability terms are refreshed.
	DefaultProvideInterval = 10 * time.Minute
	// freePoll is how often free capacity is compared with the last advert
	// (reservations expire without an event).
	freePoll = 5 * time.Second
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
	// Interval, TTL, MinGap and ProvideInterval: see the Default* constants.
	// A negative ProvideInterval turns DHT provider records off.
	Interval        time.Duration
	TTL             time.Duration
	MinGap          time.Duration
	ProvideInterval time.Duration
	Logger          *slog.Logger
}

// Advertiser publishes a provider's signed capability record on the pool's
// topic at start, when free capacity changes (Changed) and every Interval,
// puts it in its own pool (so it is served to peers that ask), and
// announces the record's capability terms as DHT provider records.
type Advertiser struct {
	pool *Pool
	key  crypto.PrivKey
	cfg  AdvertiserConfig
	log  *slog.Logger

	mu       sync.Mutex
	seq      uint64
	lastFree wire.Resources
	current  []byte

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
	rec, err := a.publish()
	if err != nil {
		return err
	}
	a.wg.Add(1)
	go a.loop()
	if a.cfg.ProvideInterval > 0 && a.pool.net.Routing != nil {
		a.wg.Add(1)
		go a.provideLoop(Terms(rec))
	}
	return nil
}

// Changed tells the advertiser that free capacity may have changed; it
// republishes soon (coalescing bursts). Safe to call from any goroutine.
func (a *Advertiser) Changed() {
	select {
	case a.changeCh <- struct{}{}:
	default:
	}
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
	addrs := []string{}
	for _, m := range h.Addrs() {
		if len(addrs) == 32 {
			break
		}
		addrs = append(addrs, m.String())
	}
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
		a.current, a.lastFree = env, free
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

func (a *Advertiser) loop() {
	defer a.wg.Done()
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	poll := time.NewTicker(freePoll)
	defer poll.Stop()
	last := time.Now()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		case <-poll.C:
			a.mu.Lock()
			same := a.lastFree == a.cfg.Free()
			a.mu.Unlock()
			if same {
				continue
			}
		case <-a.changeCh:
			if wait := a.cfg.MinGap - time.Since(last); wait > 0 {
				select {
				case <-a.ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			a.mu.Lock()
			same := a.lastFree == a.cfg.Free()
			a.mu.Unlock()
			if same {
				continue
			}
		}
		if _, err := a.publish(); err != nil {
			a.log.Warn("capability advert", "err", err)
		}
		last = time.Now()
	}
}

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
