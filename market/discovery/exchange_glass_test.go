package discovery

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

// fillPool puts n records into p, every other one running wasm only (the
// rest docker and wasm), and returns the peers of the docker ones.
func fillPool(t testing.TB, p *Pool, n int) map[peer.ID]bool {
	t.Helper()
	docker := map[peer.ID]bool{}
	for i := range n {
		who := freshIdentity(t)
		rec := typicalRecord(who.id, 1, 0)
		if i%2 == 1 {
			rec.Executors = []string{"wasm"}
		} else {
			docker[who.id] = true
		}
		if res := p.ingestResult(sign(t, rec, who)); res != "" {
			t.Fatalf("record %d refused: %s", i, res)
		}
	}
	return docker
}

// TestAnswerSamplesMatchingRecords: an answer holds at most Max records,
// only records matching the filter and newer than Have, the responder's
// own record first, and over many answers every matching record shows up
// (a random sample, not the same few every time).
func TestAnswerSamplesMatchingRecords(t *testing.T) {
	p, _ := glassPool(t, PoolConfig{RecordRate: 1e6, RecordBurst: 1})
	docker := fillPool(t, p, 100)
	self := typicalRecord(p.h.ID(), 1, 0)
	env, err := wire.SignCapRecord(self, p.h.Peerstore().PrivKey(p.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	p.putLocal(self, env)

	f := PoolFilter{Executor: "docker"}
	var skip peer.ID
	for id := range docker {
		skip = id
		break
	}
	req := &wire.CapsRequest{Max: 10, Filter: f.wire(), Have: map[string]uint64{skip.String(): 1}}
	seen := map[peer.ID]int{}
	for range 200 {
		resp := p.answer(req, time.Now())
		if len(resp.Records) != 10 {
			t.Fatalf("answer holds %d records, want Max 10", len(resp.Records))
		}
		for i, b := range resp.Records {
			rec, err := wire.DecodeCapRecord(b)
			if err != nil {
				t.Fatal(err)
			}
			id := rec.PeerID()
			switch {
			case i == 0 && id != p.h.ID():
				t.Fatalf("first record is %s, want the responder's own", id)
			case i > 0 && !docker[id]:
				t.Fatalf("record of %s does not match the filter", id)
			case id == skip:
				t.Fatal("a record the asker has (Have) was sent")
			}
			seen[id]++
		}
	}
	if len(seen) != len(docker) { // the docker ones less skip, plus self
		t.Errorf("200 answers showed %d distinct records, want all %d matching", len(seen), len(docker))
	}

	// No filter, no Max: everything but the asker's, within the bounds.
	all := p.answer(&wire.CapsRequest{}, time.Now())
	if len(all.Records) != 101 {
		t.Errorf("unfiltered answer holds %d records, want 101", len(all.Records))
	}
	if none := p.answer(&wire.CapsRequest{Filter: &wire.CapsFilter{Executor: "fpga"}}, time.Now()); len(none.Records) != 0 {
		t.Errorf("answer to a filter nothing matches holds %d records", len(none.Records))
	}
}
