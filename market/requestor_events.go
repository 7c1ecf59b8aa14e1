package market

import (
	"fmt"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/storage"
)

// Handlers and timers do not write a task's state themselves: each turns
// what it saw (a report from the provider, a silent provider, a result
// deadline) into an event, and apply makes the move that event means,
// through step, inside the store's transaction. The driver waiting on the
// task sees the move through Watch and takes the next step of drive.

// eventKind names what happened to a task's current award.
type eventKind int

const (
	// evRunning: the provider started the workload (its image and inputs
	// are in place).
	evRunning eventKind = iota + 1
	// evResult: the provider delivered a result (completed or failed).
	evResult
	// evLost: the provider went silent or missed the result deadline.
	evLost
)

// event is one thing that happened to provider's attempt at a task.
type event struct {
	kind     eventKind
	provider string
	attempt  int
	// reported and result: an evResult's report state and result; receipt
	// its verified receipt.
	reported string
	result   *wire.Result
	receipt  *wire.Receipt
	// settled, when set, is called inside the transaction once an
	// evResult changed the task.
	settled func()
	// also are entries of another table (an evResult's spent receipt in
	// the ledger) written in the task's transaction, only if ev changes
	// the task; see Requestor.updateAlso.
	also []storage.Entry
	// why: an evLost's reason.
	why string
}

// apply persists what ev means for task id and notifies its watchers. It
// reports whether the task went back to bidding after a failure (a
// failover), and an error wrapping ErrInvalidTransition when ev no longer
// applies (the task moved on).
func (r *Requestor) apply(id string, ev event) (failover bool, err error) {
	_, err = r.updateAlso(id, func(t *Task) error {
		var serr error
		failover, serr = step(t, ev, r.cfg.Content != nil)
		if serr == nil && ev.settled != nil {
			ev.settled()
		}
		return serr
	}, ev.also)
	if ev.kind != evRunning {
		observeFailover(r.cfg.Observer, err == nil && failover)
	}
	return failover, err
}

// step is the one function that decides what an event does to a task; it
// runs inside the store's transaction on the task as it stands. fetches
// says whether outputs are fetched before a task completes (a content
// store is configured).
func step(t *Task, ev event, fetches bool) (failover bool, err error) {
	switch ev.kind {
	case evRunning, evResult:
		rep := &wire.Report{TaskID: t.ID, Attempt: ev.attempt, State: wire.ExecRunning}
		if ev.kind == evResult {
			rep.State, rep.Result = ev.reported, ev.result
		}
		if refusal := authorizeReport(t, ev.provider, rep, ev.receipt); refusal != nil {
			return false, &refusedError{ack: *refusal}
		}
		if ev.kind == evResult {
			return settle(t, ev.provider, ev.attempt, ev.reported, ev.result, fetches)
		}
		if err := t.Transition(StateRunning, StateAwarded); err != nil {
			return false, err
		}
		if e := t.execution(ev.provider, ev.attempt); e != nil {
			e.Transition(AttemptRunning)
		}
		t.Reason = "running on " + short(ev.provider)
		return false, nil
	case evLost:
		if t.Provider != ev.provider || t.Attempt != ev.attempt {
			return false, fmt.Errorf("%w: task %s moved on from %s's attempt %d", ErrInvalidTransition, t.ID, short(ev.provider), ev.attempt)
		}
		if err := t.Transition(StateBidding, StateAwarded, StateRunning); err != nil {
			return false, err
		}
		if e := t.execution(ev.provider, ev.attempt); e != nil {
			e.Transition(AttemptFailed)
		}
		t.Provider = ""
		t.Reason = ev.why
		return true, nil
	}
	return false, fmt.Errorf("unknown event %d", ev.kind)
}

// settle applies a result (a report of state completed or failed) from
// provider's attempt to t, inside the store's transaction, and reports
// whether the task goes back to bidding to be retried elsewhere. The
// result is authorized (authorizeReport: the task's current attempt, not
// stale, a receipt within the bid) before settle is called. It is the one
// place that decides what a result does to a task:
//
//   - completed with exit 0 and outputs or volumes to fetch → verifying;
//   - completed with exit 0 and nothing to fetch → completed;
//   - failed and retryable, within the retry budget → bidding;
//   - otherwise → failed, with the result's error or exit code as the reason.
func settle(t *Task, provider string, attempt int, reported string, res *wire.Result, fetches bool) (retried bool, err error) {
	e := t.execution(provider, attempt)
	if e != nil {
		if to, ok := attemptStateOf(reported); ok {
			e.Transition(to)
		}
		e.Result = res
	}
	ok := reported == wire.ExecCompleted && res.ExitCode == 0
	retry := reported == wire.ExecFailed && res.Retryable && failures(t) <= t.Spec.RetryBudget()
	switch {
	case ok && fetches && (res.Outputs != "" || len(res.Volumes) > 0):
		// Record the result now (the provider may clear its outbox), then
		// fetch the outputs before completing.
		t.Provider, t.Result = provider, res
		t.Reason = "fetching outputs " + res.Outputs + " from " + short(provider)
		return false, t.Transition(StateVerifying)
	case ok:
		t.Provider, t.Result = provider, res
		t.Reason = ""
		return false, t.Transition(StateCompleted)
	case retry:
		t.Provider = ""
		t.Reason = fmt.Sprintf("%s failed (%s); trying another provider", short(provider), res.Error)
		return true, t.Transition(StateBidding)
	default:
		t.Provider, t.Result = provider, res
		if res.Error != "" {
			t.Reason = res.Error
		} else {
			t.Reason = fmt.Sprintf("exit code %d", res.ExitCode)
		}
		return false, t.Transition(StateFailed)
	}
}
