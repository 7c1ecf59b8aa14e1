package discovery

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

// nopStore is a PoolStore that keeps nothing, so that the heap measured is
// the pool's own; it counts deletes of evicted entries.
type nopStore struct{ deletes int }

func (s *nopStore) PutMany(map[string]*PoolEntry) error { return nil }
func (s *nopStore) Delete(string) error                 { s.deletes++; return nil }
func (s *nopStore) List() ([]*PoolEntry, error)         { return nil, nil }

// identity is a fresh provider key.
type identity struct {
	key crypto.PrivKey
	id  peer.ID
}

func freshIdentity(t testing.TB) identity {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return identity{k, id}
}

// typicalRecord is a provider record of the usual size: two addresses, a
// GPU, two labels; pad adds labels of about that many bytes in all.
func typicalRecord(id peer.ID, seq uint64, pad int) *wire.CapRecord {
	now := time.Now()
	rec := &wire.CapRecord{
		Version: wire.Version, Peer: id.String(),
		Addrs: []string{"/ip4/10.1.2.3/tcp/4001", "/ip4/10.1.2.3/udp/4001/quic-v1"},
		Hardware: wire.Hardware{
			OS: "linux", Arch: "amd64", CPUModel: "AMD EPYC 7763 64-Core Processor", CPUs: 64, MemoryBytes: 256 << 30,
			DiskFreeBytes: 1 << 40, GPUs: []wire.GPU{{Vendor: "nvidia", Model: "A100-SXM4-80GB", MemoryBytes: 80 << 30}},
			Labels: map[string]string{"zone": "eu-west", "fpga": "none"},
		},
		Executors: []string{"docker", "wasm"}, Price: 0.01,
		Capacity: wire.Resources{CPUs: 60, MemoryBytes: 240 << 30, GPUs: 1},
		Free:     wire.Resources{CPUs: 60, MemoryBytes: 240 << 30, GPUs: 1},
		Software: "offload/devel",
		Seq:      seq, IssuedAt: now.UnixMilli(), Expires: now.Add(2 * time.Minute).UnixMilli(),
	}
	for i := 0; pad > 0; i++ {
		rec.Hardware.Labels[fmt.Sprintf("pad%d", i)] = strings.Repeat("x", min(pad, 200))
		pad -= 200
	}
	return rec
}

func sign(t testing.TB, rec *wire.CapRecord, who identity) []byte {
	t.Helper()
	env, err := wire.SignCapRecord(rec, who.key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// glassPool is a pool on a real loopback host, not started: records enter
// through ingest, the path of records relayed over wire.ProtoCaps (gossip
// adds only the topic rule's size and author checks in front of it).
func glassPool(t testing.TB, cfg PoolConfig) (*Pool, *nopStore) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.New(t.Context(), p2p.Config{Identity: k, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	topic, err := h.PubSub.Join(h.Topic(wire.TopicCaps))
	if err != nil {
		t.Fatal(err)
	}
	store := &nopStore{}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.DiscoverInterval = -1
	p, err := NewPool(Network{Host: h, PubSub: h.PubSub}, topic, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, store
}

// TestPoolCapWithFreshIdentities floods a pool with 20,000 validly signed
// records of fresh identities (a Sybil flood: per-peer rates cannot stop
// it) while 50 honest providers keep advertising: the pool never holds
// more than its cap, every honest provider stays, the rate table stays
// bounded, and the heap per entry stays small.
func TestPoolCapWithFreshIdentities(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 signatures")
	}
	const fakes, honestN = 20_000, 50
	// A high record rate: each fresh identity sends one record; the rate
	// table's bound is what is under test, not the rate.
	p, store := glassPool(t, PoolConfig{RecordRate: 1e6, RecordBurst: 1})
	limit := p.cfg.MaxEntries
	if limit != DefaultMaxEntries {
		t.Fatalf("MaxEntries default = %d, want %d", limit, DefaultMaxEntries)
	}
	honest := make([]identity, honestN)
	seq := make([]uint64, honestN)
	advertiseHonest := func() {
		for i, who := range honest {
			seq[i]++
			if res := p.ingestResult(sign(t, typicalRecord(who.id, seq[i], 0), who)); res != "" {
				t.Fatalf("honest record %d refused: %s", i, res)
			}
		}
	}
	for i := range honest {
		honest[i] = freshIdentity(t)
	}
	base := heapAlloc()
	advertiseHonest()
	advertiseHonest() // renewed once: a provider that keeps advertising
	start := time.Now()
	var maxSeen int
	for i := range fakes {
		who := freshIdentity(t)
		if res := p.ingestResult(sign(t, typicalRecord(who.id, 1, 0), who)); res != "" {
			t.Fatalf("fake record %d refused: %s", i, res)
		}
		p.mu.Lock()
		n := len(p.entries)
		p.mu.Unlock()
		maxSeen = max(maxSeen, n)
		if n > limit {
			t.Fatalf("pool holds %d entries after %d records, cap %d", n, i+1, limit)
		}
		if i%4000 == 3999 {
			advertiseHonest() // the honest providers' periodic advert
		}
	}
	took := time.Since(start)
	p.mu.Lock()
	n, bytes := len(p.entries), p.bytes
	p.mu.Unlock()
	heap := heapAlloc()
	perEntry := float64(int64(heap)-int64(base)) / float64(n)
	st := p.Stats()
	t.Logf("%d fresh identities + %d honest: %d entries (max %d, cap %d), %d evicted, %d cache deletes, rate table %d peers; "+
		"estimated %d B/entry, heap %.0f B/entry (%.1f MiB for the pool); %s (%.0f µs per record incl. keygen and signing)",
		fakes, honestN, n, maxSeen, limit, st.Evicted, store.deletes, p.limiters.Len(),
		bytes/int64(n), perEntry, float64(int64(heap)-int64(base))/(1<<20), took.Round(time.Millisecond),
		float64(took.Microseconds())/fakes)
	if n != limit {
		t.Errorf("pool holds %d entries, want the cap %d", n, limit)
	}
	if want := uint64(fakes + honestN - limit); st.Evicted != want || store.deletes != int(want) {
		t.Errorf("evicted %d, cache deletes %d, want %d", st.Evicted, store.deletes, want)
	}
	for i, who := range honest {
		p.mu.Lock()
		e := p.entries[who.id]
		p.mu.Unlock()
		if e == nil || e.Record.Seq != seq[i] {
			t.Errorf("honest provider %d left the pool (entry %v)", i, e)
		}
	}
	if l := p.limiters.Len(); l > maxRatedPeers {
		t.Errorf("rate table tracks %d peers, bound %d", l, maxRatedPeers)
	}
	// Generous: a typical record's envelope is about 1.3 KiB.
	if perEntry > 16<<10 {
		t.Errorf("heap per entry %.0f B, want at most 16 KiB", perEntry)
	}
}

// TestPoolByteBudget fills a pool with records padded near the size limit:
// the byte budget, not the entry cap, bounds it, and the heap it holds
// stays within the budget.
func TestPoolByteBudget(t *testing.T) {
	const budget = 8 << 20
	p, _ := glassPool(t, PoolConfig{RecordRate: 1e6, RecordBurst: 1, MaxBytes: budget})
	base := heapAlloc()
	var size int
	for range 1000 {
		who := freshIdentity(t)
		env := sign(t, typicalRecord(who.id, 1, 10<<10), who)
		size = len(env)
		if res := p.ingestResult(env); res != "" {
			t.Fatalf("record refused: %s", res)
		}
		p.mu.Lock()
		over := p.bytes > budget
		p.mu.Unlock()
		if over {
			t.Fatalf("pool estimate %d B over its budget %d", p.bytes, budget)
		}
	}
	heap := int64(heapAlloc()) - int64(base)
	p.mu.Lock()
	n, bytes := len(p.entries), p.bytes
	p.mu.Unlock()
	t.Logf("%d-byte records: %d entries kept, estimate %d B (budget %d), heap %d B (%.0f B/entry)",
		size, n, bytes, budget, heap, float64(heap)/float64(n))
	if n >= 1000 || n == 0 {
		t.Errorf("kept %d of 1000 padded records; the byte budget should bound them", n)
	}
	if heap > budget*3/2 {
		t.Errorf("pool heap %d B is over 1.5x its budget %d: entryCost underestimates", heap, budget)
	}
}

// TestPoolEvictionOrder: expired entries go first, then entries never
// renewed, then the oldest seen; the node's own record is never evicted.
func TestPoolEvictionOrder(t *testing.T) {
	p, _ := glassPool(t, PoolConfig{RecordRate: 1e6, RecordBurst: 1, MaxEntries: 3})
	now := time.Now()
	add := func(name string, renewals uint32, seen time.Time, expired bool) peer.ID {
		who := freshIdentity(t)
		rec := typicalRecord(who.id, 1, 0)
		if expired {
			rec.IssuedAt, rec.Expires = now.Add(-time.Hour).UnixMilli(), now.Add(-time.Minute).UnixMilli()
		}
		e := &PoolEntry{Record: *rec, Envelope: []byte(name), SeenAt: seen, Renewals: renewals}
		p.mu.Lock()
		p.entries[who.id] = e
		p.bytes += entryCost(e)
		p.mu.Unlock()
		return who.id
	}
	oldRenewed := add("old renewed", 3, now.Add(-time.Hour), false)
	newOnce := add("new, never renewed", 0, now, false)
	expired := add("expired", 5, now, true)
	order := []peer.ID{expired, newOnce, oldRenewed}
	for i, want := range order {
		p.mu.Lock()
		got, ok := p.victimLocked("", now)
		if ok {
			p.bytes -= entryCost(p.entries[got])
			delete(p.entries, got)
		}
		p.mu.Unlock()
		if !ok || got != want {
			t.Fatalf("eviction %d: got %s, want %s", i, got, want)
		}
	}
	self := add("self", 0, now.Add(-time.Hour), true)
	p.mu.Lock()
	delete(p.entries, self)
	p.entries[p.h.ID()] = &PoolEntry{Record: *typicalRecord(p.h.ID(), 1, 0)}
	_, ok := p.victimLocked("", now)
	p.mu.Unlock()
	if ok {
		t.Error("the node's own record was chosen for eviction")
	}
}

// ingestResult ingests env and returns "" when the pool accepted it, else
// the reason it was ignored or rejected.
func (p *Pool) ingestResult(env []byte) string {
	before := p.Stats()
	p.ingest(env)
	after := p.Stats()
	if after.Accepted == before.Accepted+1 {
		return ""
	}
	for k, v := range after.Reasons {
		if v != before.Reasons[k] {
			return k
		}
	}
	return fmt.Sprintf("not accepted (stats %+v)", after)
}

// TestPoolTenThousandProviders puts 10,000 typical signed records (two
// addresses, a GPU, two labels, as providers send them) into a pool
// through the path of relayed records and measures the heap the pool then
// holds, the peerstore addresses the records add included: the pool of a
// 10,000-provider swarm stays within its byte budget, and the estimate
// that enforces the budget does not undercount the real heap by more than
// half.
func TestPoolTenThousandProviders(t *testing.T) {
	const n = 10_000
	envs := make([][]byte, n)
	for i := range envs {
		who := freshIdentity(t)
		envs[i] = sign(t, typicalRecord(who.id, 1, 0), who)
	}
	size := len(envs[0])
	p, _ := glassPool(t, PoolConfig{RecordRate: 1e6, RecordBurst: 1})
	base := heapAlloc()
	for i, env := range envs {
		// As if read from the network: the pool holds its own copy.
		if res := p.ingestResult(bytes.Clone(env)); res != "" {
			t.Fatalf("record %d refused: %s", i, res)
		}
		envs[i] = nil
	}
	heap := int64(heapAlloc()) - int64(base)
	p.mu.Lock()
	entries, estimate := len(p.entries), p.bytes
	p.mu.Unlock()
	t.Logf("%d providers (envelope %d B): pool heap %.1f MiB (%.0f B/provider), estimate %.1f MiB, budget %d MiB",
		entries, size, float64(heap)/(1<<20), float64(heap)/float64(entries), float64(estimate)/(1<<20), p.cfg.MaxBytes>>20)
	if entries != n {
		t.Fatalf("pool holds %d of %d providers", entries, n)
	}
	if heap > p.cfg.MaxBytes {
		t.Errorf("pool heap %d B over its budget %d B", heap, p.cfg.MaxBytes)
	}
	if heap > estimate*3/2 {
		t.Errorf("pool heap %d B is over 1.5x its estimate %d B", heap, estimate)
	}
}
