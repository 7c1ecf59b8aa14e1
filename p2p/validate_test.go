package p2p_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/p2p"
)

func peerN(i int) peer.ID { return peer.ID(fmt.Sprintf("peer-%06d", i)) }

// TestPeerRateBounded: each peer gets its burst then its rate; the table
// never tracks more than its bound; a full table of busy peers refuses
// newcomers until buckets refill, and refilled buckets make room.
func TestPeerRateBounded(t *testing.T) {
	const maxPeers = 100
	l := p2p.NewPeerRate(10, 2, maxPeers) // 10/s, burst 2: full again 200 ms after use
	now := time.Unix(1_000_000, 0)
	a := peerN(0)
	if !l.AllowAt(a, now) || !l.AllowAt(a, now) {
		t.Fatal("burst refused")
	}
	if l.AllowAt(a, now) {
		t.Fatal("third message within the burst allowed")
	}
	if !l.AllowAt(a, now.Add(100*time.Millisecond)) {
		t.Fatal("a token should have refilled after 100 ms at 10/s")
	}

	// A flood of fresh identities within one instant: the table fills up
	// and newcomers wait; the bound holds.
	for i := 1; i < 10*maxPeers; i++ {
		l.AllowAt(peerN(i), now.Add(100*time.Millisecond))
		if l.Len() > maxPeers {
			t.Fatalf("tracks %d peers, bound %d", l.Len(), maxPeers)
		}
	}
	if l.AllowAt(peerN(5000), now.Add(150*time.Millisecond)) {
		t.Error("a newcomer was let in while every bucket is busy")
	}
	// Once the buckets refill (200 ms at most), they make room.
	later := now.Add(time.Second)
	if !l.AllowAt(peerN(5001), later) {
		t.Error("a newcomer was refused after every bucket refilled")
	}
	if l.Len() != 1 {
		t.Errorf("after the prune the table holds %d peers, want 1", l.Len())
	}
	// Idle peers go at the periodic prune even when the table is not full.
	for i := range 10 {
		l.AllowAt(peerN(i), later)
	}
	l.AllowAt(peerN(99), later.Add(2*time.Minute))
	if l.Len() != 1 {
		t.Errorf("idle peers kept: %d tracked, want 1", l.Len())
	}
}

// TestRegisterTopicRulesChecksArguments: a rule without a check, a size
// beyond gossipsub's frame or a rate without a burst is refused; a second
// rule for one topic too.
func TestRegisterTopicRulesChecksArguments(t *testing.T) {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.New(t.Context(), p2p.Config{Identity: k, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	accept := func(context.Context, *pubsub.Message) (pubsub.ValidationResult, string) {
		return pubsub.ValidationAccept, ""
	}
	for _, tc := range []struct {
		name string
		rule p2p.TopicRule
	}{
		{"no check", p2p.TopicRule{Topic: "/t/1", MaxSize: 10}},
		{"no topic", p2p.TopicRule{MaxSize: 10, Check: accept}},
		{"no size", p2p.TopicRule{Topic: "/t/1", Check: accept}},
		{"size over the frame", p2p.TopicRule{Topic: "/t/1", MaxSize: p2p.MaxPubSubMessage + 1, Check: accept}},
		{"rate without burst", p2p.TopicRule{Topic: "/t/1", MaxSize: 10, Rate: 1, Check: accept}},
	} {
		if err := h.RegisterTopicRules(tc.rule); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	ok := p2p.TopicRule{Topic: "/t/1", MaxSize: 10, Rate: 1, Burst: 1, Check: accept}
	if err := h.RegisterTopicRules(ok); err != nil {
		t.Fatal(err)
	}
	if err := h.RegisterTopicRules(ok); err == nil {
		t.Error("a second rule for the same topic was accepted")
	}
	if _, found := h.TopicStats()["/t/1"]; !found {
		t.Errorf("TopicStats lacks the registered topic: %v", h.TopicStats())
	}
}
