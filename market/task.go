package market

import (
	"errors"
	"slices"
	"time"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/storage"
)

// ErrTaskNotFound is returned for an unknown task id.
var ErrTaskNotFound = errors.New("task not found")

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
	Busy bool `json:"busy,omitempty"`
	// Silent marks a candidate that was asked (a targeted auction) and did
	// not answer; Outcome says why (a timeout, a failed dial).
	Silent     bool      `json:"silent,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	// Outcome says what became of the bid: "won", "declined award: ...",
	// "over max price", ...
	Outcome string `json:"outcome,omitempty"`
}

// Execution is one provider's attempt at a task.
type Execution struct {
	Provider   string       `json:"provider"`
	Attempt    int          `json:"attempt"`
	State      AttemptState `json:"state"`
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
	// Checkpoint is the latest snapshot of the task's checkpoint
	// directory that this requestor holds (checkpoint.go).
	Checkpoint *TaskCheckpoint `json:"checkpoint,omitempty"`
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

// ownNested gives t its own copies of what a store mutation may change in
// place: the bids, the executions, the group with its children and
// targets, and the checkpoint. A shallow copy of a shared snapshot (see
// Requestor.update) may then be changed without changing the snapshot.
// Everything else a mutation changes it replaces (a field, the result
// pointer, the spec's volumes) rather than modifies.
func (t *Task) ownNested() {
	t.Bids = slices.Clone(t.Bids)
	t.Executions = slices.Clone(t.Executions)
	if t.Group != nil {
		g := *t.Group
		g.Children = slices.Clone(g.Children)
		g.Targets = slices.Clone(g.Targets)
		t.Group = &g
	}
	if t.Checkpoint != nil {
		cp := *t.Checkpoint
		t.Checkpoint = &cp
	}
}

// TaskStore persists requestor task records. storage.Table[Task] implements it.
type TaskStore interface {
	Create(id string, t *Task) error
	Get(id string) (*Task, error)
	Update(id string, fn func(*Task) error) (*Task, error)
	List() ([]*Task, error)
}

// heldTaskUpdater is implemented by task stores that can update a record
// from the copy the caller holds, without reading and decoding it again
// (storage.Table.UpdateHeld): fn gets a shallow copy of held, written
// only if the stored record still encodes as held does; otherwise fn runs
// on the stored record, as in Update.
type heldTaskUpdater interface {
	UpdateHeld(id string, held *Task, fn func(*Task) error) (*Task, error)
}

// taskAlsoUpdater is implemented by task stores that write entries of
// another table (the ledger's, see ledgerEntries) with a task's update, in
// one transaction: both land or neither does (storage.Table.UpdateAlso,
// UpdateHeldAlso).
type taskAlsoUpdater interface {
	UpdateAlso(id string, fn func(*Task) error, also ...storage.Entry) (*Task, error)
	UpdateHeldAlso(id string, held *Task, fn func(*Task) error, also ...storage.Entry) (*Task, error)
}
