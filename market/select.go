package market

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
)

// Selection strategies a task may ask for.
const (
	// StrategyCheapest picks the lowest unit price (default).
	StrategyCheapest = "cheapest"
	// StrategyFastest picks the earliest estimated start, preferring
	// providers that already hold the image.
	StrategyFastest = "fastest"
	// StrategyReputation picks the lowest price per successful execution:
	// the unit price divided by the provider's success rate.
	StrategyReputation = "reputation"
)

// imageFetchPenaltyMS is what "fastest" adds to a bid whose provider lacks
// the image, standing for its transfer.
const imageFetchPenaltyMS = 2000

// inputFetchPenaltyMS stands for fetching all of a task's inputs.
const inputFetchPenaltyMS = 1000

// Reputation is what a requestor learned of one provider from the tasks it
// gave it.
type Reputation struct {
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// MeanDeliveryMS is the mean time from award to result.
	MeanDeliveryMS int64 `json:"mean_delivery_ms"`
}

// SuccessRate is the share of executions that completed, smoothed so a
// newcomer starts at 0.5 rather than at 0 or 1.
func (r Reputation) SuccessRate() float64 {
	return float64(r.Completed+1) / float64(r.Completed+r.Failed+2)
}

// rankBids orders the acceptable bids (those without an Outcome yet), best
// first, by strategy, and says why the first one wins. rep holds the
// bidders' reputations; only StrategyReputation reads it (nil otherwise).
func rankBids(bids []BidRecord, strategy string, rep map[string]Reputation) ([]int, string) {
	order := make([]int, 0, len(bids))
	for i, b := range bids {
		if b.Outcome == "" && b.Decline == "" {
			order = append(order, i)
		}
	}
	byPrice := func(a, b BidRecord) int { return cmp.Compare(a.Price, b.Price) }
	byStart := func(a, b BidRecord) int { return cmp.Compare(startMS(a), startMS(b)) }
	byScore := func(a, b BidRecord) int {
		return cmp.Compare(a.Price/rep[a.Provider].SuccessRate(), b.Price/rep[b.Provider].SuccessRate())
	}
	var keys []func(a, b BidRecord) int
	why := "lowest price"
	switch strategy {
	case StrategyFastest:
		keys = []func(a, b BidRecord) int{byStart, byPrice}
		why = "earliest start"
	case StrategyReputation:
		keys = []func(a, b BidRecord) int{byScore, byStart}
		why = "best price per successful execution"
	default:
		keys = []func(a, b BidRecord) int{byPrice, byStart}
	}
	slices.SortStableFunc(order, func(i, j int) int {
		for _, k := range keys {
			if c := k(bids[i], bids[j]); c != 0 {
				return c
			}
		}
		return cmp.Compare(bids[i].Provider, bids[j].Provider) // deterministic
	})
	if len(order) > 0 {
		w := bids[order[0]]
		switch strategy {
		case StrategyFastest:
			why = fmt.Sprintf("%s (%dms, image local: %v)", why, startMS(w), w.HasImage)
		case StrategyReputation:
			r := rep[w.Provider]
			why = fmt.Sprintf("%s (price %g, success rate %.2f over %d runs)", why, w.Price, r.SuccessRate(), r.Completed+r.Failed)
		default:
			why = fmt.Sprintf("%s (%g)", why, w.Price)
		}
	}
	return order, why
}

// startMS estimates when a bid's provider would really start: its own
// estimate plus a transfer penalty for the image and the inputs it lacks.
func startMS(b BidRecord) int64 {
	ms := b.StartMS + int64((1-b.InputsLocal)*inputFetchPenaltyMS)
	if !b.HasImage {
		ms += imageFetchPenaltyMS
	}
	return ms
}

// repBook keeps providers' reputations in memory; it is rebuilt from the
// stored tasks at start and updated as executions end.
type repBook struct {
	mu sync.Mutex
	m  map[string]Reputation
}

func newRepBook(tasks []*Task) *repBook {
	b := &repBook{m: map[string]Reputation{}}
	for _, t := range tasks {
		for _, e := range t.Executions {
			b.recordLocked(e)
		}
	}
	return b
}

// record counts one finished execution.
func (b *repBook) record(e Execution) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recordLocked(e)
}

func (b *repBook) recordLocked(e Execution) {
	r := b.m[e.Provider]
	switch e.State {
	case AttemptCompleted:
		if e.Result != nil && e.Result.ExitCode != 0 {
			// The provider delivered; the task itself failed. Neutral.
			return
		}
		d := e.FinishedAt.Sub(e.AwardedAt).Milliseconds()
		r.MeanDeliveryMS = (r.MeanDeliveryMS*int64(r.Completed) + d) / int64(r.Completed+1)
		r.Completed++
	case AttemptFailed:
		r.Failed++
	default:
		return
	}
	b.m[e.Provider] = r
}

// of returns the reputations of the given providers only: what ranking
// one auction's bids needs, whatever the size of the book.
func (b *repBook) of(providers ...string) map[string]Reputation {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]Reputation, len(providers))
	for _, p := range providers {
		if r, ok := b.m[p]; ok {
			out[p] = r
		}
	}
	return out
}

// snapshot copies the book.
func (b *repBook) snapshot() map[string]Reputation {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]Reputation, len(b.m))
	for k, v := range b.m {
		out[k] = v
	}
	return out
}
