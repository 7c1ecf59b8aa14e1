package discovery

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// Candidates returns the other providers in the pool that may take a task
// with these requirements and are alive (connected, or their record was
// issued within the last advert interval and a half), with what their
// records say of price and free capacity. It is
// market.RequestorConfig.Candidates: a targeted auction asks a few of them.
func (p *Pool) Candidates(req wire.Requirements) []market.Candidate {
	f := FilterFor(req)
	recent := time.Now().Add(-DefaultAdvertInterval * 3 / 2).UnixMilli()
	var out []market.Candidate
	for _, e := range p.List(f) {
		id := e.Record.PeerID()
		if id == p.h.ID() || (req.Provider != "" && e.Record.Peer != req.Provider) {
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
