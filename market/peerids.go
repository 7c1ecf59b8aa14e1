package market

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// maxPeerIDs bounds each direction of the peer ID memo; it is cleared when
// full (the next calls encode and decode again).
const maxPeerIDs = 4096

// peerIDs memoizes the base58 text of peer IDs, both ways. Records and
// wire messages name peers in text while streams give peer.IDs, so every
// task turned the same few IDs to text and back about ten times on each
// side (base58 is quadratic in the ID's length: 6-7 % of a provider's CPU
// per task). Only IDs of peers this node deals with pass through it: the
// remote ends of streams, its own, and those in its own records.
var peerIDs = &peerIDMemo{text: map[peer.ID]string{}, ids: map[string]peer.ID{}}

// peerIDMemo is a bounded two-way memo of peer.ID text; safe for
// concurrent use.
type peerIDMemo struct {
	mu   sync.Mutex
	text map[peer.ID]string
	ids  map[string]peer.ID
}

// String returns p.String().
func (m *peerIDMemo) String(p peer.ID) string {
	m.mu.Lock()
	s, ok := m.text[p]
	m.mu.Unlock()
	if ok {
		return s
	}
	s = p.String()
	m.mu.Lock()
	if len(m.text) >= maxPeerIDs {
		clear(m.text)
	}
	m.text[p] = s
	m.mu.Unlock()
	return s
}

// Decode returns peer.Decode(s); only IDs that decode are remembered.
func (m *peerIDMemo) Decode(s string) (peer.ID, error) {
	m.mu.Lock()
	p, ok := m.ids[s]
	m.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := peer.Decode(s)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	if len(m.ids) >= maxPeerIDs {
		clear(m.ids)
	}
	m.ids[s] = p
	m.mu.Unlock()
	return p, nil
}
