package discovery

import (
	"fmt"
	"testing"
	"time"

	"github.com/offload-project/offload/market/wire"
)

// fillCandidates puts n providers' records in p: every other one offers only
// wasm, the rest docker and wasm.
func fillCandidates(t testing.TB, p *Pool, n int) {
	t.Helper()
	for i := range n {
		who := freshIdentity(t)
		rec := typicalRecord(who.id, 1, 0)
		if i%2 == 1 {
			rec.Executors = []string{"wasm"}
		}
		if why := p.ingestResult(sign(t, rec, who)); why != "" {
			t.Fatalf("record %d: %s", i, why)
		}
	}
}

// TestCandidatesBoundedAndMatching: Candidates returns only alive providers
// that match, with their advertised price and free capacity, and at most
// MaxCandidates of them however large the pool is.
func TestCandidatesBoundedAndMatching(t *testing.T) {
	p, _ := glassPool(t, PoolConfig{})
	fillCandidates(t, p, 40)
	docker := wire.Requirements{Runtime: "docker", Resources: wire.Resources{CPUs: 1}}
	got := p.Candidates(docker)
	if len(got) != 20 {
		t.Fatalf("%d docker candidates of 40 records (20 offer docker)", len(got))
	}
	for _, c := range got {
		e := p.entries[c.Peer]
		if e == nil || !FilterFor(docker).Match(&e.Record) || c.Price != e.Record.Price || c.Free != e.Record.Free {
			t.Fatalf("candidate %s does not match its record", c.Peer)
		}
	}
	if n := len(p.Candidates(wire.Requirements{Runtime: "wasm"})); n != 40 {
		t.Fatalf("%d wasm candidates, want 40", n)
	}
	if n := len(p.Candidates(wire.Requirements{Runtime: "docker", Resources: wire.Resources{CPUs: 1000}})); n != 0 {
		t.Fatalf("%d candidates for more CPUs than any has", n)
	}
	// A record issued long ago by a provider that is not connected is not
	// a candidate (it may be gone).
	for _, e := range p.entries {
		e.Record.IssuedAt = time.Now().Add(-time.Hour).UnixMilli()
		break
	}
	if n := len(p.Candidates(wire.Requirements{Runtime: "wasm"})); n != 39 {
		t.Fatalf("%d wasm candidates with one stale record, want 39", n)
	}

	fillCandidates(t, p, 2*MaxCandidates)
	if n := len(p.Candidates(docker)); n != MaxCandidates {
		t.Fatalf("%d candidates from a pool of %d, want the bound %d", n, len(p.entries), MaxCandidates)
	}
}

// BenchmarkCandidates: the cost of one auction's candidate list at pool
// sizes from 1,000 to 10,000 providers stays that of MaxCandidates.
func BenchmarkCandidates(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		p, _ := glassPool(b, PoolConfig{})
		fillCandidates(b, p, n)
		req := wire.Requirements{Runtime: "docker", Resources: wire.Resources{CPUs: 1}}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if len(p.Candidates(req)) != MaxCandidates {
					b.Fatal("short")
				}
			}
		})
	}
}
