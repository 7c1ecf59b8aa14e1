package market

import (
	"errors"
	"testing"

	"github.com/offload-project/offload/market/wire"
)

// TestAuthorizeReport is the table of who may report what: every stale,
// unauthorized or overpriced report is refused with the code the provider
// acts on, and only the task's current attempt may change it.
func TestAuthorizeReport(t *testing.T) {
	const p, q, x = "provider-p", "provider-q", "stranger"
	bids := []BidRecord{
		{Provider: q, Attempt: 1, Price: 1, MaxCost: 10},
		{Provider: p, Attempt: 2, Price: 1, MaxCost: 10},
		{Provider: x, Attempt: 2, Decline: "busy"},
	}
	task := func(state State, provider string, execs ...Execution) *Task {
		return &Task{ID: "t", State: state, Attempt: 2, Provider: provider, Bids: bids, Executions: execs}
	}
	running := Execution{Provider: p, Attempt: 2, State: AttemptRunning}
	failedOver := Execution{Provider: q, Attempt: 1, State: AttemptFailed}
	result := func(a int) *wire.Report {
		return &wire.Report{TaskID: "t", Attempt: a, State: wire.ExecCompleted, Result: &wire.Result{Cost: 5}}
	}
	beat := func(a int) *wire.Report { return &wire.Report{TaskID: "t", Attempt: a, State: wire.ExecHeartbeat} }
	receipt := func(cost, price float64) *wire.Receipt { return &wire.Receipt{Cost: cost, Price: price} }
	for _, tc := range []struct {
		name     string
		task     *Task
		from     string
		rep      *wire.Report
		rc       *wire.Receipt
		allowed  bool
		wantOK   bool // the refusal is an OK ack (settled)
		wantCode wire.AckCode
	}{
		{"current result within the bid", task(StateRunning, p, failedOver, running), p, result(2), receipt(5, 1), true, false, ""},
		{"current heartbeat", task(StateRunning, p, failedOver, running), p, beat(2), nil, true, false, ""},
		{"a peer never awarded", task(StateRunning, p, failedOver, running), x, result(2), receipt(5, 1), false, false, wire.CodeNotAwarded},
		{"a real provider naming another attempt", task(StateRunning, p, failedOver, running), p, result(1), receipt(5, 1), false, false, wire.CodeNotAwarded},
		{"failed over, task bidding again", task(StateBidding, "", failedOver), q, result(1), receipt(5, 1), false, false, wire.CodeNoLongerYours},
		{"failed over, task running elsewhere", task(StateRunning, p, failedOver, running), q, result(1), receipt(5, 1), false, false, wire.CodeNoLongerYours},
		{"failed over, heartbeat", task(StateRunning, p, failedOver, running), q, beat(1), nil, false, false, wire.CodeNoLongerYours},
		{"declined the award", task(StateBidding, "", Execution{Provider: p, Attempt: 2, State: AttemptDeclined}), p, result(2), receipt(5, 1), false, false, wire.CodeNoLongerYours},
		{"superseded (not the current provider)", task(StateAwarded, q, Execution{Provider: p, Attempt: 2, State: AttemptAwarded}, Execution{Provider: q, Attempt: 2, State: AttemptAwarded}), p, result(2), receipt(5, 1), false, false, wire.CodeNoLongerYours},
		{"canceled task: result cleared, nothing settled", task(StateCanceled, p, running), p, result(2), receipt(5, 1), false, true, wire.CodeSettled},
		{"canceled task: heartbeat", task(StateCanceled, p, running), p, beat(2), nil, false, false, wire.CodeNoLongerYours},
		{"a redelivered result", task(StateVerifying, p, Execution{Provider: p, Attempt: 2, State: AttemptCompleted, Result: &wire.Result{}}), p, result(2), receipt(5, 1), false, true, wire.CodeSettled},
		{"cost above the bid's maximum", task(StateRunning, p, running), p, result(2), receipt(10.5, 1), false, false, wire.CodeInvalidReceipt},
		{"price above the bid's", task(StateRunning, p, running), p, result(2), receipt(5, 1.5), false, false, wire.CodeInvalidReceipt},
		{"a result without a receipt", task(StateRunning, p, running), p, result(2), nil, false, false, wire.CodeInvalidReceipt},
		{"no bid for the attempt", &Task{ID: "t", State: StateRunning, Attempt: 2, Provider: p, Executions: []Execution{running}}, p, result(2), receipt(5, 1), false, false, wire.CodeNotAwarded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := authorizeReport(tc.task, tc.from, tc.rep, tc.rc)
			if tc.allowed {
				if got != nil {
					t.Fatalf("refused: %+v", *got)
				}
				return
			}
			if got == nil {
				t.Fatal("allowed")
			}
			if got.OK != tc.wantOK || got.Code != tc.wantCode || got.Reason == "" {
				t.Fatalf("got %+v, want ok=%v code %q with a reason", *got, tc.wantOK, tc.wantCode)
			}
			if !got.OK && tc.wantCode != wire.CodeRetryLater && !got.Code.Final() {
				t.Fatalf("refusal %q is not final: the provider would retry for a day", got.Code)
			}
		})
	}
}

// TestStaleResultNeverSettles: step, inside the transaction, refuses a
// result of a failed-over attempt whatever the task's state, and leaves
// the task as it was.
func TestStaleResultNeverSettles(t *testing.T) {
	const p, q = "provider-p", "provider-q"
	for _, state := range []State{StateBidding, StateAwarded, StateRunning, StateVerifying} {
		task := &Task{ID: "t", State: state, Attempt: 2, Provider: p,
			Bids:       []BidRecord{{Provider: q, Attempt: 1, Price: 1, MaxCost: 10}, {Provider: p, Attempt: 2, Price: 1, MaxCost: 10}},
			Executions: []Execution{{Provider: q, Attempt: 1, State: AttemptFailed}, {Provider: p, Attempt: 2, State: AttemptRunning}}}
		before := *task
		_, err := step(task, event{kind: evResult, provider: q, attempt: 1, reported: wire.ExecCompleted,
			result: &wire.Result{}, receipt: &wire.Receipt{}}, true)
		var refused *refusedError
		if !errors.As(err, &refused) || refused.ack.Code != wire.CodeNoLongerYours {
			t.Fatalf("%s: stale result: %v", state, err)
		}
		if task.State != before.State || task.Result != nil || task.Executions[0].Result != nil || task.Revision != before.Revision {
			t.Fatalf("%s: a stale result changed the task: %+v", state, task)
		}
	}
}
