package p2p

import (
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestCopiesNeverHideAMessage: what the inspector dropped over the budget,
// or took from a graylisted peer (whose messages gossipsub ignores), is
// not remembered as taken, so an honest peer's copy still gets through;
// a message differing from one taken in any byte is not a copy.
func TestCopiesNeverHideAMessage(t *testing.T) {
	b := newGossipBudget(0.001, 1)
	gray, stranger, honest := peer.ID("gray"), peer.ID("stranger"), peer.ID("honest")
	b.graylisted = func(p peer.ID) bool { return p == gray }
	trust := func(p peer.ID) bool { return p == honest || p == gray } // gray: past the budget, to test the graylist alone
	b.trust.Store(&trust)
	msg := func(data string) *pb.Message {
		topic := "t"
		return &pb.Message{From: []byte("author"), Seqno: []byte{1}, Topic: &topic, Data: []byte(data), Signature: []byte("sig")}
	}
	deliver := func(from peer.ID, ms ...*pb.Message) []string {
		rpc := &pubsub.RPC{}
		rpc.Publish = ms
		if err := b.inspect(from, rpc); err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, m := range rpc.Publish {
			kept = append(kept, string(m.Data))
		}
		return kept
	}
	// A stranger's two messages against a budget of one: the second is
	// dropped, and not remembered.
	if got := deliver(stranger, msg("a"), msg("b"), msg("a")); len(got) != 1 || got[0] != "a" {
		t.Fatalf("stranger: kept %v, want [a]", got)
	}
	if got := deliver(honest, msg("a"), msg("b")); len(got) != 1 || got[0] != "b" {
		t.Fatalf("honest after the stranger: kept %v, want [b] (a is a copy, b was never taken)", got)
	}
	// A graylisted peer's message is passed to gossipsub (which ignores
	// it) and not remembered.
	if got := deliver(gray, msg("c")); len(got) != 1 {
		t.Fatalf("graylisted: kept %v", got)
	}
	if got := deliver(honest, msg("c")); len(got) != 1 {
		t.Fatalf("honest copy of a graylisted peer's message dropped: kept %v", got)
	}
	// The same author and sequence number with another signature is not
	// a copy (a forgery must not hide the real message, nor the reverse).
	forged := msg("c")
	forged.Signature = []byte("forged")
	if got := deliver(honest, forged); len(got) != 1 {
		t.Fatalf("a message differing in its signature was taken for a copy")
	}
	if b.copyDrops.Load() != 2 {
		t.Fatalf("copies dropped: %d, want 2", b.copyDrops.Load())
	}
}
