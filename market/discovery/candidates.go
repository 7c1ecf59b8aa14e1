package discovery

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"

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
	f := FilterFor(req)
	now := time.Now()
	recent := now.Add(-DefaultAdvertInterval * 3 / 2).UnixMilli()
	self := p.h.ID()
	var out []market.Candidate
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, e := range p.entries {
		if len(out) == MaxCandidates {
			break
		}
		if id == self || (req.Provider != "" && e.Record.Peer != req.Provider) || e.Record.Expired(now) || !f.Match(&e.Record) {
			continue
		}
		if e.Record.IssuedAt < recent && p.h.Network().Connectedness(id) != network.Connected {
			continue
		}
		out = append(out, market.Candidate{
			Peer: id, Price: e.Record.Price, Free: e.Record.Free, IssuedAt: time.UnixMilli(e.Record.IssuedAt),
		})
	}
	return out
}
