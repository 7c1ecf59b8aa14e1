package market

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
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
