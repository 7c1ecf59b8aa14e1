package market

import (
	"errors"
	"slices"
	"testing"

	"github.com/offload-project/offload/market/wire"
)

// TestTaskMachine walks every pair of task states: the allowed moves (the
// table in state.go, written out again here so that a change to either is
// seen) succeed, every other move fails with ErrInvalidTransition and
// leaves the task as it was.
func TestTaskMachine(t *testing.T) {
	allowed := map[[2]State]bool{}
	for from, tos := range map[State][]State{
		StatePending:   {StateBidding, StateRunning, StateFailed, StateCanceled},
		StateBidding:   {StateBidding, StateAwarded, StateFailed, StateCanceled},
		StateAwarded:   {StateBidding, StateRunning, StateVerifying, StateCompleted, StateFailed, StateCanceled},
		StateRunning:   {StateBidding, StateVerifying, StateCompleted, StateFailed, StateCanceled},
		StateVerifying: {StateCompleted, StateFailed, StateCanceled},
	} {
		for _, to := range tos {
			allowed[[2]State{from, to}] = true
		}
	}
	n := 0
	for _, from := range States {
		for _, to := range States {
			task := &Task{ID: "t", State: from, Revision: 3}
			err := task.Transition(to)
			if allowed[[2]State{from, to}] {
				n++
				if err != nil || task.State != to || task.Revision != 4 {
					t.Errorf("%s → %s: %v (state %s, revision %d)", from, to, err, task.State, task.Revision)
				}
				continue
			}
			if !errors.Is(err, ErrInvalidTransition) || task.State != from || task.Revision != 3 {
				t.Errorf("%s → %s was allowed (err %v, state %s)", from, to, err, task.State)
			}
		}
	}
	if n != len(allowed) {
		t.Fatalf("walked %d allowed moves, the table has %d", n, len(allowed))
	}
	// The moves no diagram used to show are the ones the issue found.
	for _, bad := range [][2]State{{StatePending, StateCompleted}, {StatePending, StateAwarded}, {StateVerifying, StateBidding}, {StateCompleted, StateFailed}} {
		if allowed[bad] {
			t.Errorf("%s → %s must be forbidden", bad[0], bad[1])
		}
	}
}

// TestTransitionExpectedStates: a write that says which states it expects
// fails when the task is elsewhere, even for a move the table allows; a
// write without a move still refuses terminal tasks.
func TestTransitionExpectedStates(t *testing.T) {
	task := &Task{ID: "t", State: StateRunning}
	if err := task.Transition(StateBidding, StateAwarded); !errors.Is(err, ErrInvalidTransition) || task.State != StateRunning {
		t.Fatalf("running → bidding expecting awarded: %v, %s", err, task.State)
	}
	if err := task.Transition("", StateRunning); err != nil || task.State != StateRunning || task.Revision != 1 {
		t.Fatalf("edit of a running task: %v", err)
	}
	applied := false
	mut := move(StateCompleted, []State{StateVerifying}, func(*Task) { applied = true })
	if err := mut(task); !errors.Is(err, ErrInvalidTransition) || applied {
		t.Fatalf("move refused must not apply its function: %v, applied %v", err, applied)
	}
	for _, s := range []State{StateCompleted, StateFailed, StateCanceled} {
		done := &Task{ID: "t", State: s}
		if err := edit(nil, func(*Task) { applied = true })(done); !errors.Is(err, ErrInvalidTransition) || applied {
			t.Fatalf("edit of a %s task: %v", s, err)
		}
	}
}

// TestAttemptMachine walks every pair of attempt states.
func TestAttemptMachine(t *testing.T) {
	all := []AttemptState{AttemptAwarded, AttemptDeclined, AttemptRunning, AttemptCompleted, AttemptFailed}
	allowed := map[[2]AttemptState]bool{
		{AttemptAwarded, AttemptDeclined}: true, {AttemptAwarded, AttemptRunning}: true,
		{AttemptAwarded, AttemptCompleted}: true, {AttemptAwarded, AttemptFailed}: true,
		{AttemptRunning, AttemptCompleted}: true, {AttemptRunning, AttemptFailed}: true,
	}
	for _, from := range all {
		for _, to := range all {
			e := &Execution{State: from}
			ok := e.Transition(to)
			if ok != allowed[[2]AttemptState{from, to}] {
				t.Errorf("attempt %s → %s: allowed %v, want %v", from, to, ok, !ok)
			}
			if ok && to.IsFinished() && e.FinishedAt.IsZero() {
				t.Errorf("attempt %s → %s left FinishedAt unset", from, to)
			}
			if !ok && e.State != from {
				t.Errorf("refused attempt move %s → %s changed the state", from, to)
			}
		}
	}
	for _, rep := range []string{wire.ExecRunning, wire.ExecCompleted, wire.ExecFailed} {
		if _, ok := attemptStateOf(rep); !ok {
			t.Errorf("report state %s maps to no attempt state", rep)
		}
	}
	if _, ok := attemptStateOf(wire.ExecHeartbeat); ok {
		t.Error("a heartbeat must not move an attempt")
	}
}

// TestExecMachine walks every pair of the provider's execution states.
func TestExecMachine(t *testing.T) {
	allowed := map[[2]ExecState]bool{
		{ExecAccepted, ExecRunning}: true, {ExecAccepted, ExecDone}: true, {ExecRunning, ExecDone}: true,
		{ExecDone, ExecDelivered}: true, {ExecDone, ExecAbandoned}: true,
	}
	for _, from := range ExecStates {
		for _, to := range ExecStates {
			r := &ExecRecord{Key: "k", State: from}
			err := r.Transition(to)
			if allowed[[2]ExecState{from, to}] {
				if err != nil || r.State != to || r.UpdatedAt.IsZero() {
					t.Errorf("exec %s → %s: %v", from, to, err)
				}
			} else if !errors.Is(err, ErrInvalidTransition) || r.State != from {
				t.Errorf("exec %s → %s was allowed", from, to)
			}
		}
	}
	if !slices.ContainsFunc(ExecStates, ExecState.IsFinal) {
		t.Fatal("no final execution state")
	}
}

// TestSettle is the table of what a result does to a task: the decision
// is made on the task as it stands, counting the failure being applied.
func TestSettle(t *testing.T) {
	const p, q = "provider-p", "provider-q"
	base := func(state State, attempt int, execs ...Execution) *Task {
		return &Task{ID: "t", State: state, Attempt: attempt, Provider: p, Spec: wire.TaskSpec{Retries: wire.Retries(1)}, Executions: execs}
	}
	ok := &wire.Result{ExitCode: 0}
	withOut := &wire.Result{ExitCode: 0, Outputs: "bafy"}
	retryable := &wire.Result{ExitCode: -1, Error: "gone", Retryable: true}
	for _, tc := range []struct {
		name      string
		task      *Task
		from      string
		attempt   int
		reported  string
		res       *wire.Result
		want      State
		retried   bool
		attemptTo AttemptState
	}{
		{"completed, nothing to fetch", base(StateRunning, 1, Execution{Provider: p, Attempt: 1, State: AttemptRunning}), p, 1, wire.ExecCompleted, ok, StateCompleted, false, AttemptCompleted},
		{"completed with outputs", base(StateRunning, 1, Execution{Provider: p, Attempt: 1, State: AttemptRunning}), p, 1, wire.ExecCompleted, withOut, StateVerifying, false, AttemptCompleted},
		{"result before the running report", base(StateAwarded, 1, Execution{Provider: p, Attempt: 1, State: AttemptAwarded}), p, 1, wire.ExecCompleted, withOut, StateVerifying, false, AttemptCompleted},
		{"non-zero exit fails", base(StateRunning, 1, Execution{Provider: p, Attempt: 1, State: AttemptRunning}), p, 1, wire.ExecCompleted, &wire.Result{ExitCode: 3}, StateFailed, false, AttemptCompleted},
		{"retryable within budget", base(StateRunning, 1, Execution{Provider: p, Attempt: 1, State: AttemptRunning}), p, 1, wire.ExecFailed, retryable, StateBidding, true, AttemptFailed},
		{"retryable, budget spent", base(StateRunning, 2,
			Execution{Provider: q, Attempt: 1, State: AttemptFailed},
			Execution{Provider: p, Attempt: 2, State: AttemptRunning}), p, 2, wire.ExecFailed, retryable, StateFailed, false, AttemptFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retried, err := settle(tc.task, tc.from, tc.attempt, tc.reported, tc.res, true)
			if err != nil || tc.task.State != tc.want || retried != tc.retried {
				t.Fatalf("settle: %v, state %s (want %s), retried %v", err, tc.task.State, tc.want, retried)
			}
			if e := tc.task.execution(tc.from, tc.attempt); e.State != tc.attemptTo || e.Result != tc.res {
				t.Fatalf("attempt is %s with result %v, want %s", e.State, e.Result, tc.attemptTo)
			}
		})
	}
}

// TestStepEvents: what a running report and a lost provider do to a task,
// and that an event about an attempt the task moved on from changes
// nothing.
func TestStepEvents(t *testing.T) {
	const p, q = "provider-p", "provider-q"
	awarded := func() *Task {
		return &Task{ID: "t", State: StateAwarded, Attempt: 2, Provider: p,
			Executions: []Execution{{Provider: q, Attempt: 1, State: AttemptFailed}, {Provider: p, Attempt: 2, State: AttemptAwarded}}}
	}
	task := awarded()
	if f, err := step(task, event{kind: evRunning, provider: p, attempt: 2}, true); err != nil || f || task.State != StateRunning || task.Executions[1].State != AttemptRunning {
		t.Fatalf("running: %v, %s, attempt %s", err, task.State, task.Executions[1].State)
	}
	if _, err := step(task, event{kind: evRunning, provider: p, attempt: 2}, true); !errors.Is(err, ErrInvalidTransition) {
		t.Fatalf("a second running report moved the task: %v", err)
	}
	if f, err := step(task, event{kind: evLost, provider: p, attempt: 2, why: "silent"}, true); err != nil || !f ||
		task.State != StateBidding || task.Provider != "" || task.Reason != "silent" || task.Executions[1].State != AttemptFailed {
		t.Fatalf("lost: %v failover %v, %s %q %q, attempt %s", err, f, task.State, task.Provider, task.Reason, task.Executions[1].State)
	}
	// A stale loss (the task moved to another provider or attempt) is
	// refused and changes nothing.
	for _, ev := range []event{{kind: evLost, provider: q, attempt: 1}, {kind: evLost, provider: p, attempt: 1}} {
		task := awarded()
		if _, err := step(task, ev, true); !errors.Is(err, ErrInvalidTransition) || task.State != StateAwarded || task.Provider != p {
			t.Fatalf("stale loss %+v: %v, %s", ev, err, task.State)
		}
	}
	// A result while verifying cannot be lost any more.
	task = awarded()
	task.State = StateVerifying
	if _, err := step(task, event{kind: evLost, provider: p, attempt: 2}, true); !errors.Is(err, ErrInvalidTransition) {
		t.Fatalf("a verifying task went back to bidding: %v", err)
	}
}

// TestOfferKeepsTheNewestSnapshot: a watcher's one-slot channel never
// trades a newer snapshot for an older one offered late.
func TestOfferKeepsTheNewestSnapshot(t *testing.T) {
	ch := make(chan *Task, 1)
	offer(ch, &Task{Revision: 5, State: StateCompleted})
	offer(ch, &Task{Revision: 3, State: StateRunning})
	if got := <-ch; got.Revision != 5 || got.State != StateCompleted {
		t.Fatalf("kept revision %d (%s)", got.Revision, got.State)
	}
	offer(ch, &Task{Revision: 6})
	offer(ch, &Task{Revision: 7})
	if got := <-ch; got.Revision != 7 {
		t.Fatalf("kept revision %d, want 7", got.Revision)
	}
}
