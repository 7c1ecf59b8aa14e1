package market

import (
	"context"
	"fmt"
	"slices"
	"strings"
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

// admission is a provider's one account of what it promised and what
// runs: capacity held for bids (reservations, with a TTL) and for running
// tasks (allocations), places in the queue promised to bids (with the same
// TTL) and awards accepted to run once a slot frees, in order. Everything
// is keyed by the execution key (requestor/task/attempt), and release lets
// go of whatever a key holds in all of them, so no exit path can free one
// and forget the other. A provider never bids beyond its capacity and
// queue.
//
// A provider with a queue bids "later" instead of declining "busy", so a
// burst of tasks settles in one auction each instead of announcing again
// and again.
type admission struct {
	mu    sync.Mutex
	total Capacity
	held  map[string]hold // capacity by key
	// places are queue places promised by bids (key → expiry); order the
	// accepted awards waiting for a slot, oldest first.
	places map[string]time.Time
	order  []string
	max    int // bound of order
	// ready holds, for the queued awards whose image and inputs are in
	// place (they wait in waitTurn), what each needs: an award still
	// fetching holds a place in order but nobody waits behind it.
	ready map[string]readyAward
	// changed is closed and replaced whenever a slot may have freed.
	changed chan struct{}
	// meanRunMS estimates how long a task holds its slot (an EWMA of
	// finished runs) for the start estimates of queued bids.
	meanRunMS int64
	// onChange is ProviderConfig.OnChange (nil when unset); it is called
	// with mu held whenever free capacity may have changed.
	onChange func()
	// known holds the requestors that did business with this provider (a
	// task of theirs ran here: its content arrived and its workload
	// started; or they countersigned a receipt), with when they last did,
	// at most maxKnownRequestors. The
	// others (newcomers, and every identity a Sybil makes) share at most
	// half of the capacity, in reservations and in awards alike, and half
	// of the queue and of its promised places: a flood of bids that are
	// never awarded, or of awards whose content never arrives, cannot hold
	// what known customers need.
	known map[string]time.Time
	// gpus are the GPU devices offered, given out by assignGPUs (gpu.go).
	gpus []GPUDevice
}

// Bounds of what bids can make admission hold.
const (
	// maxKnownRequestors bounds admission.known; the oldest is forgotten.
	maxKnownRequestors = 4096
	// newcomerShare is the part of each resource that reservations of
	// requestors not yet known may hold together.
	newcomerShare = 0.5
	// maxPlacesPerRequestor bounds the queue places one requestor's bids
	// hold; maxPlaces (a multiple of the queue's length) bounds them all.
	maxPlacesPerRequestor = 16
	placesPerQueueSlot    = 4
)

// hold is capacity held under one key.
type hold struct {
	res       wire.Resources
	requestor string
	expires   time.Time // zero for an allocation
	// devices are the GPUs given to this key (gpu.go: assignGPUs).
	devices []string
}

func newAdmission(total Capacity, maxQueue int, onChange func(), gpus []GPUDevice) *admission {
	return &admission{
		gpus:  slices.Clone(gpus),
		total: total, held: map[string]hold{}, places: map[string]time.Time{}, max: maxQueue,
		changed: make(chan struct{}), meanRunMS: 1000, onChange: onChange, known: map[string]time.Time{},
		ready: map[string]readyAward{},
	}
}

// Free returns the capacity not held by reservations or tasks.
func (a *admission) Free() Capacity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.freeLocked(time.Now())
}

// freeLocked returns what is not reserved or allocated now, dropping
// expired reservations and queue places.
func (a *admission) freeLocked(now time.Time) Capacity {
	for k, exp := range a.places {
		if now.After(exp) {
			delete(a.places, k)
		}
	}
	f := a.total
	for k, h := range a.held {
		if !h.expires.IsZero() && now.After(h.expires) {
			delete(a.held, k)
			continue
		}
		f.CPUs -= h.res.CPUs
		f.MemoryBytes -= h.res.MemoryBytes
		f.GPUs -= h.res.GPUs
	}
	return f
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

// reserve holds res under key for ttl for a bid: capacity when it is free
// (startMS 0), else a queue place with an estimate of when it would start.
// It returns why it can hold neither.
func (a *admission) reserve(key, requestor string, res wire.Resources, ttl time.Duration) (startMS int64, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	free := a.freeLocked(now)
	if _, ok := a.held[key]; ok {
		return 0, "already reserved"
	}
	why = fits(free, res)
	if why == "" {
		why = a.newcomerFitsLocked(key, requestor, res)
	}
	if why == "" {
		a.held[key] = hold{res: res, requestor: requestor, expires: now.Add(ttl)}
		a.notifyLocked()
		return 0, ""
	}
	// Only accepted awards fill the queue: most bids lose, so promised
	// places only lengthen the start estimate.
	if len(a.order) >= a.max {
		return 0, why + " and the queue is full"
	}
	if len(a.places) >= placesPerQueueSlot*max(a.max, 1) {
		return 0, why + " and every queue place is promised"
	}
	mine, newcomers := 0, 0
	for k := range a.places {
		if strings.HasPrefix(k, requestor+"/") {
			mine++
		}
		if !a.knownKeyLocked(k) {
			newcomers++
		}
	}
	if _, known := a.known[requestor]; !known && newcomers >= max(placesPerQueueSlot*a.max/2, 1) {
		return 0, why + " and the queue places newcomers may hold are promised"
	}
	if mine >= maxPlacesPerRequestor {
		return 0, why + fmt.Sprintf(" and %d queue places are already promised to you", mine)
	}
	a.places[key] = now.Add(ttl)
	ahead := float64(len(a.order)) + float64(len(a.places))/2
	slots := 1.0
	if res.CPUs > 0 {
		slots = max(a.total.CPUs/res.CPUs, 1)
	}
	return int64(ahead / slots * float64(a.meanRunMS)), ""
}

// newcomerFitsLocked says why res, held under key, would take requestor
// (when it is not known) past the newcomers' share of the capacity, or ""
// when it fits. What key holds already is not counted twice.
func (a *admission) newcomerFitsLocked(key, requestor string, res wire.Resources) string {
	if _, ok := a.known[requestor]; ok {
		return ""
	}
	f := Capacity{CPUs: a.total.CPUs * newcomerShare, MemoryBytes: int64(float64(a.total.MemoryBytes) * newcomerShare),
		GPUs: int(float64(a.total.GPUs) * newcomerShare)}
	holding := false
	for k, h := range a.held {
		if _, ok := a.known[h.requestor]; ok || k == key {
			continue
		}
		holding = true
		f.CPUs -= h.res.CPUs
		f.MemoryBytes -= h.res.MemoryBytes
		f.GPUs -= h.res.GPUs
	}
	// When newcomers hold nothing, one task of any size may go ahead: a
	// task larger than the share (a whole GPU of one) must still be able to
	// run for a requestor's first time.
	if !holding {
		return ""
	}
	if why := fits(f, res); why != "" {
		return "newcomers' share " + why
	}
	return ""
}

// knownKeyLocked reports whether the execution key (requestor/task/attempt)
// is a known requestor's.
func (a *admission) knownKeyLocked(key string) bool {
	requestor, _, _ := strings.Cut(key, "/")
	_, ok := a.known[requestor]
	return ok
}

// newcomersQueuedLocked counts the queued awards of requestors not known.
func (a *admission) newcomersQueuedLocked() int {
	n := 0
	for _, k := range a.order {
		if !a.knownKeyLocked(k) {
			n++
		}
	}
	return n
}

// isKnown reports whether requestor did business with this provider
// (see vouch).
func (a *admission) isKnown(requestor string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.known[requestor]
	return ok
}

// vouch records that requestor did business here (a task of its ran, or
// its countersignature of a receipt verified): its bids may reserve all of
// the capacity from now on.
func (a *admission) vouch(requestor string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.known[requestor]; !ok && len(a.known) >= maxKnownRequestors {
		oldest, when := "", time.Time{}
		for r, t := range a.known {
			if oldest == "" || t.Before(when) {
				oldest, when = r, t
			}
		}
		delete(a.known, oldest)
	}
	if at.After(a.known[requestor]) {
		a.known[requestor] = at
	}
}

// reservedFor reports whether key holds a live reservation or queue place
// made for requestor (the execution key names the requestor, so a queue
// place is always its own).
func (a *admission) reservedFor(key, requestor string) (ok bool, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	a.freeLocked(now)
	if h, held := a.held[key]; held {
		if h.requestor != requestor {
			return false, "not your reservation"
		}
		return true, ""
	}
	if _, placed := a.places[key]; placed {
		return true, ""
	}
	return false, ReasonNoReservation
}

// claim turns key's reservation into an allocation of res (what the award
// asks). When the capacity is not free now it takes a place at the end of
// the queue (queued true) and the task waits for its turn (waitTurn).
func (a *admission) claim(key, requestor string, res wire.Resources) (queued bool, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h, ok := a.held[key]; ok && h.requestor != requestor {
		return false, "reservation belongs to another requestor"
	}
	if why := a.allocateLocked(key, requestor, res); why == "" {
		delete(a.places, key)
		return false, ""
	} else if len(a.order) >= a.max {
		return false, why + " and the queue is full"
	} else if _, known := a.known[requestor]; !known && a.newcomersQueuedLocked() >= max(a.max/2, 1) {
		return false, why + " and the queue places newcomers may hold are taken"
	}
	delete(a.places, key)
	if h, ok := a.held[key]; ok && !h.expires.IsZero() {
		delete(a.held, key) // the reservation is not needed while queued
		a.notifyLocked()
	}
	a.order = append(a.order, key)
	return true, ""
}

// allocateLocked allocates res under key, giving back key's reservation
// first; it returns why it cannot.
func (a *admission) allocateLocked(key, requestor string, res wire.Resources) string {
	free := a.freeLocked(time.Now())
	if h, ok := a.held[key]; ok {
		if h.requestor != requestor {
			return "reservation belongs to another requestor"
		}
		free.CPUs += h.res.CPUs
		free.MemoryBytes += h.res.MemoryBytes
		free.GPUs += h.res.GPUs
	}
	if why := fits(free, res); why != "" {
		if _, known := a.known[requestor]; !known || !a.preemptLocked(requestor, free, res) {
			return why
		}
	}
	if why := a.newcomerFitsLocked(key, requestor, res); why != "" {
		return why
	}
	// The devices a reservation was given stay with the allocation.
	a.held[key] = hold{res: res, requestor: requestor, devices: a.held[key].devices}
	a.notifyLocked()
	return ""
}

// preemptLocked makes room for requestor's award of res, beyond free, by
// turning into queue places the reservations (promises made to bids that may never be
// awarded, never what awarded work holds): first those of newcomers, then
// requestor's own (its award here and now goes before a bid of its own
// that it may award elsewhere). A known customer's award is real work. It
// preempts only when that makes res fit, and reports whether it did.
func (a *admission) preemptLocked(requestor string, free Capacity, res wire.Resources) bool {
	var victims []string
	for _, own := range []bool{false, true} {
		for k, h := range a.held {
			if fits(free, res) == "" {
				break
			}
			if h.expires.IsZero() || slices.Contains(victims, k) {
				continue // an allocation: work that was awarded
			}
			if _, known := a.known[h.requestor]; known && !(own && h.requestor == requestor) {
				continue
			}
			victims = append(victims, k)
			free.CPUs += h.res.CPUs
			free.MemoryBytes += h.res.MemoryBytes
			free.GPUs += h.res.GPUs
		}
	}
	if fits(free, res) != "" {
		return false
	}
	// A preempted bid keeps its promise as a queue place: its award, if
	// it comes, is honoured and waits for a slot.
	for _, k := range victims {
		a.places[k] = a.held[k].expires
		delete(a.held, k)
	}
	return true
}

// readyAward is a queued award waiting for its turn.
type readyAward struct {
	requestor string
	res       wire.Resources
	gpu       *wire.GPURequirements
}

// waitTurn blocks until it is key's turn and res fits (GPUs meeting gpu
// among them), then allocates it;
// or until ctx ends (key keeps nothing then: the caller's release cleans
// up). The turn goes, in queue order, to the first award that is ready
// (its preparation is done: it waits here), passing over those that only
// the newcomers' share holds back: neither an award still fetching (a
// Sybil's whose content never arrives) nor a newcomer over its share
// holds up the awards behind it.
func (a *admission) waitTurn(ctx context.Context, key, requestor string, res wire.Resources, gpu *wire.GPURequirements) error {
	a.mu.Lock()
	a.ready[key] = readyAward{requestor: requestor, res: res, gpu: gpu}
	a.mu.Unlock()
	for {
		a.mu.Lock()
		if a.turnLocked() == key && a.allocateLocked(key, requestor, res) == "" {
			a.dequeueLocked(key)
			a.signalLocked()
			a.mu.Unlock()
			return nil
		}
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-changed:
		case <-time.After(time.Second): // a reservation expired: no one signals that
		}
	}
}

// String says what admission holds, for logs that explain a wait: free
// capacity, holds by kind (reservations and allocations, of known
// customers and of newcomers) and the queue.
func (a *admission) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	free := a.freeLocked(time.Now())
	var resK, resN, allocK, allocN float64
	for _, h := range a.held {
		_, known := a.known[h.requestor]
		switch {
		case h.expires.IsZero() && known:
			allocK += h.res.CPUs
		case h.expires.IsZero():
			allocN += h.res.CPUs
		case known:
			resK += h.res.CPUs
		default:
			resN += h.res.CPUs
		}
	}
	return fmt.Sprintf("free %.2f cpus; cpus held by customers: %.2f running, %.2f reserved; by newcomers: %.2f running, %.2f reserved; queue %d (%d ready, %d newcomers), %d places promised",
		free.CPUs, allocK, resK, allocN, resN, len(a.order), len(a.ready), a.newcomersQueuedLocked(), len(a.places))
}

// turnLocked returns the queued award whose turn it is ("" for none).
func (a *admission) turnLocked() string {
	free := a.freeLocked(time.Now())
	for _, k := range a.order {
		r, ok := a.ready[k]
		if !ok {
			continue // still fetching its image and inputs
		}
		if fits(free, r.res) == "" && a.newcomerFitsLocked(k, r.requestor, r.res) != "" {
			continue // only the newcomers' share holds it back
		}
		if !a.gpusFreeLocked(k, r.res.GPUs, r.gpu) {
			continue // the GPUs that meet it run other tasks (gpu.go)
		}
		return k
	}
	return ""
}

// dequeueLocked removes key from the queue.
func (a *admission) dequeueLocked(key string) {
	delete(a.ready, key)
	for i, k := range a.order {
		if k == key {
			a.order = append(a.order[:i], a.order[i+1:]...)
			return
		}
	}
}

// release lets go of everything key holds: capacity, a queue place, a
// place in the queue's order. It is the one exit of every bid, award and
// run, and is safe to call more than once.
func (a *admission) release(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.releaseLocked(key)
}

func (a *admission) releaseLocked(key string) {
	delete(a.held, key)
	delete(a.places, key)
	a.dequeueLocked(key)
	a.signalLocked()
	a.notifyLocked()
}

// releaseReservation lets go of what key holds when it is requestor's and
// not yet running (a bid that lost); it reports whether there was any. The
// check and the release are one step, so an award claimed in between is
// never released by it.
func (a *admission) releaseReservation(key, requestor string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	h, held := a.held[key]
	_, placed := a.places[key]
	if (held && (h.requestor != requestor || h.expires.IsZero())) || (!held && !placed) {
		return false
	}
	a.releaseLocked(key)
	return true
}

// ran records how long a run held its slot, for start estimates.
func (a *admission) ran(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.meanRunMS = (a.meanRunMS*7 + d.Milliseconds()) / 8
}

func (a *admission) signalLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *admission) notifyLocked() {
	if a.onChange != nil {
		a.onChange()
	}
}
