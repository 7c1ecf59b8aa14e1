package node

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

func gossipLog(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// denyPeers is a connection gater that refuses the peers in it, both ways.
type denyPeers map[peer.ID]bool

func (d denyPeers) InterceptPeerDial(p peer.ID) bool                 { return !d[p] }
func (d denyPeers) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !d[p] }
func (d denyPeers) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (d denyPeers) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !d[p]
}
func (d denyPeers) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

func newKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// gossipHost is a loopback host of the swarm with the node's topic scoring;
// it never connects to the peers in deny (nil: any).
func gossipHost(t *testing.T, k crypto.PrivKey, deny denyPeers, boot ...*p2p.Host) *p2p.Host {
	t.Helper()
	if k == nil {
		k, _ = newKey(t)
	}
	var addrs []string
	for _, b := range boot {
		addrs = append(addrs, b.FullAddrs()...)
	}
	cfg := p2p.Config{Identity: k, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: addrs,
		Logger: gossipLog(t), ScoredTopics: []string{wire.TopicTasks, wire.TopicCaps}}
	if deny != nil {
		cfg.Gater = deny
	}
	h, err := p2p.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// received collects the announcements a subscription delivers, by author.
type received struct {
	mu   sync.Mutex
	msgs map[peer.ID][]*pubsub.Message
}

func (r *received) count(author peer.ID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs[author])
}

func subscribeTasks(t *testing.T, h *p2p.Host) (*pubsub.Topic, *received) {
	t.Helper()
	topic, err := h.PubSub.Join(h.Topic(wire.TopicTasks))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	r := &received{msgs: map[peer.ID][]*pubsub.Message{}}
	go func() {
		for {
			m, err := sub.Next(t.Context())
			if err != nil {
				return
			}
			r.mu.Lock()
			r.msgs[m.GetFrom()] = append(r.msgs[m.GetFrom()], m)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(sub.Cancel)
	return topic, r
}

func announceBytes(t *testing.T, requestor peer.ID, task string) []byte {
	t.Helper()
	ann := wire.Announce{Version: wire.Version, TaskID: task, Requestor: requestor.String(),
		Req:         wire.Requirements{Runtime: "docker", Image: "hello:1", Resources: wire.Resources{CPUs: 1, MemoryBytes: 1 << 20}, TimeoutMS: 1000},
		BidDeadline: time.Now().Add(10 * time.Second).UnixMilli()}
	b, err := json.Marshal(&ann)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Decode[wire.Announce](b); err != nil {
		t.Fatalf("test announcement invalid: %v", err)
	}
	return b
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJunkAnnouncerPenalizedAndNotRelayed runs four loopback hosts on the
// task topic: an honest relay H and an observer O with the node's
// announcement rule, an honest requestor P with it too, and an attacker A
// that has no validator and publishes raw bytes. A and O never connect
// (O's gater refuses A), so whatever of A's reaches O came through H. H rejects A's junk (malformed, wrong version,
// a requestor other than A, oversized), A's score at H falls below the
// graylist threshold, nothing of A's junk reaches O through H, and once
// graylisted even A's well-formed announcement is dropped; P's
// announcements still reach O and P's score stays non-negative.
func TestJunkAnnouncerPenalizedAndNotRelayed(t *testing.T) {
	aKey, aID := newKey(t)
	h := gossipHost(t, nil, nil)
	if err := h.RegisterTopicRules(announceRule()); err != nil {
		t.Fatal(err)
	}
	_, atH := subscribeTasks(t, h)
	o := gossipHost(t, nil, denyPeers{aID: true}, h)
	if err := o.RegisterTopicRules(announceRule()); err != nil {
		t.Fatal(err)
	}
	_, atO := subscribeTasks(t, o)
	p := gossipHost(t, nil, nil, h)
	if err := p.RegisterTopicRules(announceRule()); err != nil {
		t.Fatal(err)
	}
	pTopic, _ := subscribeTasks(t, p)
	a := gossipHost(t, aKey, nil, h)
	aTopic, err := a.PubSub.Join(a.Topic(wire.TopicTasks))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		name  string
		topic *pubsub.Topic
	}{{"attacker", aTopic}, {"honest requestor", pTopic}} {
		waitUntil(t, 10*time.Second, x.name+" to see the relay on the topic", func() bool {
			for _, id := range x.topic.ListPeers() {
				if id == h.ID() {
					return true
				}
			}
			return false
		})
	}
	waitUntil(t, 10*time.Second, "the observer to see the relay on the topic", func() bool {
		return len(o.PubSub.ListPeers(o.Topic(wire.TopicTasks))) > 0
	})
	// H relays only to its mesh, which gossipsub builds at its heartbeat
	// (once a second): a message H takes in before O is in its mesh would
	// reach O only by IHAVE gossip, which skips mesh peers.
	time.Sleep(2500 * time.Millisecond)

	// One honest announcement from each: both reach O, the path works.
	if err := pTopic.Publish(t.Context(), announceBytes(t, p.ID(), "honest-0")); err != nil {
		t.Fatal(err)
	}
	if err := aTopic.Publish(t.Context(), announceBytes(t, a.ID(), "before-junk")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "both honest announcements at O", func() bool {
		return atO.count(p.ID()) == 1 && atO.count(a.ID()) == 1
	})

	_, victim := newKey(t)
	var badVersion wire.Announce
	if err := json.Unmarshal(announceBytes(t, a.ID(), "v99"), &badVersion); err != nil {
		t.Fatal(err)
	}
	badVersion.Version = 99
	bv, _ := json.Marshal(&badVersion)
	oversized := announceBytes(t, a.ID(), "big")
	oversized = append(oversized[:len(oversized)-1], []byte(`,"pad":"`+strings.Repeat("x", wire.MaxAnnounceSize)+`"}`)...)
	junk := map[string][]byte{
		"malformed announcement":      []byte("{not json"),
		"wrong version":               bv,
		"requestor is not the author": announceBytes(t, victim, "forged"),
		"oversized":                   oversized,
	}
	const rounds = 3 // 12 rejections: -10 x 12^2 is far below the graylist threshold
	for i := range rounds {
		for _, data := range junk {
			if err := aTopic.Publish(t.Context(), data); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
	}
	th := p2p.DefaultScoreThresholds
	waitUntil(t, 15*time.Second, "the attacker's score at H below the graylist threshold", func() bool {
		s, ok := h.PeerScore(a.ID())
		return ok && s < th.GraylistThreshold
	})
	aScore, _ := h.PeerScore(a.ID())
	st := h.TopicStats()[h.Topic(wire.TopicTasks)]
	t.Logf("attacker score at H %.1f (graylist %.0f); H's task topic: %+v", aScore, th.GraylistThreshold, st)
	// Seven rejections cross the threshold (-10 x 7^2 < -400); H drops
	// whatever A sends after that before validating it.
	if st.Rejected < 7 || st.Rejected > rounds*uint64(len(junk)) {
		t.Errorf("H rejected %d messages, want 7 to %d", st.Rejected, rounds*len(junk))
	}
	for _, reason := range []string{"malformed announcement", "requestor is not the author", "oversized"} {
		if st.Reasons[reason] == 0 {
			t.Errorf("H never rejected for %q: %v", reason, st.Reasons)
		}
	}

	// Graylisted: A's next announcement, well formed, is dropped at H.
	if err := aTopic.Publish(t.Context(), announceBytes(t, a.ID(), "after-junk")); err != nil {
		t.Fatal(err)
	}
	// P keeps announcing, and its announcements keep reaching O.
	for i := 1; i <= 3; i++ {
		if err := pTopic.Publish(t.Context(), announceBytes(t, p.ID(), "honest-"+string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 10*time.Second, "P's announcements at O", func() bool { return atO.count(p.ID()) == 4 })
	time.Sleep(time.Second) // give anything of A's that H might relay time to arrive
	// A cannot reach O: all it got of A's came through honest relays.
	if n := atO.count(a.ID()); n != 1 {
		t.Errorf("O got %d of the attacker's messages, want only the one before the junk", n)
	}
	if o.Network().Connectedness(a.ID()) == network.Connected {
		t.Fatal("the attacker reached the observer directly")
	}
	if n := atH.count(a.ID()); n != 1 {
		t.Errorf("H delivered %d of the attacker's messages, want 1", n)
	}
	if s, ok := h.PeerScore(p.ID()); !ok || s < 0 {
		t.Errorf("honest requestor's score at H = %.1f (scored %v), want >= 0", s, ok)
	}
	if s, ok := o.PeerScore(h.ID()); !ok || s < 0 {
		t.Errorf("relay's score at O = %.1f (scored %v), want >= 0: it relayed nothing invalid", s, ok)
	}
	if o.TopicStats()[o.Topic(wire.TopicTasks)].Rejected != 0 {
		t.Errorf("O rejected messages: H relayed junk (%+v)", o.TopicStats())
	}
}

// TestAnnounceRateIgnoredNotRejected: over the per-author rate, messages
// are ignored (no penalty for whoever relayed them), counted as such.
func TestAnnounceRateIgnoredNotRejected(t *testing.T) {
	h := gossipHost(t, nil, nil)
	rule := announceRule()
	rule.Rate, rule.Burst = 1, 2
	if err := h.RegisterTopicRules(rule); err != nil {
		t.Fatal(err)
	}
	_, atH := subscribeTasks(t, h)
	a := gossipHost(t, nil, nil, h)
	aTopic, err := a.PubSub.Join(a.Topic(wire.TopicTasks))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the sender to see H on the topic", func() bool { return len(aTopic.ListPeers()) > 0 })
	for i := range 6 {
		if err := aTopic.Publish(t.Context(), announceBytes(t, a.ID(), "t"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	name := h.Topic(wire.TopicTasks)
	waitUntil(t, 10*time.Second, "six messages judged", func() bool {
		s := h.TopicStats()[name]
		return s.Accepted+s.Ignored+s.Rejected >= 6
	})
	st := h.TopicStats()[name]
	t.Logf("H's task topic: %+v", st)
	if st.Accepted < 2 || st.Accepted > 3 || st.Rejected != 0 || st.Reasons["rate limited"] != st.Ignored || st.Ignored < 3 {
		t.Errorf("stats %+v: want the burst accepted, the rest ignored as rate limited, none rejected", st)
	}
	if n := atH.count(a.ID()); uint64(n) != st.Accepted {
		t.Errorf("delivered %d, accepted %d", n, st.Accepted)
	}
	time.Sleep(1500 * time.Millisecond) // score inspection runs once a second
	if s, ok := h.PeerScore(a.ID()); !ok || s < 0 {
		t.Errorf("sender's score at H = %.1f (scored %v): over-rate messages must not penalize", s, ok)
	}
}

// TestAnnounceCheck is the table of checkAnnounce's decisions.
func TestAnnounceCheck(t *testing.T) {
	_, author := newKey(t)
	_, other := newKey(t)
	stale := wire.Announce{}
	if err := json.Unmarshal(announceBytes(t, author, "stale"), &stale); err != nil {
		t.Fatal(err)
	}
	stale.BidDeadline = time.Now().Add(-2 * announceSkew).UnixMilli()
	staleBytes, _ := json.Marshal(&stale)
	for _, tc := range []struct {
		name string
		data []byte
		want pubsub.ValidationResult
	}{
		{"valid", announceBytes(t, author, "ok"), pubsub.ValidationAccept},
		{"empty", nil, pubsub.ValidationReject},
		{"not json", []byte("\x00\x01"), pubsub.ValidationReject},
		{"another requestor", announceBytes(t, other, "forged"), pubsub.ValidationReject},
		{"bad task id", []byte(strings.Replace(string(announceBytes(t, author, "x")), `"task":"x"`, `"task":"../x"`, 1)), pubsub.ValidationReject},
		{"stale deadline", staleBytes, pubsub.ValidationIgnore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := &pubsub.Message{Message: &pb.Message{Data: tc.data, From: []byte(author)}}
			if got, reason := checkAnnounce(t.Context(), msg); got != tc.want {
				t.Errorf("checkAnnounce = %v (%s), want %v", got, reason, tc.want)
			}
		})
	}
}
