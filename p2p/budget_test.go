package p2p_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/p2p"
)

func budgetHost(t *testing.T, cfg p2p.Config) *p2p.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identity, cfg.Listen, cfg.DisableNAT = key, []string{"/ip4/127.0.0.1/tcp/0"}, true
	h, err := p2p.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestUntrustedGossipBudget: a peer the node does not trust gets the
// shared budget of messages and no more (the rest are dropped before any
// signature check or validator), whatever it sends; once trusted, all of
// its messages go through.
func TestUntrustedGossipBudget(t *testing.T) {
	const budget = 40
	recv := budgetHost(t, p2p.Config{UntrustedGossipRate: 1, UntrustedGossipBurst: budget})
	var checked atomic.Int64
	if err := recv.RegisterTopicRules(p2p.TopicRule{Topic: "flood", MaxSize: 1 << 10,
		Check: func(context.Context, *pubsub.Message) (pubsub.ValidationResult, string) {
			checked.Add(1)
			return pubsub.ValidationAccept, ""
		}}); err != nil {
		t.Fatal(err)
	}
	rt, err := recv.PubSub.Join(recv.Topic("flood"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := rt.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	var delivered atomic.Int64
	go func() {
		for {
			if _, err := sub.Next(t.Context()); err != nil {
				return
			}
			delivered.Add(1)
		}
	}()

	send := budgetHost(t, p2p.Config{})
	if err := send.Connect(t.Context(), peer.AddrInfo{ID: recv.ID(), Addrs: recv.Addrs()}); err != nil {
		t.Fatal(err)
	}
	st, err := send.PubSub.Join(send.Topic("flood"))
	if err != nil {
		t.Fatal(err)
	}
	if !testwait.Until(t.Context(), 10*time.Second, 20*time.Millisecond, func() bool { return len(st.ListPeers()) == 1 }) {
		t.Fatal("the receiver's subscription never reached the sender")
	}
	publish := func(n int, tag string, pause time.Duration) {
		for i := range n {
			if err := st.Publish(t.Context(), []byte(fmt.Sprint(tag, i))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(pause)
		}
	}
	publish(400, "stranger-", 0)
	if !testwait.Until(t.Context(), 5*time.Second, 20*time.Millisecond, func() bool { return recv.GossipDropped() > 0 && checked.Load() >= budget }) {
		t.Fatalf("dropped %d, checked %d", recv.GossipDropped(), checked.Load())
	}
	time.Sleep(300 * time.Millisecond)
	if c := checked.Load(); c > budget+2 {
		t.Fatalf("a stranger's flood of 400 got %d messages checked; budget %d (+1/s)", c, budget)
	}
	// (The sender's own outbound queue may drop a few of the 400.)
	if got := recv.GossipDropped() + uint64(checked.Load()); got < 300 {
		t.Fatalf("dropped %d + checked %d of 400", recv.GossipDropped(), checked.Load())
	}

	recv.SetTrust(func(p peer.ID) bool { return p == send.ID() })
	before := delivered.Load()
	publish(200, "customer-", 2*time.Millisecond) // paced: the sender's own queue drops nothing
	if !testwait.Until(t.Context(), 5*time.Second, 20*time.Millisecond, func() bool { return delivered.Load()-before == 200 }) {
		t.Fatalf("a trusted peer's 200 messages: %d delivered", delivered.Load()-before)
	}
}
