package market

import (
	"bufio"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/offload-project/offload/p2p"
)

// Per-peer rates for messages that make this node do work. They are far
// above what an honest peer sends (a requestor announcing hundreds of tasks
// a second stays under them) and stop a flood at the first hop.
const (
	announceRate  = 500 // announcements per second per requestor
	announceBurst = 1000
	streamRate    = 1000 // bids, reports, awards per second per peer
	streamBurst   = 2000
	// maxLimited bounds the peers tracked; past it the table starts over.
	maxLimited = 10_000
)

// peerLimiter rate-limits messages per remote peer.
type peerLimiter struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[peer.ID]*rate.Limiter
}

func newPeerLimiter(r rate.Limit, burst int) *peerLimiter {
	return &peerLimiter{r: r, burst: burst, m: map[peer.ID]*rate.Limiter{}}
}

// allow reports whether p may send one more message now.
func (l *peerLimiter) allow(p peer.ID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[p]
	if !ok {
		if len(l.m) >= maxLimited {
			l.m = map[peer.ID]*rate.Limiter{}
		}
		lim = rate.NewLimiter(l.r, l.burst)
		l.m[p] = lim
	}
	return lim.Allow()
}

// openRequest begins serving one request stream: it bounds the exchange by
// d, applies the peer's rate limit and reads one frame of at most max
// bytes. When any of that fails it resets the stream (a remote peer's fault
// is logged at debug level only) and ok is false.
func openRequest(s network.Stream, limit *peerLimiter, d time.Duration, max int, log *slog.Logger, what string) (from peer.ID, body []byte, ok bool) {
	_ = s.SetDeadline(time.Now().Add(d))
	from = s.Conn().RemotePeer()
	if !limit.allow(from) {
		s.Reset()
		return from, nil, false
	}
	body, err := p2p.ReadFrame(bufio.NewReader(s), max)
	if err != nil {
		log.Debug("bad "+what+" frame", "peer", from, "err", err)
		s.Reset()
		return from, nil, false
	}
	return from, body, true
}
