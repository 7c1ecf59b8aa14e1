package market

import (
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPeerIDMemo: the memo gives what peer.ID.String and peer.Decode give,
// remembers no text that is not an ID, and never holds more than its bound.
func TestPeerIDMemo(t *testing.T) {
	m := &peerIDMemo{text: map[peer.ID]string{}, ids: map[string]peer.ID{}}
	for i := range maxPeerIDs + 10 {
		_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second time from the memo
			if s := m.String(id); s != id.String() {
				t.Fatalf("String(%d) = %q, want %q", i, s, id.String())
			}
			if got, err := m.Decode(id.String()); err != nil || got != id {
				t.Fatalf("Decode(%d) = %v, %v", i, got, err)
			}
		}
	}
	if len(m.text) > maxPeerIDs || len(m.ids) > maxPeerIDs {
		t.Fatalf("memo holds %d and %d entries, bound %d", len(m.text), len(m.ids), maxPeerIDs)
	}
	for _, bad := range []string{"", "not-a-peer", "12D3KooW"} {
		if _, err := m.Decode(bad); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
		if _, ok := m.ids[bad]; ok {
			t.Errorf("Decode(%q) was remembered", bad)
		}
	}
}
