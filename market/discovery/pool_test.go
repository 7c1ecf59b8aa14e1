package discovery_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
	"github.com/offload-project/offload/storage"
)

func testLog(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

func newKey(t *testing.T) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newHost(t *testing.T, boot ...*p2p.Host) *p2p.Host {
	t.Helper()
	var addrs []string
	for _, b := range boot {
		addrs = append(addrs, b.FullAddrs()...)
	}
	h, err := p2p.New(t.Context(), p2p.Config{
		Identity: newKey(t), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: addrs,
		Logger: testLog(t), ScoredTopics: []string{wire.TopicCaps, wire.TopicTasks},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

type poolNode struct {
	h     *p2p.Host
	pool  *discovery.Pool
	topic *pubsub.Topic
}

func newPool(t *testing.T, h *p2p.Host, cfg discovery.PoolConfig) *poolNode {
	t.Helper()
	db, err := storage.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := h.PubSub.Join(h.Topic(wire.TopicCaps))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLog(t)
	}
	if cfg.DiscoverInterval == 0 {
		cfg.DiscoverInterval = -1
	}
	p, err := discovery.NewPool(netOf(h), topic, storage.NewTable[discovery.PoolEntry](db, "pool"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RegisterTopicRules(capsRule(p)); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		db.Close()
	})
	return &poolNode{h: h, pool: p, topic: topic}
}

// capsRule is the capability topic's rule as the node registers it
// (node/validate.go).
func capsRule(p *discovery.Pool) p2p.TopicRule {
	return p2p.TopicRule{Topic: wire.TopicCaps, MaxSize: wire.MaxCapRecordSize, Check: p.CheckGossip}
}

func advertise(t *testing.T, pn *poolNode, cfg discovery.AdvertiserConfig) *discovery.Advertiser {
	t.Helper()
	if cfg.Free == nil {
		cfg.Free = func() wire.Resources { return wire.Resources{CPUs: 2, MemoryBytes: 1 << 30} }
	}
	if cfg.Executors == nil {
		cfg.Executors = []string{"wasm"}
	}
	if cfg.Hardware.OS == "" {
		cfg.Hardware = wire.Hardware{OS: "linux", Arch: "amd64", CPUs: 2, MemoryBytes: 2 << 30}
	}
	cfg.Logger = testLog(t)
	a, err := discovery.NewAdvertiser(pn.pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inPool(p *discovery.Pool, id peer.ID) bool {
	for _, e := range p.List(discovery.PoolFilter{}) {
		if e.Record.PeerID() == id {
			return true
		}
	}
	return false
}

func TestPoolFilterMatch(t *testing.T) {
	rec := &wire.CapRecord{
		Hardware: wire.Hardware{OS: "linux", Arch: "amd64", CPUs: 8, MemoryBytes: 32 << 30,
			GPUs: []wire.GPU{
				{Vendor: "nvidia", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 80 << 30},
				{Vendor: "nvidia", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 80 << 30},
			},
			Labels: map[string]string{"fpga": "xilinx", "zone": "eu"}},
		Executors: []string{"docker", "wasm"},
		Capacity:  wire.Resources{CPUs: 16, MemoryBytes: 24 << 30},
	}
	bare := &wire.CapRecord{Hardware: wire.Hardware{OS: "darwin", Arch: "arm64", CPUs: 4, MemoryBytes: 8 << 30}, Executors: []string{"wasm"}}
	for _, tc := range []struct {
		name       string
		f          discovery.PoolFilter
		rec, bare_ bool
	}{
		{"empty matches all", discovery.PoolFilter{}, true, true},
		{"any matches all", discovery.PoolFilter{Arch: "any", OS: "ANY", GPUModel: "any", Executor: "any", Labels: map[string]string{"fpga": "any"}}, true, true},
		{"cpus within hardware", discovery.PoolFilter{CPUs: 8}, true, false},
		{"cpus within offered capacity", discovery.PoolFilter{CPUs: 12}, true, false},
		{"cpus beyond both", discovery.PoolFilter{CPUs: 17}, false, false},
		{"fractional cpus", discovery.PoolFilter{CPUs: 3.5}, true, true},
		{"memory", discovery.PoolFilter{MemoryBytes: 16 << 30}, true, false},
		{"memory too much", discovery.PoolFilter{MemoryBytes: 64 << 30}, false, false},
		{"gpus count", discovery.PoolFilter{GPUs: 2}, true, false},
		{"gpus too many", discovery.PoolFilter{GPUs: 3}, false, false},
		{"gpu model substring, any case", discovery.PoolFilter{GPUModel: "h100"}, true, false},
		{"gpu model and count", discovery.PoolFilter{GPUModel: "H100", GPUs: 2}, true, false},
		{"gpu model missing", discovery.PoolFilter{GPUModel: "a100"}, false, false},
		{"arch", discovery.PoolFilter{Arch: "amd64"}, true, false},
		{"arch alias", discovery.PoolFilter{Arch: "x86_64"}, true, false},
		{"arch arm alias", discovery.PoolFilter{Arch: "aarch64"}, false, true},
		{"os", discovery.PoolFilter{OS: "Darwin"}, false, true},
		{"executor", discovery.PoolFilter{Executor: "docker"}, true, false},
		{"executor both", discovery.PoolFilter{Executor: "wasm"}, true, true},
		{"label", discovery.PoolFilter{Labels: map[string]string{"fpga": "xilinx"}}, true, false},
		{"label other value", discovery.PoolFilter{Labels: map[string]string{"fpga": "altera"}}, false, false},
		{"labels all required", discovery.PoolFilter{Labels: map[string]string{"fpga": "xilinx", "zone": "us"}}, false, false},
		{"combined", discovery.PoolFilter{CPUs: 4, GPUs: 1, Arch: "amd64", OS: "linux", Executor: "docker", Labels: map[string]string{"zone": "eu"}}, true, false},
		{"task needs a label with any value", discovery.PoolFilter{Needs: map[string]string{"fpga": wire.LabelAny}}, true, false},
		{"task needs a label, empty value", discovery.PoolFilter{Needs: map[string]string{"zone": ""}}, true, false},
		{"task needs a label's value", discovery.PoolFilter{Needs: map[string]string{"fpga": "xilinx"}}, true, false},
		{"task needs another value", discovery.PoolFilter{Needs: map[string]string{"fpga": "altera"}}, false, false},
		{"task needs a label nobody has", discovery.PoolFilter{Needs: map[string]string{"tpu": wire.LabelAny}}, false, false},
		{"task needs 'any' as a value", discovery.PoolFilter{Needs: map[string]string{"fpga": "any"}}, false, false},
		{"task needs an arm64 machine", discovery.PoolFilter{Machine: &wire.MachineRequirements{Arch: "aarch64"}}, false, true},
		{"task needs 8 CPUs in the machine", discovery.PoolFilter{Machine: &wire.MachineRequirements{CPUs: 8}}, true, false},
		{"task needs more memory than any machine", discovery.PoolFilter{Machine: &wire.MachineRequirements{MemoryBytes: 64 << 30}}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Match(rec); got != tc.rec {
				t.Errorf("full record: got %v, want %v", got, tc.rec)
			}
			if got := tc.f.Match(bare); got != tc.bare_ {
				t.Errorf("bare record: got %v, want %v", got, tc.bare_)
			}
		})
	}
}

func TestPoolTermsAndFilterFor(t *testing.T) {
	rec := &wire.CapRecord{Hardware: wire.Hardware{OS: "linux", Arch: "amd64",
		GPUs: []wire.GPU{{Vendor: "nvidia"}, {Vendor: "nvidia"}}, Labels: map[string]string{"fpga": "xilinx"}}, Executors: []string{"docker"}}
	got := strings.Join(discovery.Terms(rec), " ")
	want := "arch:amd64 executor:docker gpu:nvidia label:fpga=xilinx os:linux role:provider"
	if got != want {
		t.Errorf("terms = %q, want %q", got, want)
	}
	if discovery.TermCID("", "gpu:nvidia") == discovery.TermCID("abc", "gpu:nvidia") {
		t.Error("a private swarm must have its own DHT keys")
	}
	f := discovery.FilterFor(wire.Requirements{Runtime: "wasm", Resources: wire.Resources{CPUs: 2, GPUs: 1}})
	if f.Executor != "wasm" || f.CPUs != 2 || f.GPUs != 1 {
		t.Errorf("FilterFor = %+v", f)
	}
	needs := wire.Requirements{Runtime: "docker", Labels: map[string]string{"fpga": wire.LabelAny, "zone": "eu", "site": "a"}}
	if f := discovery.FilterFor(needs); f.Needs["zone"] != "eu" || f.Match(rec) {
		t.Errorf("FilterFor(%v) = %+v, matching a record without zone or site", needs.Labels, f)
	}
	// The rarest term: a label with its value, the first in key order;
	// a label with any value has no term of its own.
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{needs.Labels, "label:site=a"},
		{map[string]string{"fpga": wire.LabelAny}, "executor:docker"},
		{map[string]string{"fpga": ""}, "executor:docker"},
		{nil, "executor:docker"},
	} {
		if got := discovery.LookupTerm(wire.Requirements{Runtime: "docker", Labels: tc.labels}); got != tc.want {
			t.Errorf("LookupTerm(labels %v) = %q, want %q", tc.labels, got, tc.want)
		}
	}
}

// signRaw signs rec with key, bypassing SignCapRecord's checks.
func signRaw(t *testing.T, rec *wire.CapRecord, key crypto.PrivKey) []byte {
	t.Helper()
	body, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := key.Sign(append([]byte("offload-caps-record:"), body...))
	if err != nil {
		t.Fatal(err)
	}
	env, err := json.Marshal(&wire.SignedCapRecord{Record: body, Signature: sig})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func rawRecord(id peer.ID, seq uint64) *wire.CapRecord {
	now := time.Now()
	return &wire.CapRecord{
		Version: wire.Version, Peer: id.String(), Hardware: wire.Hardware{OS: "linux", Arch: "amd64", CPUs: 1},
		Executors: []string{"wasm"}, Seq: seq, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli(),
	}
}

// TestForgedRecordsRejectedAndCounted publishes forged records from a peer
// that runs no validator of its own: the victim's validator rejects each
// one, counts it, and keeps none in its pool.
func TestForgedRecordsRejectedAndCounted(t *testing.T) {
	victimHost := newHost(t)
	victim := newPool(t, victimHost, discovery.PoolConfig{})
	attacker := newHost(t, victimHost)
	topic, err := attacker.PubSub.Join(attacker.Topic(wire.TopicCaps))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the attacker to see the victim on the topic", func() bool { return len(topic.ListPeers()) > 0 })

	// An honest record first: it is accepted, which shows the path works.
	akey := attacker.Peerstore().PrivKey(attacker.ID())
	honest := signRaw(t, rawRecord(attacker.ID(), 10), akey)
	if err := topic.Publish(t.Context(), honest); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the honest record", func() bool { return inPool(victim.pool, attacker.ID()) })

	other := newKey(t)
	otherID, _ := peer.IDFromPrivateKey(other)
	bigRec := rawRecord(attacker.ID(), 20)
	bigRec.Software = strings.Repeat("x", 20<<10)
	forged := map[string][]byte{
		"bad signature":   signRaw(t, rawRecord(attacker.ID(), 11), other), // claims the attacker, signed by another key
		"author mismatch": signRaw(t, rawRecord(otherID, 1), other),        // valid record of another peer, gossiped by the attacker
		"malformed":       []byte(`{"record": "bm90IGpzb24=", "sig": "AAAA"}`),
		"oversized":       signRaw(t, bigRec, akey),
	}
	for _, reason := range []string{"bad signature", "author mismatch", "malformed", "oversized"} {
		if err := topic.Publish(t.Context(), forged[reason]); err != nil {
			t.Fatal(err)
		}
	}
	// The oversized record stops at the topic rule's size check, before
	// the pool sees it; the three others at the pool's check.
	caps := victimHost.Topic(wire.TopicCaps)
	eventually(t, 10*time.Second, "four rejections", func() bool { return victimHost.TopicStats()[caps].Rejected >= 4 })
	st := victim.pool.Stats()
	ts := victimHost.TopicStats()[caps]
	t.Logf("victim pool stats: %+v; topic stats: %+v", st, ts)
	for reason := range forged {
		n := st.Reasons[reason]
		if reason == "oversized" {
			n = ts.Reasons[reason]
		}
		if n != 1 {
			t.Errorf("reason %q counted %d times, want 1", reason, n)
		}
	}
	if inPool(victim.pool, otherID) {
		t.Error("a record gossiped by another author entered the pool")
	}
	// Each rejection was an invalid message delivery: the attacker's score
	// at the victim is negative.
	eventually(t, 5*time.Second, "the attacker's score to fall below zero", func() bool {
		s, ok := victimHost.PeerScore(attacker.ID())
		return ok && s < 0
	})
	for _, e := range victim.pool.List(discovery.PoolFilter{}) {
		if e.Record.Seq != 10 {
			t.Errorf("pool holds %s seq %d, want only the honest seq 10", e.Record.Peer, e.Record.Seq)
		}
	}

	// A stale sequence number is ignored, not rejected.
	if err := topic.Publish(t.Context(), signRaw(t, rawRecord(attacker.ID(), 9), akey)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the stale record to be ignored", func() bool { return victim.pool.Stats().Reasons["stale"] == 1 })
}

func TestExpiredRecordLeavesPool(t *testing.T) {
	a := newHost(t)
	b := newHost(t, a)
	pa := newPool(t, a, discovery.PoolConfig{SweepInterval: 50 * time.Millisecond})
	pb := newPool(t, b, discovery.PoolConfig{SweepInterval: 50 * time.Millisecond})
	adv := advertise(t, pa, discovery.AdvertiserConfig{TTL: 1500 * time.Millisecond, Interval: time.Hour, ProvideInterval: -1})
	eventually(t, 10*time.Second, "b to see a", func() bool { return inPool(pb.pool, a.ID()) })
	adv.Close()
	start := time.Now()
	eventually(t, 5*time.Second, "a's record to expire in b's pool", func() bool { return !inPool(pb.pool, a.ID()) })
	t.Logf("record left the pool %s after the advertiser stopped", time.Since(start).Round(time.Millisecond))
	// Reads hide an expired record at once; the sweeper counts it on its
	// next pass.
	eventually(t, 2*time.Second, "the expiry to be counted", func() bool { return pb.pool.Stats().Expired > 0 })
}

func TestAdvertRepublishesOnChange(t *testing.T) {
	a := newHost(t)
	b := newHost(t, a)
	pa := newPool(t, a, discovery.PoolConfig{})
	pb := newPool(t, b, discovery.PoolConfig{})
	free := make(chan wire.Resources, 1)
	free <- wire.Resources{CPUs: 4, MemoryBytes: 4 << 30}
	cur := wire.Resources{CPUs: 4, MemoryBytes: 4 << 30}
	getFree := func() wire.Resources {
		select {
		case c := <-free:
			cur = c
		default:
		}
		return cur
	}
	adv := advertise(t, pa, discovery.AdvertiserConfig{Free: getFree, Interval: time.Hour, MinGap: 10 * time.Millisecond, Hold: 50 * time.Millisecond, ProvideInterval: -1})
	eventually(t, 10*time.Second, "b to see a", func() bool { return inPool(pb.pool, a.ID()) })
	free <- wire.Resources{MemoryBytes: 4 << 30} // full: every CPU taken
	adv.Changed()
	eventually(t, 10*time.Second, "b to see the new free capacity", func() bool {
		es := pb.pool.List(discovery.PoolFilter{})
		return len(es) == 1 && es[0].Record.Free.CPUs == 0
	})
}

// TestDHTDiscoveryWithoutGossip finds a provider only through the DHT: both
// are connected to a bare DHT node that neither gossips capability records
// nor answers the caps protocol.
func TestDHTDiscoveryWithoutGossip(t *testing.T) {
	dhtNode := newHost(t)
	prov := newHost(t, dhtNode)
	pp := newPool(t, prov, discovery.PoolConfig{})
	advertise(t, pp, discovery.AdvertiserConfig{Hardware: wire.Hardware{OS: "linux", Arch: "amd64", GPUs: []wire.GPU{{Vendor: "nvidia", Model: "T4"}}}})
	// The requestor comes after the advert was gossiped (to nobody) and
	// does not ask the peers it connects to.
	req := newHost(t, dhtNode)
	pr := newPool(t, req, discovery.PoolConfig{NoAskOnConnect: true})
	if inPool(pr.pool, prov.ID()) {
		t.Fatal("the requestor knew the provider before searching")
	}
	start := time.Now()
	eventually(t, 30*time.Second, "a DHT search to find the provider", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, err := pr.pool.Discover(ctx, "gpu:nvidia"); err != nil {
			t.Logf("discover: %v", err)
		}
		return inPool(pr.pool, prov.ID())
	})
	if n, _ := pr.pool.Discover(t.Context(), "gpu:amd"); n != 0 {
		t.Errorf("found %d providers of gpu:amd, want none", n)
	}
	t.Logf("found through the DHT in %s (requestor pool stats %+v)", time.Since(start).Round(time.Millisecond), pr.pool.Stats())
}

// TestPoolCacheSurvivesRestart: the pool is cached in Badger; a pool opened
// again on the same database holds the unexpired records.
func TestPoolCacheSurvivesRestart(t *testing.T) {
	a := newHost(t)
	b := newHost(t, a)
	pa := newPool(t, a, discovery.PoolConfig{})
	advertise(t, pa, discovery.AdvertiserConfig{ProvideInterval: -1})
	dir := t.TempDir()
	var topic *pubsub.Topic
	open := func() (*storage.DB, *discovery.Pool) {
		db, err := storage.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		topic, err = b.PubSub.Join(b.Topic(wire.TopicCaps))
		if err != nil {
			t.Fatal(err)
		}
		p, err := discovery.NewPool(netOf(b), topic, storage.NewTable[discovery.PoolEntry](db, "pool"), discovery.PoolConfig{Logger: testLog(t), DiscoverInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return db, p
	}
	db, p := open()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "b to see a", func() bool { return inPool(p, a.ID()) })
	p.Close()
	db.Close()
	if err := topic.Close(); err != nil {
		t.Fatal(err)
	}
	db, p = open() // not started: only the cache speaks
	defer db.Close()
	defer p.Close()
	if !inPool(p, a.ID()) {
		t.Fatal("the cached record was not loaded")
	}
}

// netOf is the discovery view of a real host: its gossipsub and its DHT.
func netOf(h *p2p.Host) discovery.Network {
	return discovery.Network{Host: h, PubSub: h.PubSub, Routing: h.DHT, Namespace: h.Namespace}
}

// TestAdvertFollowsAddressChanges: when the host's addresses change (here
// a new listener; behind NAT, a relay reservation), the record is re-signed
// with them within seconds, not at the next refresh, and reaches the other
// pools.
func TestAdvertFollowsAddressChanges(t *testing.T) {
	a := newHost(t)
	b := newHost(t, a)
	pa := newPool(t, a, discovery.PoolConfig{})
	pb := newPool(t, b, discovery.PoolConfig{})
	adv := advertise(t, pa, discovery.AdvertiserConfig{Interval: time.Hour, ProvideInterval: -1})
	eventually(t, 10*time.Second, "b to see a", func() bool { return inPool(pb.pool, a.ID()) })
	before := adv.Adverts()
	if err := a.Network().Listen(ma.StringCast("/ip4/127.0.0.1/tcp/0")); err != nil {
		t.Fatal(err)
	}
	var added string
	for _, m := range a.Addrs() {
		rec, _ := wire.DecodeCapRecord(adv.Current())
		if !slices.Contains(rec.Addrs, m.String()) {
			added = m.String()
		}
	}
	if added == "" {
		t.Fatal("the new listener added no address")
	}
	eventually(t, 15*time.Second, "b's record of a to carry the new address", func() bool {
		es := pb.pool.List(discovery.PoolFilter{})
		return len(es) == 1 && slices.Contains(es[0].Record.Addrs, added)
	})
	if n := adv.Adverts(); n != before+1 {
		t.Errorf("%d adverts for one address change, want 1", n-before)
	}
}
