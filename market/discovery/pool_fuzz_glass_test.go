package discovery

import (
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"

	"github.com/offload-project/offload/market/wire"
)

// FuzzPoolCheckGossip feeds capability-topic message bodies and authors to
// Pool.CheckGossip, the topic's check, and puts what it accepts: it must
// not panic; an accepted record decodes, is signed by its peer and that
// peer is the author; the pool never exceeds its cap.
func FuzzPoolCheckGossip(f *testing.F) {
	p, _ := glassPool(f, PoolConfig{MaxEntries: 8})
	who := freshIdentity(f)
	valid := sign(f, typicalRecord(who.id, 1, 0), who)
	f.Add(valid, []byte(who.id))
	f.Add(valid, []byte("someone else"))
	f.Add([]byte(`{"record":"e30=","sig":"AAAA"}`), []byte(who.id))
	f.Add([]byte(`{`), []byte{})
	f.Fuzz(func(t *testing.T, data, from []byte) {
		msg := &pubsub.Message{Message: &pb.Message{Data: data, From: from}}
		res, reason := p.CheckGossip(t.Context(), msg)
		if res != pubsub.ValidationAccept {
			if reason == "" {
				t.Fatalf("%v without a reason", res)
			}
			return
		}
		rec, ok := msg.ValidatorData.(*wire.CapRecord)
		if !ok {
			t.Fatal("accepted without the record in ValidatorData")
		}
		if _, err := wire.DecodeCapRecord(data); err != nil {
			t.Fatalf("accepted a record that does not decode: %v", err)
		}
		if rec.PeerID() != msg.GetFrom() {
			t.Fatalf("accepted the record of %s from author %s", rec.PeerID(), msg.GetFrom())
		}
		p.put(rec, data)
		p.mu.Lock()
		n := len(p.entries)
		p.mu.Unlock()
		if n > 8 {
			t.Fatalf("pool holds %d entries, cap 8", n)
		}
	})
}
