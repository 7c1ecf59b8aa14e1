package market

import (
	"context"
	"sync"
	"time"

	"github.com/offload-project/offload/market/wire"
)

// taskQueue holds awards a busy provider accepted to run as soon as a slot
// frees, in the order they were accepted, and queue places promised by
// bids (with a TTL, like capacity reservations). A provider with a queue
// bids "later" instead of declining "busy", so a burst of tasks settles in
// one auction each instead of announcing again and again.
type taskQueue struct {
	mu    sync.Mutex
	max   int
	order []string             // accepted awards, oldest first
	holds map[string]time.Time // queue places promised by bids
	// changed is closed and replaced whenever a slot may have freed.
	changed chan struct{}
	// meanRunMS estimates how long a task holds its slot (an EWMA of
	// finished runs) for the start estimates of queued bids.
	meanRunMS int64
}

func newTaskQueue(max int) *taskQueue {
	return &taskQueue{max: max, holds: map[string]time.Time{}, changed: make(chan struct{}), meanRunMS: 1000}
}

// expireLocked drops queue places whose bids were never awarded.
func (q *taskQueue) expireLocked(now time.Time) {
	for k, exp := range q.holds {
		if now.After(exp) {
			delete(q.holds, k)
		}
	}
}

// hold promises a queue place to a bid and estimates when it would start;
// ok is false when the queue is full.
func (q *taskQueue) hold(key string, ttl time.Duration, slots float64) (startMS int64, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expireLocked(time.Now())
	// Only accepted awards fill the queue: most bids lose, so promised
	// places only lengthen the start estimate.
	if len(q.order) >= q.max {
		return 0, false
	}
	q.holds[key] = time.Now().Add(ttl)
	ahead := float64(len(q.order)) + float64(len(q.holds))/2
	if slots < 1 {
		slots = 1
	}
	return int64(ahead / slots * float64(q.meanRunMS)), true
}

// enqueue turns a held (or, with room, a new) place into an accepted award.
// holding reports whether key holds a live place promised by a bid.
func (q *taskQueue) holding(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expireLocked(time.Now())
	_, ok := q.holds[key]
	return ok
}

func (q *taskQueue) enqueue(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expireLocked(time.Now())
	delete(q.holds, key)
	if len(q.order) >= q.max {
		return false
	}
	q.order = append(q.order, key)
	return true
}

// release forgets a bid's queue place (its bid lost).
func (q *taskQueue) release(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.holds, key)
}

// remove takes an award off the queue (it started, or was canceled).
func (q *taskQueue) remove(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, k := range q.order {
		if k == key {
			q.order = append(q.order[:i], q.order[i+1:]...)
			break
		}
	}
	q.signalLocked()
}

// slotFreed wakes queued awards to try for capacity.
func (q *taskQueue) slotFreed() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.signalLocked()
}

func (q *taskQueue) signalLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// ran records how long a run held its slot.
func (q *taskQueue) ran(d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.meanRunMS = (q.meanRunMS*7 + d.Milliseconds()) / 8
}

// waitTurn blocks until key is first in the queue and claim succeeds, or
// ctx ends. claim allocates the capacity.
func (q *taskQueue) waitTurn(ctx context.Context, key string, claim func() bool) error {
	for {
		q.mu.Lock()
		first := len(q.order) > 0 && q.order[0] == key
		changed := q.changed
		q.mu.Unlock()
		if first && claim() {
			q.remove(key)
			return nil
		}
		select {
		case <-ctx.Done():
			q.remove(key)
			return context.Cause(ctx)
		case <-changed:
		case <-time.After(time.Second): // a release we were not told of (expired reservation)
		}
	}
}

// queueSlots is how many tasks of res run at once on capacity c.
func queueSlots(c Capacity, res wire.Resources) float64 {
	if res.CPUs <= 0 {
		return 1
	}
	return c.CPUs / res.CPUs
}
