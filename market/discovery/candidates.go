package discovery

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// MaxCandidates bounds the candidates Candidates returns: the work of one
// auction's ranking does not grow with the pool beyond it.
const MaxCandidates = 256

// Candidates returns other providers in the pool that may take a task
// with these requirements and are alive (connected, or their record was
// issued within the last advert interval and a half), with what their
// records say of price and free capacity: all of them up to
// MaxCandidates, beyond that a sample of MaxCandidates in the map's
// random order. It reads the pool in place (no copy, no sort), so its
// cost is bounded by the sample, not the pool. It is
// market.RequestorConfig.Candidates: a targeted auction ranks them and
// asks a few.
func (p *Pool) Candidates(req wire.Requirements) []market.Candidate {
	var out []market.Candidate
	p.eachAlive(req, func(id peer.ID, e *PoolEntry) bool {
		out = append(out, market.Candidate{
			Peer: id, Price: e.Record.Price, Free: e.Record.Free, IssuedAt: time.UnixMilli(e.Record.IssuedAt),
		})
		return len(out) < MaxCandidates
	})
	return out
}

// eachAlive calls fn, under the pool's lock and in the map's order, with
// every other provider that may take a task with req (pinned to it when
// req names one) and is alive: connected, or its record was issued
// within the last advert interval and a half, so that a provider gone
// away stops being asked long before its record expires. It stops when
// fn returns false. Candidates, KnownProviders and Lookup's count all
// choose by it.
func (p *Pool) eachAlive(req wire.Requirements, fn func(id peer.ID, e *PoolEntry) bool) {
	f := FilterFor(req)
	now := time.Now()
	recent := now.Add(-DefaultAdvertInterval * 3 / 2).UnixMilli()
	self := p.h.ID()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, e := range p.entries {
		if id == self || (req.Provider != "" && e.Record.Peer != req.Provider) || e.Record.Expired(now) || !f.Match(&e.Record) {
			continue
		}
		if e.Record.IssuedAt < recent && p.h.Network().Connectedness(id) != network.Connected {
			continue
		}
		if !fn(id, e) {
			return
		}
	}
}
