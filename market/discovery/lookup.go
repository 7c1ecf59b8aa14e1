package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multihash"

	"github.com/offload-project/offload/market/wire"
)

// Lookup bounds: what one lookup may cost, and how many run at once.
const (
	// lookupPeers is how many connected peers one lookup asks for matching
	// records (chosen at random).
	lookupPeers = 6
	// lookupProviders bounds the providers one lookup takes from the DHT
	// (FindProvidersAsync's count) and asks for their records.
	lookupProviders = 32
	// lookupParallel is how many record requests one lookup has in flight.
	lookupParallel = 4
	// lookupMaxRecords bounds the records one lookup asks of one peer.
	lookupMaxRecords = 64
	// lookupTimeout bounds one lookup, whoever waits for it.
	lookupTimeout = 10 * time.Second
	// lookupCooldown: after a lookup ended short of what its callers
	// wanted (the swarm seems not to have more), Lookup for the same
	// requirements returns the pool's count at once for this long.
	lookupCooldown = 5 * time.Second
	// maxLookups bounds the lookups running at once (for different
	// requirements); more wait for a slot.
	maxLookups = 4
	// maxShortLookups bounds the cooldown table.
	maxShortLookups = 1024
)

// lookup is one search for providers matching some requirements; callers
// with the same requirements share it.
type lookup struct {
	// want is the largest number of matching providers its callers want;
	// found is how many the pool holds, as last counted; progress is
	// closed (and replaced) when found grows. All three under Pool.mu.
	want     int
	found    int
	progress chan struct{}
	// done is closed when the lookup ends.
	done chan struct{}
}

// Lookup makes sure that at least want providers matching req are in the
// pool if the swarm has them, and returns how many match now (alive
// providers other than this node, as Candidates lists them before its
// MaxCandidates cap). It returns at once when the pool already
// has want; otherwise it searches, returning as soon as want match, when
// ctx ends, or when the search ends (then with fewer). The search asks a
// few connected peers (lookupPeers, at random) for records matching req
// and, with a DHT, asks the providers announcing LookupTerm(req) for
// theirs; each request asks for at most 64 records.
//
// Lookup is safe to call often and from many goroutines: concurrent calls
// with the same requirements share one search (which goes on, bounded by
// 10 s, while any caller waits), at most four searches run at once, and a
// search that found fewer than wanted is not repeated for those
// requirements within 5 s (the count is returned at once).
func (p *Pool) Lookup(ctx context.Context, req wire.Requirements, want int) int {
	n := p.countMatching(req)
	if n >= want {
		return n
	}
	key := lookupKey(req)
	p.mu.Lock()
	if p.ctx.Err() != nil || !p.started {
		p.mu.Unlock()
		return n
	}
	if at, ok := p.shortAt[key]; ok && time.Since(at) < lookupCooldown {
		p.mu.Unlock()
		return n
	}
	l := p.lookups[key]
	if l == nil {
		l = &lookup{want: want, found: n, progress: make(chan struct{}), done: make(chan struct{})}
		p.lookups[key] = l
		p.xstats.Lookups++
		p.wg.Add(1)
		go p.runLookup(key, req, l)
	}
	l.want = max(l.want, want)
	p.mu.Unlock()
	for {
		p.mu.Lock()
		found, progress := l.found, l.progress
		p.mu.Unlock()
		if found >= want {
			return found
		}
		select {
		case <-progress:
		case <-l.done:
			return p.countMatching(req)
		case <-ctx.Done():
			return p.countMatching(req)
		}
	}
}

// countMatching is how many providers in the pool may take a task with
// req and are alive, by the rule of Candidates and KnownProviders (not
// this node; connected, or the record issued within an advert interval
// and a half), without copying the pool.
func (p *Pool) countMatching(req wire.Requirements) int {
	n := 0
	p.eachAlive(req, func(peer.ID, *PoolEntry) bool { n++; return true })
	return n
}

// lookupKey identifies the requirements a lookup searches for: those that
// decide which records match.
func lookupKey(req wire.Requirements) string {
	b, _ := json.Marshal(struct {
		F PoolFilter
		P string
	}{FilterFor(req), req.Provider})
	return string(b)
}

// runLookup searches for providers matching req until l.want of them are
// in the pool, its sources are spent, lookupTimeout passes or the pool
// closes.
func (p *Pool) runLookup(key string, req wire.Requirements, l *lookup) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.lookups, key)
		if l.found < l.want {
			p.noteShortLocked(key, time.Now())
		}
		p.mu.Unlock()
		close(l.done)
	}()
	select {
	case p.lookupSem <- struct{}{}:
	case <-p.ctx.Done():
		return
	}
	defer func() { <-p.lookupSem }()
	ctx, cancel := context.WithTimeout(p.ctx, lookupTimeout)
	defer cancel()
	if p.recount(req, l) {
		return
	}
	f := FilterFor(req)

	// Peers to ask come from two sources at once: connected peers, then
	// the DHT's providers of the lookup's term that the pool lacks.
	work := make(chan peer.ID)
	var feeders sync.WaitGroup
	feeders.Add(1)
	go func() {
		defer feeders.Done()
		peers := p.h.Network().Peers()
		rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
		for _, id := range peers[:min(len(peers), lookupPeers)] {
			select {
			case work <- id:
			case <-ctx.Done():
				return
			}
		}
	}()
	if p.net.Routing != nil {
		feeders.Add(1)
		go func() {
			defer feeders.Done()
			for info := range p.net.Routing.FindProvidersAsync(ctx, TermCID(p.net.Namespace, LookupTerm(req)), lookupProviders) {
				if info.ID == p.h.ID() || info.ID == "" || p.has(info.ID) {
					continue
				}
				if len(info.Addrs) > 0 {
					p.h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.TempAddrTTL)
				}
				select {
				case work <- info.ID:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	closed := make(chan struct{})
	go func() {
		feeders.Wait()
		close(work)
		close(closed)
	}()

	var (
		askedMu sync.Mutex
		asked   = map[peer.ID]bool{}
		askers  sync.WaitGroup
	)
	for range lookupParallel {
		askers.Add(1)
		go func() {
			defer askers.Done()
			for id := range work {
				askedMu.Lock()
				again := asked[id]
				asked[id] = true
				askedMu.Unlock()
				if again || ctx.Err() != nil {
					continue
				}
				p.mu.Lock()
				p.xstats.LookupAsks++
				ask := min(lookupMaxRecords, max(2*(l.want-l.found), 8))
				p.mu.Unlock()
				if _, err := p.askPeer(ctx, id, &f, ask); err != nil {
					p.log.Debug("lookup: peer did not answer", "peer", id, "err", err)
				}
				if p.recount(req, l) {
					cancel()
				}
			}
		}()
	}
	// The feeders stop once ctx ends or their sources are spent; work is
	// closed after them, which ends the askers' loops.
	askers.Wait()
	<-closed
}

// recount updates l.found and reports whether it reached l.want.
func (p *Pool) recount(req wire.Requirements, l *lookup) bool {
	n := p.countMatching(req)
	p.mu.Lock()
	defer p.mu.Unlock()
	if n > l.found {
		close(l.progress)
		l.progress = make(chan struct{})
	}
	l.found = n
	return l.found >= l.want
}

// noteShortLocked remembers that a lookup for key ended short at now,
// forgetting entries past the cooldown and keeping the table bounded.
// Caller holds mu.
func (p *Pool) noteShortLocked(key string, now time.Time) {
	if len(p.shortAt) >= maxShortLookups {
		for k, at := range p.shortAt {
			if now.Sub(at) >= lookupCooldown {
				delete(p.shortAt, k)
			}
		}
	}
	if len(p.shortAt) < maxShortLookups {
		p.shortAt[key] = now
	}
}

// has reports whether id has an entry in the pool.
func (p *Pool) has(id peer.ID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.entries[id]
	return ok
}

// TermCID is the DHT key under which providers with a capability term
// ("executor:docker", "gpu:nvidia", "arch:amd64", "label:fpga=xilinx",
// "role:provider") announce themselves, within swarm ns.
func TermCID(ns, term string) cid.Cid {
	mh, _ := multihash.Sum([]byte("offload/caps/1/"+ns+"/"+term), multihash.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, mh)
}

// Terms returns the DHT terms of a record.
func Terms(rec *wire.CapRecord) []string {
	terms := []string{"role:provider", "os:" + rec.Hardware.OS, "arch:" + rec.Hardware.Arch}
	for _, e := range rec.Executors {
		terms = append(terms, "executor:"+e)
	}
	for _, e := range rec.Isolation {
		terms = append(terms, "isolation:"+e)
	}
	vendors := map[string]bool{}
	for _, g := range rec.Hardware.GPUs {
		if g.Vendor != "" && !vendors[g.Vendor] {
			vendors[g.Vendor] = true
			terms = append(terms, "gpu:"+g.Vendor)
		}
	}
	for k, v := range rec.Hardware.Labels {
		terms = append(terms, "label:"+k+"="+v)
	}
	slices.Sort(terms)
	return terms
}

// LookupTerm is the DHT term Lookup searches for req under: the most
// specific term every provider that may take req announces. A label
// required with its value is rarer than a stronger sandbox, which is
// rarer than a runtime, which narrows more than "role:provider";
// resources and GPU counts have no term (records are filtered after).
func LookupTerm(req wire.Requirements) string {
	// A label with a value is the rarest of all (fpga=xilinx); the first
	// in key order keeps the term the same for the same requirements.
	for _, k := range slices.Sorted(maps.Keys(req.Labels)) {
		if v := req.Labels[k]; v != "" && v != wire.LabelAny {
			return "label:" + k + "=" + v
		}
	}
	switch {
	case !isAny(req.Isolation):
		return "isolation:" + req.Isolation
	case !isAny(req.Runtime):
		return "executor:" + req.Runtime
	}
	return "role:provider"
}

// Discover finds providers announcing term in the DHT, at most
// lookupProviders of them (the search stops there), and asks those not in
// the pool for their records. It returns how many providers it found.
func (p *Pool) Discover(ctx context.Context, term string) (int, error) {
	if p.net.Routing == nil {
		return 0, errors.New("pool: no content routing (DHT) to discover providers with")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	found := 0
	for info := range p.net.Routing.FindProvidersAsync(ctx, TermCID(p.net.Namespace, term), lookupProviders) {
		if info.ID == p.h.ID() || info.ID == "" {
			continue
		}
		found++
		if p.has(info.ID) {
			continue
		}
		if len(info.Addrs) > 0 {
			p.h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.TempAddrTTL)
		}
		// Its own record comes first in its answer.
		if _, err := p.askPeer(ctx, info.ID, nil, 1); err != nil {
			p.log.Debug("discovered provider did not answer", "peer", info.ID, "err", err)
		}
	}
	return found, ctx.Err()
}

func (p *Pool) discoverLoop() {
	defer p.wg.Done()
	// Give the DHT a moment to fill its routing table first.
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		if n, err := p.Discover(p.ctx, "role:provider"); err != nil && p.ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			p.log.Debug("dht discovery", "found", n, "err", err)
		}
		t.Reset(p.cfg.DiscoverInterval)
	}
}
