package market

import "time"

// Observer receives the market's countable events, for metrics. Both roles
// call it synchronously from their protocol goroutines, so every method
// must be cheap, must not block and must be safe for concurrent use (a
// Prometheus counter increment is the intended body). The market never
// reads anything back from it.
//
// Set RequestorConfig.Observer and ProviderConfig.Observer; nil means
// NopObserver.
type Observer interface {
	// BidReceived is called by a requestor for every bid or decline
	// accepted into an open auction.
	BidReceived()
	// Awarded is called by a requestor when a provider accepted an award.
	Awarded()
	// Failover is called by a requestor when a task leaves the provider
	// holding it for another attempt: the provider went silent, no result
	// came within the deadline, or it reported a retryable failure.
	Failover()
	// TaskEnded is called by a requestor once per task, when the task
	// reaches a terminal state (completed, failed or canceled).
	TaskEnded(state State)
	// ExecutionFinished is called by a provider when an executor's Run
	// returned a result: runtime is the executor's name, d the run's wall
	// time (image and input fetches excluded), ok whether it exited 0.
	ExecutionFinished(runtime string, d time.Duration, ok bool)
}

// NopObserver ignores every event. Embed it to implement only some
// methods of Observer.
type NopObserver struct{}

var _ Observer = NopObserver{}

// BidReceived does nothing.
func (NopObserver) BidReceived() {}

// Awarded does nothing.
func (NopObserver) Awarded() {}

// Failover does nothing.
func (NopObserver) Failover() {}

// TaskEnded does nothing.
func (NopObserver) TaskEnded(State) {}

// ExecutionFinished does nothing.
func (NopObserver) ExecutionFinished(string, time.Duration, bool) {}

// observe returns o, or NopObserver when o is nil, so that call sites stay
// one line: observe(r.cfg.Observer).Awarded().
func observe(o Observer) Observer {
	if o == nil {
		return NopObserver{}
	}
	return o
}

// observeUpdate reports a task that an update just moved into a terminal
// state. A terminal task refuses every later transition, so this fires
// once per task.
func observeUpdate(o Observer, t *Task) {
	if o != nil && t.State.IsTerminal() {
		o.TaskEnded(t.State)
	}
}

// observeFailover reports a failover when happened is true (the update that
// moved the task to another attempt succeeded).
func observeFailover(o Observer, happened bool) {
	if o != nil && happened {
		o.Failover()
	}
}
