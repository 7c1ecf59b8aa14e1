package market

import (
	"fmt"
	"sync"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market/wire"
)

// Capacity is what a provider offers in all.
type Capacity struct {
	CPUs        float64 `json:"cpus"`
	MemoryBytes int64   `json:"memory_bytes"`
	GPUs        int     `json:"gpus"`
}

// normalize fills a task's zero resource requests with the executor
// defaults, so that accounting matches what the sandbox enforces.
func normalize(r wire.Resources) wire.Resources {
	if r.CPUs == 0 {
		r.CPUs = executor.DefaultCPUs
	}
	if r.MemoryBytes == 0 {
		r.MemoryBytes = executor.DefaultMemoryBytes
	}
	return r
}

// ledger tracks a provider's reservations (held for a bid, with a TTL) and
// allocations (held by a running task). A provider never bids beyond what
// is free.
type ledger struct {
	mu    sync.Mutex
	total Capacity
	held  map[string]hold
	// onChange is ProviderConfig.OnChange (nil when unset).
	onChange func()
}

// notify signals a change of free capacity. Caller holds mu.
func (l *ledger) notify() {
	if l.onChange != nil {
		l.onChange()
	}
}

type hold struct {
	res       wire.Resources
	requestor string
	expires   time.Time // zero for an allocation
}

func newLedger(total Capacity) *ledger {
	return &ledger{total: total, held: map[string]hold{}}
}

// free returns what is not reserved or allocated now. Caller holds mu.
func (l *ledger) freeLocked(now time.Time) Capacity {
	f := l.total
	for k, h := range l.held {
		if !h.expires.IsZero() && now.After(h.expires) {
			delete(l.held, k)
			continue
		}
		f.CPUs -= h.res.CPUs
		f.MemoryBytes -= h.res.MemoryBytes
		f.GPUs -= h.res.GPUs
	}
	return f
}

// Free returns the capacity not held by reservations or tasks.
func (l *ledger) Free() Capacity {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.freeLocked(time.Now())
}

// fits says why res does not fit in what is free, or "" when it fits.
func fits(free Capacity, res wire.Resources) string {
	switch {
	case res.CPUs > free.CPUs+1e-9:
		return fmt.Sprintf("busy: %.2f cpus free, %.2f asked", free.CPUs, res.CPUs)
	case res.MemoryBytes > free.MemoryBytes:
		return fmt.Sprintf("busy: %d MiB memory free, %d MiB asked", free.MemoryBytes>>20, res.MemoryBytes>>20)
	case res.GPUs > free.GPUs:
		return fmt.Sprintf("busy: %d gpus free, %d asked", free.GPUs, res.GPUs)
	}
	return ""
}

// reserve holds res under key for ttl, or says why it cannot.
func (l *ledger) reserve(key, requestor string, res wire.Resources, ttl time.Duration) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if _, ok := l.held[key]; ok {
		return "already reserved"
	}
	if why := fits(l.freeLocked(now), res); why != "" {
		return why
	}
	l.held[key] = hold{res: res, requestor: requestor, expires: now.Add(ttl)}
	l.notify()
	return ""
}

// claim turns the reservation under key into an allocation. Without a live
// reservation it allocates afresh if the resources are still free. It
// returns why it cannot.
func (l *ledger) claim(key, requestor string, res wire.Resources) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	free := l.freeLocked(now)
	if h, ok := l.held[key]; ok {
		if h.requestor != requestor {
			return "reservation belongs to another requestor"
		}
		// Give back the reservation, then allocate what the award asks.
		free.CPUs += h.res.CPUs
		free.MemoryBytes += h.res.MemoryBytes
		free.GPUs += h.res.GPUs
	}
	if why := fits(free, res); why != "" {
		return "reservation expired and " + why
	}
	l.held[key] = hold{res: res, requestor: requestor}
	l.notify()
	return ""
}

// release frees whatever key holds.
func (l *ledger) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.held, key)
	l.notify()
}

// owner returns the requestor holding key, if any.
func (l *ledger) owner(key string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[key]
	if ok && !h.expires.IsZero() && time.Now().After(h.expires) {
		return "", false
	}
	return h.requestor, ok
}
