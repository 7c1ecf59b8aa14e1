package market

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/offload-project/offload/market/wire"
)

// This file defines the market's state machines, once each. Every write of
// a state goes through the Transition of its machine, which consults the
// machine's table of allowed moves; a table test walks every allowed and
// every forbidden move.
//
// The requestor's task (State):
//
//	           ┌──────────── group parent: its children do the work ─────────────┐
//	           │                                                                  ▼
//	pending ─► bidding ─► awarded ─► running ─► verifying ─► completed
//	              ▲  ▲ │      │  │      │  │        │
//	              │  └─┘      │  │      │  │        └─────► failed | canceled
//	              │ next      │  │      │  └──────────────► completed (no outputs)
//	              │ attempt   │  └──────┼─────────────────► verifying | completed
//	              └───────────┴─────────┘                   (the result came before
//	               declined, provider lost,                  the running report)
//	               retryable failure
//
// Any state that is not terminal may also move to failed or canceled.
// verifying is a task whose result is recorded and whose outputs are being
// fetched (and, for redundant work, compared) before it completes. A result
// of an earlier attempt (declined, failed over, superseded) never settles a
// task (authorizeReport): bidding moves only to a new award.
//
// Each provider's attempt at a task, as the requestor records it
// (AttemptState): awarded → running → completed | failed, or awarded →
// declined when the provider answered no (it ran nothing).
//
// The provider's execution (ExecState):
//
//	accepted ─► running ─► done ─► delivered
//	    │                   ▲  └─► abandoned
//	    └───────────────────┘
//
// done means the result is in the outbox; delivered that the requestor
// acknowledged it; abandoned that the requestor refused it or the outbox
// gave up on it (OutboxTTL). An execution that fails before it runs (its
// image or inputs could not be fetched, the provider restarted) goes from
// accepted straight to done with a failed result.

// State is a task's state on the requestor. Values are strings because they
// are stored and shown to users.
type State string

// Task states; see the diagram above.
const (
	StatePending   State = "pending"
	StateBidding   State = "bidding"
	StateAwarded   State = "awarded"
	StateRunning   State = "running"
	StateVerifying State = "verifying"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
)

// States lists every task state in the machine's order.
var States = []State{StatePending, StateBidding, StateAwarded, StateRunning, StateVerifying,
	StateCompleted, StateFailed, StateCanceled}

// taskMoves is the requestor's task machine: the states each state may move
// to. Terminal states have none.
var taskMoves = map[State][]State{
	StatePending:   {StateBidding, StateRunning, StateFailed, StateCanceled},
	StateBidding:   {StateBidding, StateAwarded, StateFailed, StateCanceled},
	StateAwarded:   {StateBidding, StateRunning, StateVerifying, StateCompleted, StateFailed, StateCanceled},
	StateRunning:   {StateBidding, StateVerifying, StateCompleted, StateFailed, StateCanceled},
	StateVerifying: {StateCompleted, StateFailed, StateCanceled},
}

// IsTerminal reports whether no further transition can happen.
func (s State) IsTerminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateCanceled
}

// CanMove reports whether the task machine allows a move from s to to.
func (s State) CanMove(to State) bool { return slices.Contains(taskMoves[s], to) }

// ErrInvalidTransition is returned when a move is not in its machine's
// table, or when the state is not one the caller expected.
var ErrInvalidTransition = errors.New("invalid state transition")

// Transition moves t to the state to, when the machine allows it from t's
// current state and, if from is given, t is in one of from (the states the
// caller expects it in: a write carries what it assumed). to == "" changes
// no state but still refuses a terminal task and checks from. It bumps the
// revision and the update time.
func (t *Task) Transition(to State, from ...State) error {
	if t.State.IsTerminal() {
		return fmt.Errorf("%w: task %s is already %s", ErrInvalidTransition, t.ID, t.State)
	}
	if len(from) > 0 && !slices.Contains(from, t.State) {
		return fmt.Errorf("%w: task %s is %s, not %v", ErrInvalidTransition, t.ID, t.State, from)
	}
	if to != "" {
		if !t.State.CanMove(to) {
			return fmt.Errorf("%w: task %s cannot move from %s to %s", ErrInvalidTransition, t.ID, t.State, to)
		}
		t.State = to
	}
	t.Revision++
	t.UpdatedAt = time.Now().UTC()
	return nil
}

// move returns a store mutation that moves the task to to (see
// Task.Transition: the machine must allow it, and when from is not nil the
// task must be in one of from) and applies fn, which runs only when the move
// is allowed.
func move(to State, from []State, fn func(*Task)) func(*Task) error {
	return func(t *Task) error {
		if err := t.Transition(to, from...); err != nil {
			return err
		}
		if fn != nil {
			fn(t)
		}
		return nil
	}
}

// edit returns a store mutation that applies fn to a task that is not
// terminal (and, when from is not nil, is in one of from) without moving it.
func edit(from []State, fn func(*Task)) func(*Task) error { return move("", from, fn) }

// AttemptState is the state of one provider's attempt at a task, as the
// requestor records it in Task.Executions.
type AttemptState string

// Attempt states: awarded → running → completed | failed; awarded →
// declined (the provider answered no and ran nothing).
const (
	AttemptAwarded   AttemptState = "awarded"
	AttemptDeclined  AttemptState = "declined"
	AttemptRunning   AttemptState = "running"
	AttemptCompleted AttemptState = "completed"
	AttemptFailed    AttemptState = "failed"
)

// attemptMoves is the attempt machine's table.
var attemptMoves = map[AttemptState][]AttemptState{
	AttemptAwarded: {AttemptDeclined, AttemptRunning, AttemptCompleted, AttemptFailed},
	AttemptRunning: {AttemptCompleted, AttemptFailed},
}

// CanMove reports whether the attempt machine allows a move from s to to.
func (s AttemptState) CanMove(to AttemptState) bool { return slices.Contains(attemptMoves[s], to) }

// IsFinished reports whether the attempt ended (it ran or was declined).
func (s AttemptState) IsFinished() bool { return len(attemptMoves[s]) == 0 }

// Transition moves the attempt to to when the machine allows it, stamping
// FinishedAt when it ends; a move it does not allow leaves e unchanged and
// reports false.
func (e *Execution) Transition(to AttemptState) bool {
	if !e.State.CanMove(to) {
		return false
	}
	e.State = to
	if to.IsFinished() {
		e.FinishedAt = time.Now().UTC()
	}
	return true
}

// attemptStateOf maps a report's state to the attempt state it means.
func attemptStateOf(reported string) (AttemptState, bool) {
	switch reported {
	case wire.ExecRunning:
		return AttemptRunning, true
	case wire.ExecCompleted:
		return AttemptCompleted, true
	case wire.ExecFailed:
		return AttemptFailed, true
	}
	return "", false
}

// ExecState is the provider's state of one execution.
type ExecState string

// Execution states on the provider; see the diagram above.
const (
	ExecAccepted  ExecState = "accepted"
	ExecRunning   ExecState = "running"
	ExecDone      ExecState = "done"      // result in the outbox
	ExecDelivered ExecState = "delivered" // the requestor acknowledged it
	ExecAbandoned ExecState = "abandoned" // refused by the requestor or given up
)

// ExecStates lists every execution state in the machine's order.
var ExecStates = []ExecState{ExecAccepted, ExecRunning, ExecDone, ExecDelivered, ExecAbandoned}

// execMoves is the provider's execution machine.
var execMoves = map[ExecState][]ExecState{
	ExecAccepted: {ExecRunning, ExecDone},
	ExecRunning:  {ExecDone},
	ExecDone:     {ExecDelivered, ExecAbandoned},
}

// CanMove reports whether the execution machine allows a move from s to to.
func (s ExecState) CanMove(to ExecState) bool { return slices.Contains(execMoves[s], to) }

// IsFinal reports whether the execution's outbox entry is settled.
func (s ExecState) IsFinal() bool { return s == ExecDelivered || s == ExecAbandoned }

// Transition moves the record to to when the machine allows it, stamping
// UpdatedAt.
func (r *ExecRecord) Transition(to ExecState) error {
	if !r.State.CanMove(to) {
		return fmt.Errorf("%w: execution %s cannot move from %s to %s", ErrInvalidTransition, r.Key, r.State, to)
	}
	r.State, r.UpdatedAt = to, time.Now().UTC()
	return nil
}
