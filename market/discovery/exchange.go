package discovery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// This file holds the record exchange (wire.ProtoCaps): answering a peer's
// CapsRequest with a random sample of the matching records, and asking
// peers for theirs.

// handleCaps answers a CapsRequest. At most serveConcurrency requests are
// answered at once (each scans the pool); one that waits longer than
// serveWait for its turn is reset.
func (p *Pool) handleCaps(s network.Stream) {
	from := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(askTimeout))
	body, err := stream.ReadFrame(stream.NewReader(s), wire.MaxCapsRequestSize)
	if err != nil {
		p.log.Debug("bad caps request", "peer", from, "err", err)
		s.Reset()
		return
	}
	req, err := wire.Decode[wire.CapsRequest](body)
	if err != nil {
		p.log.Debug("bad caps request", "peer", from, "err", err)
		s.Reset()
		return
	}
	t := time.NewTimer(serveWait)
	defer t.Stop()
	select {
	case p.serveSem <- struct{}{}:
	case <-t.C:
		p.log.Debug("caps request dropped: busy", "peer", from)
		s.Reset()
		return
	case <-p.ctx.Done():
		s.Reset()
		return
	}
	resp := p.answer(req, time.Now())
	<-p.serveSem
	if err := stream.WriteMsg(s, &resp); err != nil {
		s.Reset()
		return
	}
	s.Close()
}

// answer builds the response to req: the node's own record first when it
// matches, then a uniform random sample of the other unexpired records
// that match req.Filter and are newer than what req.Have lists, at most
// req.Max (or wire.MaxCapsRecords) in all and half of
// wire.MaxCapsResponseSize in bytes.
func (p *Pool) answer(req *wire.CapsRequest, now time.Time) wire.CapsResponse {
	limit := req.Max
	if limit <= 0 || limit > wire.MaxCapsRecords {
		limit = wire.MaxCapsRecords
	}
	f := PoolFilter{}
	if req.Filter != nil {
		f = poolFilterOf(req.Filter)
	}
	wanted := func(e *PoolEntry) bool {
		if e.Record.Expired(now) || !f.Match(&e.Record) {
			return false
		}
		seq, ok := req.Have[e.Record.Peer]
		return !ok || e.Record.Seq > seq
	}
	resp := wire.CapsResponse{Records: [][]byte{}}
	p.mu.Lock()
	defer p.mu.Unlock()
	self := p.entries[p.h.ID()]
	if self != nil && wanted(self) {
		resp.Records = append(resp.Records, self.Envelope)
	}
	// Reservoir sampling (Algorithm R) over the others, in one pass.
	sample := make([]*PoolEntry, 0, limit-len(resp.Records))
	seen := 0
	for id, e := range p.entries {
		if id == p.h.ID() || !wanted(e) {
			continue
		}
		seen++
		if len(sample) < cap(sample) {
			sample = append(sample, e)
		} else if j := rand.IntN(seen); j < len(sample) {
			sample[j] = e
		}
	}
	size := 0
	for _, b := range resp.Records {
		size += len(b)
	}
	for _, e := range sample {
		if size+len(e.Envelope) > wire.MaxCapsResponseSize/2 {
			break
		}
		resp.Records = append(resp.Records, e.Envelope)
		size += len(e.Envelope)
	}
	return resp
}

// goAsk asks a newly connected peer for a sample of its records in the
// background, once at a time per peer, while the pool is small (below
// connectAskBelow providers); a failed request is tried once more after
// connectRetry. It asks over an existing connection only.
func (p *Pool) goAsk(id peer.ID) {
	if id == p.h.ID() {
		return
	}
	p.mu.Lock()
	if p.asking[id] || p.ctx.Err() != nil || !p.started || len(p.entries) >= connectAskBelow {
		p.mu.Unlock()
		return
	}
	p.asking[id] = true
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.asking, id)
			p.mu.Unlock()
		}()
		// A peer that connected while it was starting may not serve
		// records yet: ask once more, a little later.
		for try := range 2 {
			if try > 0 {
				select {
				case <-p.ctx.Done():
					return
				case <-time.After(connectRetry):
				}
			}
			select {
			case p.askSem <- struct{}{}:
			case <-p.ctx.Done():
				return
			}
			// Over the connection that made us ask, never a new one: a peer
			// that left meanwhile (or whose connection was trimmed) is not
			// worth a dial, nor the DHT lookup of its addresses that a
			// dial without them starts.
			_, err := p.askPeer(network.WithNoDial(p.ctx, "caps exchange on connect"), id, nil, connectSample)
			<-p.askSem
			if err == nil {
				return
			}
			p.log.Debug("caps exchange failed", "peer", id, "try", try+1, "err", err)
		}
	}()
}

// Ask requests a random sample of the records peer id holds (at most
// connectSample, its own first) and takes in those that check out.
func (p *Pool) Ask(ctx context.Context, id peer.ID) error {
	_, err := p.askPeer(ctx, id, nil, connectSample)
	return err
}

// askPeer asks id for at most max records matching f (nil: any) and
// ingests them; it returns how many records the answer held. The request
// carries no Have map: records the pool already holds are dropped before
// their signature is checked.
func (p *Pool) askPeer(ctx context.Context, id peer.ID, f *PoolFilter, max int) (int, error) {
	req := wire.CapsRequest{Max: max}
	if f != nil {
		req.Filter = f.wire()
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	var resp wire.CapsResponse
	if err := stream.Request(ctx, p.h, id, wire.ProtoCaps, &req, wire.MaxCapsResponseSize, &resp); err != nil {
		return 0, fmt.Errorf("ask %s for records: %w", id.ShortString(), err)
	}
	// An old responder ignores Max; take no more than was asked for.
	if len(resp.Records) > max {
		resp.Records = resp.Records[:max]
	}
	for _, env := range resp.Records {
		p.ingest(env)
	}
	return len(resp.Records), nil
}
