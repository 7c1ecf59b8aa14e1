package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
	"github.com/offload-project/offload/storage"
)

// benchProviders is the swarm size: OFFLOAD_BENCH_PROVIDERS or 20.
func benchProviders(b *testing.B) int {
	if s := os.Getenv("OFFLOAD_BENCH_PROVIDERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("OFFLOAD_BENCH_PROVIDERS=%q: want a positive count", s)
		}
		return n
	}
	return 20
}

// memPoolStore keeps the providers' own pools in memory: the benchmark is
// about discovery, and 50 Badger databases in one process measure Badger.
type memPoolStore struct {
	mu sync.Mutex
	m  map[string]*discovery.PoolEntry
}

func (s *memPoolStore) PutMany(items map[string]*discovery.PoolEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range items {
		s.m[k] = v
	}
	return nil
}

func (s *memPoolStore) Delete(k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}

func (s *memPoolStore) List() ([]*discovery.PoolEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*discovery.PoolEntry, 0, len(s.m))
	for _, v := range s.m {
		out = append(out, v)
	}
	return out, nil
}

type discNode struct {
	h    *p2p.Host
	pool *discovery.Pool
	adv  *discovery.Advertiser
}

func (n *discNode) close() {
	if n.adv != nil {
		n.adv.Close()
	}
	n.pool.Close()
	n.h.Close()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startDiscNode(b *testing.B, boot []string, store discovery.PoolStore, provider bool, i int) *discNode {
	b.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := p2p.New(context.Background(), p2p.Config{
		Identity: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: boot, Logger: quiet,
		ScoredTopics: []string{wire.TopicCaps, wire.TopicTasks},
	})
	if err != nil {
		b.Fatal(err)
	}
	topic, err := h.PubSub.Join(h.Topic(wire.TopicCaps))
	if err != nil {
		b.Fatal(err)
	}
	pool, err := discovery.NewPool(discovery.Network{Host: h, PubSub: h.PubSub, Routing: h.DHT, Namespace: h.Namespace}, topic, store, discovery.PoolConfig{Logger: quiet, DiscoverInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	if err := pool.Start(); err != nil {
		b.Fatal(err)
	}
	n := &discNode{h: h, pool: pool}
	if provider {
		n.adv, err = discovery.NewAdvertiser(pool, discovery.AdvertiserConfig{
			Hardware: wire.Hardware{OS: "linux", Arch: "amd64", CPUModel: "bench", CPUs: 4, MemoryBytes: 8 << 30,
				Labels: map[string]string{"rack": strconv.Itoa(i % 5)}},
			Executors: []string{"docker", "wasm"}, Price: 0.1, Capacity: wire.Resources{CPUs: 4, MemoryBytes: 6 << 30},
			Free:   func() wire.Resources { return wire.Resources{CPUs: 4, MemoryBytes: 6 << 30} },
			Logger: quiet, ProvideInterval: -1,
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := n.adv.Start(); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// BenchmarkDiscoveryLateRequestor measures how long a requestor that joins
// a swarm of N providers (through one random provider) takes until its
// pool holds all N, against the baseline of the libp2p dial to that
// provider. Target: p95 under 2 s at N=50.
func BenchmarkDiscoveryLateRequestor(b *testing.B) {
	n := benchProviders(b)
	var provs []*discNode
	defer func() {
		for _, p := range provs {
			p.close()
		}
	}()
	swarmStart := time.Now()
	for i := range n {
		var boot []string
		if i > 0 {
			// Each provider bootstraps from a random earlier one: a swarm
			// that grew, not a star.
			boot = provs[rand.Intn(i)].h.FullAddrs()
		}
		provs = append(provs, startDiscNode(b, boot, &memPoolStore{m: map[string]*discovery.PoolEntry{}}, true, i))
	}
	ids := make([]peer.ID, n)
	for i, p := range provs {
		ids[i] = p.h.ID()
	}
	sees := func(pool *discovery.Pool) bool {
		got := map[peer.ID]bool{}
		for _, e := range pool.List(discovery.PoolFilter{}) {
			got[e.Record.PeerID()] = true
		}
		for _, id := range ids {
			if !got[id] {
				return false
			}
		}
		return true
	}
	// Wait for the providers to converge among themselves first.
	testwait.For(b, 60*time.Second, 20*time.Millisecond, fmt.Sprintf("the %d providers to converge", n), func() bool {
		for _, p := range provs {
			if !sees(p.pool) {
				return false
			}
		}
		return true
	})
	converged := time.Since(swarmStart)

	samples := max(b.N, 20)
	var took, dial []time.Duration
	b.ResetTimer()
	for i := range samples {
		db, err := storage.Open(filepath.Join(b.TempDir(), strconv.Itoa(i)), nil)
		if err != nil {
			b.Fatal(err)
		}
		via := provs[rand.Intn(n)]
		start := time.Now()
		req := startDiscNode(b, via.h.FullAddrs(), storage.NewTable[discovery.PoolEntry](db, "pool"), false, 0)
		dial = append(dial, time.Since(start))
		// Polled every 2 ms: the poll interval bounds the measurement's
		// resolution.
		if !testwait.Until(b.Context(), 30*time.Second, 2*time.Millisecond, func() bool { return sees(req.pool) }) {
			b.Fatalf("sample %d: the late requestor saw %d of %d providers after 30s", i, len(req.pool.List(discovery.PoolFilter{})), n)
		}
		took = append(took, time.Since(start))
		req.close()
		db.Close()
	}
	b.StopTimer()
	p50, p95 := percentile(took, 0.5), percentile(took, 0.95)
	base := percentile(dial, 0.5)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(base.Microseconds())/1000, "join-baseline-ms")
	b.ReportMetric(float64(p95)/float64(base), "p95/join")
	fmt.Printf("discovery: %d providers converged in %s; late requestor sees all: p50 %s p95 %s over %d samples (host start+dial baseline p50 %s, p95/baseline %.1fx); target p95 < 2s at N=50\n",
		n, converged.Round(time.Millisecond), p50.Round(time.Millisecond), p95.Round(time.Millisecond), samples,
		base.Round(time.Millisecond), float64(p95)/float64(base))
}

// buildOffload builds the offload binary into dir.
func buildOffload(b *testing.B, dir string) string {
	b.Helper()
	bin := filepath.Join(dir, "offload")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/offload")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build offload: %v\n%s", err, out)
	}
	return bin
}

// vmRSS reads a process's resident set size from /proc.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// BenchmarkIdleNodeRSS runs `offload node --provider` (wasm executor, no
// peers) as a process, lets it settle (OFFLOAD_BENCH_SETTLE, default 5s)
// and reads its VmRSS; a requestor-only node is measured beside it as the
// baseline. Target: an idle provider under 80 MiB.
func BenchmarkIdleNodeRSS(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc")
	}
	dir := b.TempDir()
	bin := buildOffload(b, dir)
	settle := 5 * time.Second
	if s := os.Getenv("OFFLOAD_BENCH_SETTLE"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			settle = d
		}
	}
	measure := func(name string, args ...string) int64 {
		home := filepath.Join(dir, name)
		if out, err := exec.Command(bin, "init", "--home", home).CombinedOutput(); err != nil {
			b.Fatalf("init: %v\n%s", err, out)
		}
		all := append([]string{"node", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--log-level", "warn"}, args...)
		cmd := exec.Command(bin, all...)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}()
		testwait.For(b, 30*time.Second, 20*time.Millisecond, name+" node to start", func() bool {
			_, err := os.Stat(filepath.Join(home, "api"))
			return err == nil
		})
		// The sleep is the point: the RSS of a node left idle for settle.
		time.Sleep(settle)
		rss, err := vmRSS(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		return rss
	}
	b.ResetTimer()
	var prov, req int64
	for range max(b.N, 1) {
		prov = measure("provider", "--provider", "--executors", "wasm")
		req = measure("requestor")
	}
	b.StopTimer()
	b.ReportMetric(float64(prov)/(1<<20), "provider-rss-MiB")
	b.ReportMetric(float64(req)/(1<<20), "requestor-rss-MiB")
	b.ReportMetric(float64(prov)/float64(req), "provider/requestor")
	fmt.Printf("idle RSS after %s: provider %.1f MiB, requestor %.1f MiB (target < 80 MiB)\n", settle, float64(prov)/(1<<20), float64(req)/(1<<20))
}
