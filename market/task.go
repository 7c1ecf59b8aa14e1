package market

import (
	"errors"
	"fmt"
	"time"

	"github.com/offload-project/offload/market/wire"
)

// State is a task's state on the requestor. Values are strings because they
// are stored and shown to users.
type State string

// Task states: pending → bidding → awarded → running → completed | failed |
// canceled.
const (
	StatePending   State = "pending"
	StateBidding   State = "bidding"
	StateAwarded   State = "awarded"
	StateRunning   State = "running"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
)

// IsTerminal reports whether no further transition can happen.
func (s State) IsTerminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateCanceled
}

// ExecDeclined marks an execution whose award the provider declined: it
// ran nothing, costs no retry and does not count against the provider.
const ExecDeclined = "declined"

// ErrTaskNotFound is returned for an unknown task id.
var ErrTaskNotFound = errors.New("task not found")

// ErrInvalidTransition is returned when a transition's precondition fails.
var ErrInvalidTransition = errors.New("invalid task state transition")

// BidRecord is a bid as the requestor saw it.
type BidRecord struct {
	Provider string  `json:"provider"`
	Attempt  int     `json:"attempt"`
	Price    float64 `json:"price"`
	MaxCost  float64 `json:"max_cost"`
	StartMS  int64   `json:"start_ms"`
	HasImage bool    `json:"has_image"`
	// InputsLocal is the share of input bytes the provider already held.
	InputsLocal float64 `json:"inputs_local,omitempty"`
	Decline     string  `json:"decline,omitempty"`
	// Busy marks a decline for lack of free capacity (it may pass).
	Busy       bool      `json:"busy,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	// Outcome says what became of the bid: "won", "declined award: ...",
	// "over max price", ...
	Outcome string `json:"outcome,omitempty"`
}

// Execution is one provider's attempt at a task.
type Execution struct {
	Provider   string       `json:"provider"`
	Attempt    int          `json:"attempt"`
	State      string       `json:"state"`
	Result     *wire.Result `json:"result,omitempty"`
	AwardedAt  time.Time    `json:"awarded_at"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
}

// Task is the requestor's record of one task. It is what `status --json`
// prints (through the node's API view).
type Task struct {
	ID        string        `json:"id"`
	State     State         `json:"state"`
	Spec      wire.TaskSpec `json:"spec"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	// Attempt counts announcements (0 before the first).
	Attempt int `json:"attempt"`
	// Provider is the peer currently awarded, and at the end the one that
	// delivered the result.
	Provider   string       `json:"provider,omitempty"`
	Bids       []BidRecord  `json:"bids,omitempty"`
	Executions []Execution  `json:"executions,omitempty"`
	Result     *wire.Result `json:"result,omitempty"`
	// Reason says why the task waits or why it failed.
	Reason string `json:"reason,omitempty"`
	// Revision is bumped on every write.
	Revision int64 `json:"revision"`
	// Parent and Piece link a child task to its group.
	Parent string `json:"parent,omitempty"`
	Piece  int    `json:"piece,omitempty"`
	// Group, on a parent task, lists the children doing its work.
	Group *Group `json:"group,omitempty"`
}

// execution returns the execution of provider p at attempt a, or nil.
func (t *Task) execution(p string, a int) *Execution {
	for i := range t.Executions {
		if t.Executions[i].Provider == p && t.Executions[i].Attempt == a {
			return &t.Executions[i]
		}
	}
	return nil
}

// TaskStore persists requestor task records. storage.Table[Task] implements it.
type TaskStore interface {
	Create(id string, t *Task) error
	Get(id string) (*Task, error)
	Update(id string, fn func(*Task) error) (*Task, error)
	List() ([]*Task, error)
}

// transition returns a mutation that moves a task from one of from to to,
// applying fn, refusing to leave a terminal state.
func transition(to State, from []State, fn func(*Task)) func(*Task) error {
	return func(t *Task) error {
		if t.State.IsTerminal() {
			return fmt.Errorf("%w: task %s is already %s", ErrInvalidTransition, t.ID, t.State)
		}
		if len(from) > 0 {
			ok := false
			for _, f := range from {
				ok = ok || t.State == f
			}
			if !ok {
				return fmt.Errorf("%w: task %s is %s, not %v", ErrInvalidTransition, t.ID, t.State, from)
			}
		}
		if to != "" {
			t.State = to
		}
		if fn != nil {
			fn(t)
		}
		t.Revision++
		t.UpdatedAt = time.Now().UTC()
		return nil
	}
}
