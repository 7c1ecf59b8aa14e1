package stream

import (
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// maxLimited bounds the peers a Limiter tracks; past it the table starts
// over.
const maxLimited = 10_000

// Limiter rate-limits messages per remote peer.
type Limiter struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[peer.ID]*rate.Limiter
}

// NewLimiter allows each peer r messages a second with bursts of burst.
func NewLimiter(r rate.Limit, burst int) *Limiter {
	return &Limiter{r: r, burst: burst, m: map[peer.ID]*rate.Limiter{}}
}

// Allow reports whether p may send one more message now.
func (l *Limiter) Allow(p peer.ID) bool {
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

// Accept begins serving one request stream: it bounds the exchange by
// d, applies the peer's rate limit and reads one frame of at most max
// bytes. When any of that fails it resets the stream (a remote peer's fault
// is logged at debug level only) and ok is false.
func Accept(s network.Stream, limit *Limiter, d time.Duration, max int, log *slog.Logger, what string) (from peer.ID, body []byte, ok bool) {
	_ = s.SetDeadline(time.Now().Add(d))
	from = s.Conn().RemotePeer()
	if !limit.Allow(from) {
		s.Reset()
		return from, nil, false
	}
	body, err := ReadFrame(NewReader(s), max)
	if err != nil {
		log.Debug("bad "+what+" frame", "peer", from, "err", err)
		s.Reset()
		return from, nil, false
	}
	return from, body, true
}
