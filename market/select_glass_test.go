package market

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/testwait"
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

// TestAdmission: reservations up to capacity, then queue places up to the
// queue's bound; claims by the reserving requestor only; one release frees
// capacity, a place and a queued award alike; expiry frees reservations.
func TestAdmission(t *testing.T) {
	a := newAdmission(Capacity{CPUs: 2, MemoryBytes: 1 << 30}, 1, nil, nil)
	a.vouch("R", time.Now()) // a known customer; newcomers: TestAdmissionNewcomers
	res := wire.Resources{CPUs: 1, MemoryBytes: 256 << 20}
	for _, k := range []string{"t1", "t2"} {
		if start, why := a.reserve(k, "R", res, time.Minute); why != "" || start != 0 {
			t.Fatalf("reserve %s: %q start %d", k, why, start)
		}
	}
	// Full: a queue place with a later start.
	if start, why := a.reserve("t3", "R", res, time.Minute); why != "" || start <= 0 {
		t.Fatalf("third reservation on 2 cpus: %q start %d", why, start)
	}
	if ok, why := a.reservedFor("t1", "other"); ok || why != "not your reservation" {
		t.Fatalf("another requestor's award for t1: %v %q", ok, why)
	}
	if ok, why := a.reservedFor("t9", "R"); ok || why != ReasonNoReservation {
		t.Fatalf("award without a bid: %v %q", ok, why)
	}
	if queued, why := a.claim("t1", "other", res); why == "" || queued {
		t.Fatal("another requestor claimed t1's reservation")
	}
	if queued, why := a.claim("t1", "R", res); why != "" || queued {
		t.Fatalf("claim: %q queued %v", why, queued)
	}
	// t3 holds a queue place; its award runs at once on the capacity t2's
	// bid reserved (the same requestor's work here and now goes first),
	// and t2's promise becomes a queue place.
	if queued, why := a.claim("t3", "R", res); why != "" || queued {
		t.Fatalf("claim of a queue place: %q queued %v", why, queued)
	}
	if ok, why := a.reservedFor("t2", "R"); !ok {
		t.Fatalf("t2's preempted bid lost its promise: %q", why)
	}
	if queued, why := a.claim("t2", "R", res); why != "" || !queued {
		t.Fatalf("claim of the preempted bid: %q queued %v", why, queued)
	}
	// The queue (bound 1) is full now: no more places.
	if _, why := a.reserve("t4", "R", res, time.Minute); !strings.Contains(why, "queue is full") {
		t.Fatalf("reservation past the queue: %q", why)
	}
	// t2 waits for its turn; releasing t1 (its run ended) lets it run.
	turn := make(chan error, 1)
	go func() { turn <- a.waitTurn(t.Context(), "t2", "R", res, nil) }()
	a.release("t1")
	if err := <-turn; err != nil {
		t.Fatal(err)
	}
	if f := a.Free(); f.CPUs != 0 {
		t.Fatalf("free with t2 and t3 running = %+v", f)
	}
	// A running task's allocation is not a reservation a cancel can take.
	if a.releaseReservation("t2", "R") {
		t.Fatal("a cancel released a running task's capacity")
	}
	a.release("t2")
	a.release("t3")
	a.release("t3") // twice is fine
	if f := a.Free(); f.CPUs != 2 {
		t.Fatalf("free after release = %+v", f)
	}
	// A place queued and then released leaves the queue: another fits.
	a2 := newAdmission(Capacity{CPUs: 1, MemoryBytes: 1 << 30}, 1, nil, nil)
	a2.vouch("R", time.Now())
	a2.reserve("x", "R", res, time.Minute)
	a2.reserve("y", "R", res, time.Minute)
	a2.claim("x", "R", res) // runs
	if queued, _ := a2.claim("y", "R", res); !queued {
		t.Fatal("y not queued")
	}
	a2.release("y") // e.g. its preparation failed before its turn
	if _, why := a2.reserve("z", "R", res, time.Minute); why != "" {
		t.Fatalf("the queue kept a released award: %q", why)
	}
	// An expired reservation frees its capacity.
	a3 := newAdmission(Capacity{CPUs: 1, MemoryBytes: 1 << 30}, 1, nil, nil)
	a3.vouch("R", time.Now())
	a3.reserve("e", "R", res, time.Nanosecond)
	if !testwait.Until(t.Context(), time.Second, time.Millisecond, func() bool { return a3.Free().CPUs == 1 }) {
		t.Fatalf("free after expiry = %+v", a3.Free())
	}
}

// TestAdmissionNewcomers: bids of requestors new to this provider
// (every identity a Sybil makes) reserve at most half of the capacity
// together, however many identities they use, and promise a bounded number
// of queue places; a known customer still reserves the rest at once.
func TestAdmissionNewcomers(t *testing.T) {
	a := newAdmission(Capacity{CPUs: 4, MemoryBytes: 8 << 30}, 4, nil, nil)
	res := wire.Resources{CPUs: 1, MemoryBytes: 256 << 20}
	reserved, placed, refused := 0, 0, 0
	for i := range 200 {
		sybil := fmt.Sprintf("sybil-%d", i)
		for j := range 20 {
			start, why := a.reserve(fmt.Sprintf("%s/task-%d/1", sybil, j), sybil, res, time.Minute)
			switch {
			case why != "":
				refused++
			case start == 0:
				reserved++
			default:
				placed++
			}
		}
	}
	if reserved != 2 {
		t.Fatalf("newcomers reserved %d cpus of 4, want 2 (half)", reserved)
	}
	if placed > placesPerQueueSlot*4 {
		t.Fatalf("newcomers were promised %d queue places, bound %d", placed, placesPerQueueSlot*4)
	}
	if len(a.places) > placesPerQueueSlot*4 || len(a.held) != 2 {
		t.Fatalf("admission holds %d places and %d reservations", len(a.places), len(a.held))
	}
	// One newcomer alone cannot take every promised place either.
	b := newAdmission(Capacity{CPUs: 1, MemoryBytes: 1 << 30}, 100, nil, nil)
	for j := range 100 {
		b.reserve(fmt.Sprintf("one/task-%d/1", j), "one", res, time.Minute)
	}
	if len(b.places) != maxPlacesPerRequestor {
		t.Fatalf("one requestor holds %d places, bound %d", len(b.places), maxPlacesPerRequestor)
	}
	// A newcomer's first task runs even when it is larger than the share
	// (one GPU of one, all of a one-cpu provider).
	g := newAdmission(Capacity{CPUs: 1, MemoryBytes: 1 << 30, GPUs: 1}, 4, nil, nil)
	if start, why := g.reserve("new/gpu/1", "new", wire.Resources{CPUs: 1, MemoryBytes: 256 << 20, GPUs: 1}, time.Minute); why != "" || start != 0 {
		t.Fatalf("a newcomer's first whole-provider task: %q start %d", why, start)
	}
	if queued, why := g.claim("new/gpu/1", "new", wire.Resources{CPUs: 1, MemoryBytes: 256 << 20, GPUs: 1}); why != "" || queued {
		t.Fatalf("claim: %q queued %v", why, queued)
	}
	// A known customer reserves the half the newcomers could not.
	a.vouch("customer", time.Now())
	for j := range 2 {
		if start, why := a.reserve(fmt.Sprintf("customer/task-%d/1", j), "customer", res, time.Minute); why != "" || start != 0 {
			t.Fatalf("customer's reservation %d: %q start %d", j, why, start)
		}
	}
	// Neither an award still fetching (queued first) nor a newcomer over
	// its share holds up a known customer's award queued behind it.
	q := newAdmission(Capacity{CPUs: 2, MemoryBytes: 1 << 30}, 8, nil, nil)
	q.vouch("customer", time.Now())
	for _, k := range []string{"customer/run-1/1", "customer/run-2/1"} { // both cpus busy
		q.reserve(k, "customer", res, time.Minute)
		if queued, why := q.claim(k, "customer", res); why != "" || queued {
			t.Fatalf("claim %s: %q queued %v", k, why, queued)
		}
	}
	for _, k := range []string{"sybil/bait/1", "sybil/bait-2/1", "customer/next/1"} {
		who, _, _ := strings.Cut(k, "/")
		q.reserve(k, who, res, time.Minute)
		if queued, why := q.claim(k, who, res); why != "" || !queued {
			t.Fatalf("claim %s: %q queued %v", k, why, queued)
		}
	}
	turn := make(chan error, 2)
	go func() { turn <- q.waitTurn(t.Context(), "customer/next/1", "customer", res, nil) }()
	// sybil/bait/1 never gets ready (its content never arrives);
	// sybil/bait-2/1 is ready, and runs when a cpu frees; then the
	// newcomers' share (1 of 2 cpus) holds it back no more than the
	// customer's award behind it.
	go func() { turn <- q.waitTurn(t.Context(), "sybil/bait-2/1", "sybil", res, nil) }()
	q.release("customer/run-1/1")
	if err := <-turn; err != nil {
		t.Fatal(err)
	}
	q.release("customer/run-2/1")
	if err := <-turn; err != nil {
		t.Fatal(err)
	}
	if len(q.order) != 1 || q.order[0] != "sybil/bait/1" {
		t.Fatalf("queue left: %v", q.order)
	}

	// A known customer's award takes the capacity newcomers' bids reserved
	// (promises that may never be awarded), not what their awards run on.
	pre := newAdmission(Capacity{CPUs: 4, MemoryBytes: 4 << 30}, 4, nil, nil)
	pre.vouch("customer", time.Now())
	pre.reserve("sybil/a/1", "sybil", res, time.Minute)
	pre.claim("sybil/a/1", "sybil", res) // runs: an allocation
	for _, k := range []string{"customer/x/1", "customer/x2/1"} {
		pre.reserve(k, "customer", res, time.Minute)
		pre.claim(k, "customer", res)
	}
	pre.reserve("sybil2/b/1", "sybil2", res, time.Minute) // a bid never awarded
	if free := pre.Free(); free.CPUs != 0 {
		t.Fatalf("setup: free %+v", free)
	}
	if queued, why := pre.claim("customer/y/1", "customer", res); why != "" || queued {
		t.Fatalf("a customer's award behind a newcomer's reservation: %q queued %v", why, queued)
	}
	if _, ok := pre.held["sybil2/b/1"]; ok {
		t.Fatal("the newcomer's reservation was kept")
	}
	if _, ok := pre.held["sybil/a/1"]; !ok {
		t.Fatal("a newcomer's running award was preempted")
	}

	// The book of known customers is bounded.
	for i := range maxKnownRequestors + 10 {
		a.vouch(fmt.Sprintf("payer-%d", i), time.Now().Add(time.Duration(i)))
	}
	if len(a.known) != maxKnownRequestors {
		t.Fatalf("%d known requestors, bound %d", len(a.known), maxKnownRequestors)
	}
}
