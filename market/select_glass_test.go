package market

import (
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/market/wire"
)

func TestRankBids(t *testing.T) {
	bids := []BidRecord{
		{Provider: "A", Price: 0.3, StartMS: 10, HasImage: true, InputsLocal: 1},
		{Provider: "B", Price: 0.1, StartMS: 500, HasImage: false, InputsLocal: 1},
		{Provider: "C", Price: 0.2, StartMS: 5, HasImage: true, InputsLocal: 1},
		{Provider: "D", Decline: "busy"},
		{Provider: "E", Price: 0.05, Outcome: "over max price 0.01"},
	}
	rep := map[string]Reputation{
		"B": {Completed: 1, Failed: 9}, // cheap but unreliable
		"C": {Completed: 20},
		"A": {Completed: 5, Failed: 5},
	}
	tests := []struct {
		strategy string
		want     string // providers in order
		why      string
	}{
		{"", "BCA", "lowest price (0.1)"},
		{StrategyCheapest, "BCA", "lowest price"},
		{StrategyFastest, "CAB", "earliest start (5ms, image local: true)"},
		{StrategyReputation, "CAB", "success rate 0.95"},
	}
	for _, tc := range tests {
		t.Run(tc.strategy, func(t *testing.T) {
			order, why := rankBids(bids, tc.strategy, rep)
			got := ""
			for _, i := range order {
				got += bids[i].Provider
			}
			if got != tc.want {
				t.Errorf("order = %s, want %s", got, tc.want)
			}
			if !strings.Contains(why, tc.why) {
				t.Errorf("why = %q, want it to contain %q", why, tc.why)
			}
		})
	}
	// Fastest prefers the provider that already holds the inputs.
	local := []BidRecord{{Provider: "far", StartMS: 5, HasImage: true}, {Provider: "near", StartMS: 10, HasImage: true, InputsLocal: 1}}
	if order, _ := rankBids(local, StrategyFastest, nil); local[order[0]].Provider != "near" {
		t.Errorf("fastest with inputs: %v", order)
	}
	if order, _ := rankBids([]BidRecord{{Provider: "X", Decline: "no"}}, "", nil); len(order) != 0 {
		t.Errorf("declines are never ranked: %v", order)
	}
	// Ties are broken deterministically.
	tie := []BidRecord{{Provider: "Z", Price: 1}, {Provider: "Y", Price: 1}}
	if order, _ := rankBids(tie, "", nil); tie[order[0]].Provider != "Y" {
		t.Errorf("tie order: %v", order)
	}
}

func TestRepBook(t *testing.T) {
	now := time.Now()
	ok := &wire.Result{ExitCode: 0}
	bad := &wire.Result{ExitCode: 3}
	b := newRepBook([]*Task{{Executions: []Execution{
		{Provider: "A", State: "completed", Result: ok, AwardedAt: now, FinishedAt: now.Add(100 * time.Millisecond)},
		{Provider: "A", State: "completed", Result: ok, AwardedAt: now, FinishedAt: now.Add(300 * time.Millisecond)},
		{Provider: "A", State: "completed", Result: bad, AwardedAt: now, FinishedAt: now.Add(time.Second)},
		{Provider: "B", State: "failed"},
		{Provider: "B", State: "awarded"},
	}}})
	got := b.snapshot()
	if a := got["A"]; a.Completed != 2 || a.Failed != 0 || a.MeanDeliveryMS != 200 {
		t.Errorf("A = %+v", a)
	}
	if r := got["B"]; r.Failed != 1 || r.Completed != 0 || r.SuccessRate() >= 0.5 {
		t.Errorf("B = %+v rate %v", r, r.SuccessRate())
	}
	if (Reputation{}).SuccessRate() != 0.5 {
		t.Error("a newcomer starts at 0.5")
	}
}

func TestLedgerCapacity(t *testing.T) {
	l := newLedger(Capacity{CPUs: 2, MemoryBytes: 1 << 30})
	res := wire.Resources{CPUs: 1, MemoryBytes: 256 << 20}
	if why := l.reserve("t1", "R", res, time.Minute); why != "" {
		t.Fatal(why)
	}
	if why := l.reserve("t2", "R", res, time.Minute); why != "" {
		t.Fatal(why)
	}
	if why := l.reserve("t3", "R", res, time.Minute); !strings.HasPrefix(why, "busy") {
		t.Fatalf("third reservation on 2 cpus: %q", why)
	}
	if why := l.claim("t1", "other", res); why == "" {
		t.Fatal("another requestor claimed t1's reservation")
	}
	if why := l.claim("t1", "R", res); why != "" {
		t.Fatalf("claim: %s", why)
	}
	l.release("t2")
	if f := l.Free(); f.CPUs != 1 {
		t.Fatalf("free after release = %+v", f)
	}
	// An expired reservation frees its capacity.
	if why := l.reserve("t4", "R", res, time.Nanosecond); why != "" {
		t.Fatal(why)
	}
	time.Sleep(time.Millisecond)
	if f := l.Free(); f.CPUs != 1 {
		t.Fatalf("free after expiry = %+v", f)
	}
}
