package market

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// Targeted auctions. When the requestor's pool knows providers that match
// a task (RequestorConfig.Candidates), it does not gossip the announcement
// to every provider: it ranks the candidates (chooseCandidates) and asks
// the first Fanout of them directly, each on its own ask stream (wire.
// ProtoAsk), which carries the bid back. Only when every asked candidate
// declined or stayed silent does it ask more (twice as many each wave). A
// task never waits for a provider it did not ask, so the bids per task and
// the time an auction takes do not grow with the swarm. The gossip
// announcement remains for when the pool knows no candidate, or when no
// candidate answered at all.

// DefaultFanout is how many candidates a targeted auction asks first.
const DefaultFanout = 3

// Candidate is what the requestor knows of a provider that may take a
// task, from its capability record (package discovery's pool).
type Candidate struct {
	Peer peer.ID
	// Price per CPU-second, as advertised.
	Price float64
	// Free is the capacity the provider advertised as free when it issued
	// its record: coarse (adverts are rate-limited), refined by the
	// requestor's own view (its tasks there, recent busy answers).
	Free wire.Resources
	// IssuedAt is when the record was issued.
	IssuedAt time.Time
}

// Timing of a targeted auction.
const (
	// answerGrace is how long a wave still waits for the candidates asked
	// once one of them made an acceptable bid: long enough for an honest
	// provider across a wide-area network (a dial and a round trip), short
	// enough that a candidate that never answers (gone, or an identity
	// that only advertises) costs little, and only once: it is ranked
	// last from then on.
	answerGrace = 250 * time.Millisecond
	// busyFor is how long a provider that declined busy is ranked as
	// having no free capacity.
	busyFor = 2 * time.Second
	// declinedFor is how long a provider that declined for another reason
	// (it lacks the executor, the image...) is ranked after the others.
	declinedFor = 30 * time.Second
	// lookupGap spaces the lookups of more candidates (Discover).
	lookupGap = 5 * time.Second
	// maxHolders bounds the providers remembered per image and the images
	// remembered, for ranking by locality.
	maxHolders      = 64
	maxHolderImages = 1024
)

// provView is what the requestor learned of one provider beyond its
// advert (guarded by Requestor.mu).
type provView struct {
	// load is how many of this requestor's executions the provider holds
	// now (awarded or running).
	load int
	// busyUntil and declinedUntil rank it down after a busy answer (or a
	// queued start) and after another decline.
	busyUntil, declinedUntil time.Time
}

// view returns p's entry, creating it; caller holds r.mu.
func (r *Requestor) viewLocked(p peer.ID) *provView {
	v := r.views[p]
	if v == nil {
		if len(r.views) >= maxSilentBook {
			// Forget idle providers rather than grow; loads stay exact
			// for providers holding tasks.
			for k, old := range r.views {
				if old.load == 0 {
					delete(r.views, k)
				}
			}
		}
		v = &provView{}
		r.views[p] = v
	}
	return v
}

// noteExecutions updates the providers' loads from the executions an
// update changed: one more when an execution is awarded, one less when an
// awarded or running one ends.
func (r *Requestor) noteExecutions(before map[string]AttemptState, t *Task) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range t.Executions {
		prev, had := before[fmt.Sprint(e.Provider, "/", e.Attempt)]
		wasActive := had && (prev == AttemptAwarded || prev == AttemptRunning)
		isActive := e.State == AttemptAwarded || e.State == AttemptRunning
		if isActive == wasActive || (isActive && had) {
			continue
		}
		p, err := peerIDs.Decode(e.Provider)
		if err != nil {
			continue // not a peer this requestor awarded: no view
		}
		if isActive {
			r.viewLocked(p).load++
		} else if v := r.views[p]; v != nil && v.load > 0 {
			v.load--
		}
	}
}

// noteAnswer refines the view of a provider from its answer to an ask or
// an announcement, and remembers which providers hold the image.
func (r *Requestor) noteAnswer(from peer.ID, image string, bid wire.Bid) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.viewLocked(from)
	switch {
	case bid.Decline != "" && bid.Busy:
		v.busyUntil = now.Add(busyFor)
	case bid.Decline != "":
		v.declinedUntil = now.Add(declinedFor)
	case bid.StartMS > 0:
		v.busyUntil = now.Add(min(time.Duration(bid.StartMS)*time.Millisecond, busyFor))
	}
	if image == "" || bid.Decline != "" {
		return
	}
	holders := r.holders[image]
	if bid.HasImage {
		if holders == nil {
			if len(r.holders) >= maxHolderImages {
				clear(r.holders) // relearned from the next bids
			}
			holders = map[peer.ID]bool{}
			r.holders[image] = holders
		}
		if len(holders) < maxHolders {
			holders[from] = true
		}
	} else if holders != nil {
		delete(holders, from)
	}
}

// chooseCandidates ranks the candidates that may be asked for t (neither
// excluded nor failed before), best first: those whose free capacity
// (advertised, less what this requestor placed there since, and none
// while they said busy) fits the task, then those not recently declining
// or silent, then those that answered this requestor before (an advert
// costs nothing: a provider never heard from is asked through the
// exploration place below until it answers once), then by the task's
// strategy (price, or price per success;
// "fastest" puts the providers holding the image first), then those
// holding the image; ties are broken at random, so that equal providers
// share the work. With a fanout of 3 or more, the last of the first
// fanout places goes to a candidate drawn at random from the rest (among
// those ranked as well as the first of them), so that new and idle
// providers are asked too.
func (r *Requestor) chooseCandidates(t *Task, cands []Candidate, skip map[string]bool, fanout int) []peer.ID {
	need := normalize(t.Spec.Resources)
	now := time.Now()
	// Everything below is keyed by peer.ID, whose bytes are the map key:
	// the base58 form (peer.ID.String) of every candidate cost more than
	// the rest of the ranking together at 128 candidates. The few
	// strings (the excluded, the pin, reputations) are turned once.
	skipped := make(map[peer.ID]bool, len(skip))
	for id := range skip {
		if p, err := peer.Decode(id); err == nil {
			skipped[p] = true
		}
	}
	var pin peer.ID
	if t.Spec.Provider != "" {
		p, err := peer.Decode(t.Spec.Provider)
		if err != nil {
			return nil // a pin no peer can match (specs are checked before)
		}
		pin = p
	}
	var rep map[string]Reputation
	if t.Spec.Strategy == StrategyReputation {
		ids := make([]string, len(cands))
		for i, c := range cands {
			ids[i] = peerIDs.String(c.Peer)
		}
		rep = r.rep.of(ids...)
	}
	type ranked struct {
		id                 peer.ID
		fits, quiet, heard bool
		local              bool
		key                float64
		tie                uint64
	}
	r.mu.Lock()
	holders := r.holders[t.Spec.Image]
	list := make([]ranked, 0, len(cands))
	seen := make(map[peer.ID]bool, len(cands))
	for _, c := range cands {
		if seen[c.Peer] || skipped[c.Peer] || c.Peer == r.h.ID() || (pin != "" && c.Peer != pin) {
			continue
		}
		seen[c.Peer] = true
		v := r.views[c.Peer]
		free := c.Free
		quiet := r.silent[c.Peer] == 0
		if v != nil {
			free.CPUs -= float64(v.load) * need.CPUs
			free.MemoryBytes -= int64(v.load) * need.MemoryBytes
			if now.Before(v.busyUntil) {
				free = wire.Resources{}
			}
			quiet = quiet && !now.Before(v.declinedUntil)
		}
		key := c.Price
		if rep != nil {
			key = c.Price / rep[peerIDs.String(c.Peer)].SuccessRate()
		}
		list = append(list, ranked{
			id: c.Peer, fits: free.CPUs >= need.CPUs && free.MemoryBytes >= need.MemoryBytes && free.GPUs >= need.GPUs,
			quiet: quiet, heard: r.heard[c.Peer], local: holders[c.Peer], key: key, tie: rand.Uint64(),
		})
	}
	r.mu.Unlock()
	first := func(b bool) int {
		if b {
			return -1
		}
		return 1
	}
	slices.SortFunc(list, func(a, b ranked) int {
		if a.fits != b.fits {
			return first(a.fits)
		}
		if a.quiet != b.quiet {
			return first(a.quiet)
		}
		if a.heard != b.heard {
			return first(a.heard)
		}
		if t.Spec.Strategy == StrategyFastest && a.local != b.local {
			return first(a.local)
		}
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		if a.local != b.local {
			return first(a.local)
		}
		return cmp.Compare(a.tie, b.tie)
	})
	if fanout >= 3 && len(list) > fanout {
		// Exploration: the last of the first wave's places goes to one of
		// the others, drawn at random among those ranked as well as the
		// first of them (fitting and quiet when any are).
		pool := list[fanout-1:]
		n := 1
		for n < len(pool) && pool[n].fits == pool[0].fits && pool[n].quiet == pool[0].quiet {
			n++
		}
		j := fanout - 1 + rand.IntN(n)
		list[fanout-1], list[j] = list[j], list[fanout-1]
	}
	out := make([]peer.ID, len(list))
	for i, c := range list {
		out[i] = c.id
	}
	return out
}

// askResult is how one ask ended: answered (a bid or a decline that
// reached the auction, or was refused by it), or not, with the error.
type askResult struct {
	from     peer.ID
	answered bool
	err      error
	// verdictOnly marks the second result of an ask whose bid was taken,
	// sent once its verdict was written (askWaves does not count it).
	verdictOnly bool
}

// askWaves runs a targeted auction: it asks the ranked candidates in
// waves (fanout, then twice as many each time), each wave until every
// asked candidate answered (or answerGrace after a first acceptable bid)
// or the bid window closed, and stops after the first wave that brought
// an acceptable bid. It returns the answers taken into the auction and
// the candidates that were asked and did not answer, with why.
func (r *Requestor) askWaves(t *Task, a *auction, ann wire.Announce, ranked []peer.ID, fanout int) ([]bidFrom, map[peer.ID]error) {
	var got []bidFrom
	silent := map[peer.ID]error{}
	asked := 0
	acceptable := func(b bidFrom) bool {
		return b.bid.Decline == "" && (t.Spec.MaxPrice <= 0 || b.bid.Price <= t.Spec.MaxPrice)
	}
	for wave := fanout; asked < len(ranked) && asked < maxBidsPerAuction; wave *= 2 {
		batch := ranked[asked:min(asked+wave, len(ranked), maxBidsPerAuction)]
		asked += len(batch)
		deadline := time.Now().Add(r.cfg.BidWindow)
		ann.BidDeadline = deadline.UnixMilli()
		ctx, cancel := context.WithDeadline(r.ctx, deadline)
		results := make(chan askResult, 2*len(batch))
		for _, p := range batch {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.ask(ctx, p, &ann, a, results)
			}()
		}
		pending, good := len(batch), false
		var grace <-chan time.Time
		for pending > 0 {
			select {
			case res := <-results:
				if res.verdictOnly {
					continue
				}
				pending--
				if !res.answered {
					silent[res.from] = res.err
				}
			case b := <-a.bids:
				got = append(got, b)
				if !good && acceptable(b) {
					good = true
					grace = time.After(answerGrace)
				}
			case <-grace:
				cancel() // the rest end now, unanswered
			}
		}
		cancel()
	drain:
		for {
			select {
			case b := <-a.bids:
				got = append(got, b)
				good = good || acceptable(b)
			default:
				break drain
			}
		}
		if r.ctx.Err() != nil || slices.ContainsFunc(got, acceptable) {
			break
		}
	}
	return got, silent
}

// ask sends the announcement to one candidate on an ask stream and takes
// its bid (or decline) into the auction as handleBid would. A refused bid
// is answered at once. A taken bid's ack waits for the auction's verdict
// (verdict): kept for the winner, "lost" for the others, so that losing
// providers let go of what they reserved without a cancel stream each.
// The answer is reported on results as soon as it is read; the goroutine
// then waits for the verdict, at most verdictWait.
func (r *Requestor) ask(ctx context.Context, p peer.ID, ann *wire.Announce, a *auction, results chan<- askResult) {
	res := askResult{from: p}
	defer func() { results <- res }()
	s, err := r.h.NewStream(network.WithAllowLimitedConn(ctx, "ask"), p, wire.ProtoAsk)
	if err != nil {
		res.err = fmt.Errorf("open ask stream: %w", err)
		return
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := stream.WriteMsg(s, ann); err != nil {
		stop()
		res.err = err
		return
	}
	body, err := stream.ReadFrame(stream.NewReader(s), wire.MaxBidSize)
	if !stop() || err != nil {
		if err == nil {
			err = errors.New("the wave ended first")
		}
		res.err = fmt.Errorf("read answer: %w", err)
		s.Reset()
		return
	}
	bid, err := wire.Decode[wire.Bid](body)
	if err != nil {
		res.err = fmt.Errorf("bad answer: %w", err)
		s.Reset()
		return
	}
	if bid.TaskID != ann.TaskID || bid.Attempt != ann.Attempt {
		res.err = fmt.Errorf("answered for another task (%s/%d): %s", bid.TaskID, bid.Attempt, bid.Decline)
		_ = stream.WriteMsg(s, &wire.BidAck{Code: wire.CodeBadRequest, Reason: "answer for another task"})
		return
	}
	res.answered = true
	verdict := make(chan *wire.BidAck, 1)
	ack := r.takeBid(p, bid, func() { a.verdicts[p] = verdict })
	if !ack.OK || bid.Decline != "" {
		_ = stream.WriteMsg(s, ack)
		return
	}
	results <- res // the auction goes on; this goroutine waits for the verdict
	res = askResult{from: p, answered: true, verdictOnly: true}
	_ = s.SetDeadline(time.Now().Add(verdictWait + time.Second))
	timer := time.NewTimer(verdictWait)
	defer timer.Stop()
	select {
	case ack = <-verdict:
	case <-timer.C:
		ack = &wire.BidAck{Code: wire.CodeAuctionClosed, Reason: "no verdict in time"}
	case <-r.ctx.Done():
		ack = &wire.BidAck{Code: wire.CodeAuctionClosed, Reason: "the requestor is stopping"}
	}
	_ = stream.WriteMsg(s, ack)
}

// verdictWait bounds how long an asked provider's taken bid waits for the
// auction's verdict (the rest of its wave and the award); below the
// provider's askTimeout, so the requestor answers before it gives up.
const verdictWait = askTimeout - time.Second

// verdict answers, on its ask stream, a taken bid of provider p in
// auction a: ack OK keeps what the bid reserved (the winner), anything
// else lets it go. Bids that did not come on an ask stream have no
// verdict (they get a cancel stream, releaseBids); verdict reports whether
// p's had one. Safe to call more than once per provider.
func (r *Requestor) verdict(a *auction, p peer.ID, ack *wire.BidAck) bool {
	r.mu.Lock()
	ch, ok := a.verdicts[p]
	delete(a.verdicts, p)
	r.mu.Unlock()
	if ok {
		ch <- ack // buffered, one verdict per channel
	}
	return ok
}

// lostAll gives every bid of a still waiting for a verdict the answer
// that it lost.
func (r *Requestor) lostAll(a *auction, why string) {
	r.mu.Lock()
	chs := a.verdicts
	a.verdicts = map[peer.ID]chan *wire.BidAck{}
	r.mu.Unlock()
	for _, ch := range chs {
		ch <- &wire.BidAck{Code: wire.CodeAuctionClosed, Reason: why}
	}
}

// takeBid takes one bid (or decline) into its auction and returns the ack
// for its provider; taken, when set, runs under the lock once the bid is
// in. The bid is taken under the same lock that closes the auction (runAuction deletes it, then drains its channel): a bid is
// either read by the auction or refused, never acknowledged and left
// unread.
func (r *Requestor) takeBid(from peer.ID, bid *wire.Bid, taken func()) *wire.BidAck {
	r.mu.Lock()
	a := r.auctions[bid.TaskID]
	refusal := authorizeBid(a, from, bid)
	if refusal == nil {
		select {
		case a.bids <- bidFrom{from: from, bid: *bid, at: time.Now().UTC()}:
			if taken != nil {
				taken()
			}
		default:
			refusal = &wire.BidAck{Code: wire.CodeTooMany, Reason: "too many bids"}
		}
	}
	image := ""
	if a != nil {
		image = a.image
	}
	r.mu.Unlock()
	if refusal != nil {
		r.log.Debug("bid refused", "task", bid.TaskID, "peer", from, "code", refusal.Code, "reason", refusal.Reason)
		return refusal
	}
	r.noteAnswer(from, image, *bid)
	observe(r.cfg.Observer).BidReceived()
	return &wire.BidAck{OK: true}
}

// lookupMore asks the discovery layer, in the background, for more
// candidates matching req (RequestorConfig.Discover), at most one lookup
// at a time and one per lookupGap.
func (r *Requestor) lookupMore(req wire.Requirements, want int) {
	if r.cfg.Discover == nil {
		return
	}
	r.mu.Lock()
	if r.looking || time.Since(r.lookedAt) < lookupGap || r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.looking, r.lookedAt = true, time.Now()
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ProviderWait)
		defer cancel()
		r.cfg.Discover(ctx, req, want)
		r.mu.Lock()
		r.looking = false
		r.mu.Unlock()
	}()
}
