package discovery

import (
	"testing"
	"time"

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

// FuzzPoolAnswer decodes request bytes as the record protocol's handler
// does and answers them from a pool of 40 records: it must not panic, and
// an answer holds at most the request's Max records (MaxCapsRecords when
// unset), within half of MaxCapsResponseSize, each matching the filter.
func FuzzPoolAnswer(f *testing.F) {
	p, _ := glassPool(f, PoolConfig{RecordRate: 1e6, RecordBurst: 1})
	fillPool(f, p, 40)
	f.Add([]byte(`{"max":5,"filter":{"executor":"docker","cpus":2}}`))
	f.Add([]byte(`{"have":{"12D3KooWBJhwXtL1LHwEExyGDeQ9q9TjtTvMx9sz69g9wWt4PzX1":3}}`))
	f.Add([]byte(`{"filter":{"labels":{"zone":"eu-west"},"gpu_model":"a100","arch":"x86_64"}}`))
	f.Add([]byte(`{"max":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := wire.Decode[wire.CapsRequest](data)
		if err != nil {
			return
		}
		resp := p.answer(req, time.Now())
		limit := req.Max
		if limit == 0 {
			limit = wire.MaxCapsRecords
		}
		size := 0
		for _, b := range resp.Records {
			size += len(b)
		}
		if len(resp.Records) > limit || size > wire.MaxCapsResponseSize/2 {
			t.Fatalf("answer holds %d records of %d B for max %d", len(resp.Records), size, req.Max)
		}
		if req.Filter == nil {
			return
		}
		pf := poolFilterOf(req.Filter)
		for _, b := range resp.Records {
			rec, err := wire.DecodeCapRecord(b)
			if err != nil {
				t.Fatal(err)
			}
			if !pf.Match(rec) {
				t.Fatalf("record of %s does not match the filter %+v", rec.Peer, pf)
			}
		}
	})
}
