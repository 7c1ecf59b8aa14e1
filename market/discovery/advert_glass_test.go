package discovery

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/offload-project/offload/market/wire"
)

// churn is a provider's free capacity that a test changes at will.
type churn struct {
	mu   sync.Mutex
	free wire.Resources
}

func (c *churn) get() wire.Resources {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.free
}

func (c *churn) set(r wire.Resources) {
	c.mu.Lock()
	c.free = r
	c.mu.Unlock()
}

// churnAdvertiser starts an advertiser on a glass pool (gossip goes
// nowhere; only what is published counts).
func churnAdvertiser(t *testing.T, c *churn, capacity wire.Resources, minGap, hold time.Duration) *Advertiser {
	t.Helper()
	p, _ := glassPool(t, PoolConfig{})
	a, err := NewAdvertiser(p, AdvertiserConfig{
		Hardware:  wire.Hardware{OS: "linux", Arch: "amd64", CPUs: int(capacity.CPUs), MemoryBytes: capacity.MemoryBytes},
		Executors: []string{"docker"}, Capacity: capacity, Free: c.get,
		Interval: time.Hour, MinGap: minGap, Hold: hold, ProvideInterval: -1, Logger: p.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestAdvertBoundUnderChurn: a provider whose free capacity flips 1,000
// times in a few seconds (every flip one that matters: 2 free CPUs, then
// none) advertises at most once per MinGap, and its last state reaches
// the pool within MinGap of the last change.
func TestAdvertBoundUnderChurn(t *testing.T) {
	capacity := wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}
	for _, tc := range []struct {
		name   string
		minGap time.Duration
		flips  time.Duration // between changes
	}{
		// The default gap: 1,000 changes in 2 s bring no advert after
		// Start's (the next may come a minute after it).
		{"default gap", 0, 2 * time.Millisecond},
		// A short gap, to see the coalescing at work within a test.
		{"100 ms gap", 100 * time.Millisecond, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &churn{free: capacity}
			a := churnAdvertiser(t, c, capacity, tc.minGap, -1)
			gap := a.cfg.MinGap
			start := time.Now()
			for i := range 1000 {
				if i%2 == 0 {
					c.set(wire.Resources{})
				} else {
					c.set(capacity)
				}
				a.Changed()
				time.Sleep(tc.flips)
			}
			final := wire.Resources{CPUs: 1, MemoryBytes: 1 << 30}
			c.set(final)
			a.Changed()
			elapsed := time.Since(start)
			n := a.Adverts()
			// Start's advert, then at most one per started gap.
			bound := 1 + uint64(elapsed/gap) + 1
			t.Logf("1,000 changes in %s: %d adverts (MinGap %s, bound %d; %.1f a minute at most with this gap)",
				elapsed.Round(time.Millisecond), n, gap, bound, float64(time.Minute)/float64(gap))
			if n > bound {
				t.Fatalf("%d adverts in %s, bound %d", n, elapsed, bound)
			}
			if gap > time.Second {
				return
			}
			if n < 3 {
				t.Errorf("%d adverts: changes that matter were not advertised at all", n)
			}
			deadline := time.Now().Add(gap + 2*time.Second)
			for {
				rec, err := wire.DecodeCapRecord(a.Current())
				if err != nil {
					t.Fatal(err)
				}
				// The last state reaches the pool in what matters.
				if !FreeChangeMatters(rec.Free, final, capacity) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the last change was not advertised: free %+v", rec.Free)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestAdvertHoldsShortChanges: a provider that fills up and frees again
// every few milliseconds (short tasks) never advertises those states; a
// change that lasts is advertised once it has lasted Hold, not before.
func TestAdvertHoldsShortChanges(t *testing.T) {
	capacity := wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}
	c := &churn{free: capacity}
	const hold = 300 * time.Millisecond
	a := churnAdvertiser(t, c, capacity, 10*time.Millisecond, hold)
	for i := range 500 {
		if i%2 == 0 {
			c.set(wire.Resources{})
		} else {
			c.set(capacity)
		}
		a.Changed()
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(hold + 100*time.Millisecond)
	if n := a.Adverts(); n != 1 {
		t.Fatalf("%d adverts after 500 short changes, want only Start's", n)
	}
	c.set(wire.Resources{})
	a.Changed()
	since := time.Now()
	time.Sleep(hold / 2)
	if n := a.Adverts(); n != 1 {
		t.Fatalf("advertised %s after the change, before it lasted %s", time.Since(since), hold)
	}
	for {
		rec, err := wire.DecodeCapRecord(a.Current())
		if err != nil {
			t.Fatal(err)
		}
		if rec.Free.CPUs == 0 {
			t.Logf("a lasting change advertised %s after it began (hold %s)", time.Since(since).Round(time.Millisecond), hold)
			break
		}
		if time.Since(since) > hold+3*time.Second {
			t.Fatalf("a change lasting %s was not advertised", time.Since(since))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAdvertHoldAfterRevertedChange: a change that lasted Hold but was
// undone while the advert waited for MinGap is not advertised, and a later
// change waits a Hold of its own.
func TestAdvertHoldAfterRevertedChange(t *testing.T) {
	capacity := wire.Resources{CPUs: 2, MemoryBytes: 2 << 30}
	c := &churn{free: capacity}
	const hold, gap = 300 * time.Millisecond, time.Second
	a := churnAdvertiser(t, c, capacity, gap, hold)
	start := time.Now() // Start's advert: the next may come at start+gap
	c.set(wire.Resources{})
	a.Changed()
	time.Sleep(500 * time.Millisecond) // held, now waiting for the gap
	// Undone with no Changed (a reservation that expired): only the look
	// after the gap sees it.
	c.set(capacity)
	time.Sleep(time.Until(start.Add(gap + 200*time.Millisecond)))
	if n := a.Adverts(); n != 1 {
		t.Fatalf("%d adverts: a change undone before the gap ended was advertised", n)
	}
	c.set(wire.Resources{})
	a.Changed()
	changed := time.Now()
	time.Sleep(hold / 2)
	if n := a.Adverts(); n != 1 {
		t.Fatalf("a new change was advertised %s after it began, before its own hold of %s", time.Since(changed), hold)
	}
	deadline := changed.Add(hold + 3*time.Second)
	for a.Adverts() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the lasting change was never advertised")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAdvertQuietOnSmallChanges: a 64-CPU provider whose free CPUs move
// between 40 and 33 a thousand times does not advertise at all.
func TestAdvertQuietOnSmallChanges(t *testing.T) {
	capacity := wire.Resources{CPUs: 64, MemoryBytes: 256 << 30}
	c := &churn{free: wire.Resources{CPUs: 40, MemoryBytes: 200 << 30}}
	a := churnAdvertiser(t, c, capacity, 10*time.Millisecond, -1)
	for i := range 1000 {
		c.set(wire.Resources{CPUs: float64(33 + i%8), MemoryBytes: (200 - int64(i%8)) << 30})
		a.Changed()
		if i%100 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := a.Adverts(); n != 1 {
		t.Fatalf("%d adverts, want only Start's", n)
	}
}

func TestFreeChangeMatters(t *testing.T) {
	const gib = 1 << 30
	two := wire.Resources{CPUs: 2, MemoryBytes: 2 * gib}
	big := wire.Resources{CPUs: 64, MemoryBytes: 256 * gib, GPUs: 8}
	for _, tc := range []struct {
		name          string
		was, now, cap wire.Resources
		want          bool
	}{
		{"same", two, two, two, false},
		{"2 to 1 cpus", two, wire.Resources{CPUs: 1, MemoryBytes: 2 * gib}, two, false},
		{"1 to 0 cpus (full)", wire.Resources{CPUs: 1, MemoryBytes: gib}, wire.Resources{MemoryBytes: gib}, two, true},
		{"0 to 1 cpus (free again)", wire.Resources{MemoryBytes: gib}, wire.Resources{CPUs: 1, MemoryBytes: gib}, two, true},
		{"0.5 to 0.25 cpus", wire.Resources{CPUs: 0.5, MemoryBytes: gib}, wire.Resources{CPUs: 0.25, MemoryBytes: gib}, two, false},
		{"memory runs out", wire.Resources{CPUs: 2, MemoryBytes: gib}, wire.Resources{CPUs: 2, MemoryBytes: 256 << 20}, two, true},
		{"40 to 33 of 64", wire.Resources{CPUs: 40, MemoryBytes: 200 * gib}, wire.Resources{CPUs: 33, MemoryBytes: 200 * gib}, big, false},
		{"60 to 40 of 64", wire.Resources{CPUs: 60, MemoryBytes: 200 * gib}, wire.Resources{CPUs: 40, MemoryBytes: 200 * gib}, big, false},
		{"60 to 27 of 64 (over half)", wire.Resources{CPUs: 60, MemoryBytes: 200 * gib}, wire.Resources{CPUs: 27, MemoryBytes: 200 * gib}, big, true},
		{"memory by half", wire.Resources{CPUs: 40, MemoryBytes: 200 * gib}, wire.Resources{CPUs: 40, MemoryBytes: 60 * gib}, big, true},
		{"memory within half", wire.Resources{CPUs: 40, MemoryBytes: 200 * gib}, wire.Resources{CPUs: 40, MemoryBytes: 120 * gib}, big, false},
		{"last gpu taken", wire.Resources{CPUs: 40, MemoryBytes: 200 * gib, GPUs: 1}, wire.Resources{CPUs: 40, MemoryBytes: 200 * gib}, big, true},
		{"gpus 7 to 6", wire.Resources{CPUs: 40, MemoryBytes: 200 * gib, GPUs: 7}, wire.Resources{CPUs: 40, MemoryBytes: 200 * gib, GPUs: 6}, big, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FreeChangeMatters(tc.was, tc.now, tc.cap); got != tc.want {
				t.Errorf("FreeChangeMatters(%+v, %+v) = %v, want %v", tc.was, tc.now, got, tc.want)
			}
		})
	}
}

// addrsHost is a host that reports the addresses a test gives it.
type addrsHost struct {
	host.Host
	addrs []ma.Multiaddr
}

func (h addrsHost) Addrs() []ma.Multiaddr { return h.addrs }

// TestAdvertCarriesNoLANAddressBesidePublic: a provider with a public (or
// relay) address advertises only those, not its LAN or loopback
// addresses, which tell every reader of the swarm about its network and
// which no one elsewhere can dial; with LAN addresses only, it advertises
// those.
func TestAdvertCarriesNoLANAddressBesidePublic(t *testing.T) {
	const (
		lo  = "/ip4/127.0.0.1/tcp/4001"
		lan = "/ip4/10.1.2.3/tcp/4001"
		pub = "/ip4/7.7.7.7/tcp/4001"
	)
	for _, tc := range []struct {
		have []string
		want []string
	}{
		{[]string{lo, lan, pub}, []string{pub}},
		{[]string{lo, lan}, []string{lan}},
	} {
		p, _ := glassPool(t, PoolConfig{})
		var have []ma.Multiaddr
		for _, s := range tc.have {
			have = append(have, ma.StringCast(s))
		}
		p.h = addrsHost{Host: p.h, addrs: have}
		a, err := NewAdvertiser(p, AdvertiserConfig{
			Hardware: wire.Hardware{OS: "linux", Arch: "amd64", CPUs: 1, MemoryBytes: 1 << 30}, Executors: []string{"wasm"},
			Capacity: wire.Resources{CPUs: 1, MemoryBytes: 1 << 30}, Free: func() wire.Resources { return wire.Resources{} },
			Interval: time.Hour, ProvideInterval: -1, Logger: p.log,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		rec, err := wire.DecodeCapRecord(a.Current())
		a.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec.Addrs, tc.want) {
			t.Errorf("host has %v: record carries %v, want %v", tc.have, rec.Addrs, tc.want)
		}
	}
}
