package client

import (
	"time"

	"github.com/offload-project/offload/market/wire"
)

// TaskSpec is the body of a task submission (the same JSON as on the wire).
type TaskSpec = wire.TaskSpec

// Usage is what a run used, measured on the provider.
type Usage struct {
	WallMS      int64 `json:"wall_ms"`
	CPUMS       int64 `json:"cpu_ms"`
	MaxRSSBytes int64 `json:"max_rss_bytes"`
}

// Bid is one provider's answer to one announcement of the task.
type Bid struct {
	Provider string  `json:"provider"`
	Attempt  int     `json:"attempt"`
	Price    float64 `json:"price"`
	MaxCost  float64 `json:"max_cost"`
	StartMS  int64   `json:"start_ms"`
	HasImage bool    `json:"has_image"`
	// InputsLocal is the share of the task's input bytes the provider
	// already held.
	InputsLocal float64 `json:"inputs_local"`
	Decline     string  `json:"decline,omitempty"`
	// Silent marks a provider that was asked (a targeted auction) and did
	// not answer; Outcome says why.
	Silent  bool   `json:"silent,omitempty"`
	Outcome string `json:"outcome,omitempty"`
}

// Execution is one provider's run of the task.
type Execution struct {
	Provider   string     `json:"provider"`
	Attempt    int        `json:"attempt"`
	State      string     `json:"state"`
	ExitCode   *int       `json:"exit_code"`
	Error      string     `json:"error,omitempty"`
	Stdout     string     `json:"stdout,omitempty"`
	Stderr     string     `json:"stderr,omitempty"`
	Usage      *Usage     `json:"usage,omitempty"`
	AwardedAt  time.Time  `json:"awarded_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// Stage is one stage of a multi-stage task.
type Stage struct {
	Name     string `json:"name"`
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	WallMS   int64  `json:"wall_ms"`
	Usage    Usage  `json:"usage"`
}

// Task is the status of one task as `offload status --json` and
// `offload run --wait --json` print it.
type Task struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Provider is the peer that delivered the result (or holds the award).
	Provider string `json:"provider"`
	// ExitCode is null until a result arrived.
	ExitCode *int   `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// StdoutSize and StderrSize are the full sizes; Stdout and Stderr hold
	// the tail.
	StdoutSize int64 `json:"stdout_size"`
	StderrSize int64 `json:"stderr_size"`
	// Error says why the task failed; empty otherwise.
	Error string `json:"error"`
	// Reason says why the task is waiting, or what happened last.
	Reason string `json:"reason"`
	// Outputs is the root CID of the task's /outputs, when it has any.
	Outputs string `json:"outputs"`
	// Image is a completed build's image (runtime "build"): the CID of
	// its `docker save` tarball, which runs as a task's image.
	Image      string      `json:"image,omitempty"`
	Usage      Usage       `json:"usage"`
	Price      float64     `json:"price"`
	Bids       []Bid       `json:"bids"`
	Executions []Execution `json:"executions"`
	Stages     []Stage     `json:"stages"`
	StartedAt  *time.Time  `json:"started_at"`
	FinishedAt *time.Time  `json:"finished_at"`
	CreatedAt  time.Time   `json:"created_at"`
	UpdatedAt  time.Time   `json:"updated_at"`
	Attempt    int         `json:"attempt"`
	Spec       TaskSpec    `json:"spec"`
	// Parent and Piece link a child task (a redundant copy or a subtask
	// piece) to its parent; Children lists a parent's children.
	Parent   string  `json:"parent,omitempty"`
	Piece    int     `json:"piece,omitempty"`
	Children []Child `json:"children,omitempty"`
}

// Child is one child task of a redundant or fanned-out task.
type Child struct {
	ID       string `json:"id"`
	Piece    int    `json:"piece"`
	State    string `json:"state"`
	Provider string `json:"provider,omitempty"`
	Outputs  string `json:"outputs,omitempty"`
	Verdict  string `json:"verdict,omitempty"`
}

// Terminal reports whether the task will not change any more.
func (t *Task) Terminal() bool {
	return t.State == "completed" || t.State == "failed" || t.State == "canceled"
}

// Identity is the node's peer identity and addresses.
type Identity struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
	// Reachability says whether other peers can dial the node: public,
	// behind-nat, relayed, unknown (AutoNAT has not decided yet) or local
	// (NAT traversal off: loopback, a private swarm, --no-nat).
	Reachability string `json:"reachability,omitempty"`
}

// Peer is one connected peer.
type Peer struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

// Error is the body of every API error response.
type Error struct {
	Error string `json:"error"`
}

// LogChunk is a piece of a running task's output, as GET
// /api/v1/tasks/{id}/logs streams it.
type LogChunk struct {
	// Attempt is the execution the output belongs to; Offset counts bytes
	// in that execution's output (stdout and stderr together, in the order
	// written).
	Attempt int   `json:"attempt"`
	Offset  int64 `json:"offset"`
	// Stream is "stdout" or "stderr"; empty on a note (Note).
	Stream string `json:"stream,omitempty"`
	// Text is the output (invalid UTF-8 is replaced).
	Text string `json:"text,omitempty"`
	// Skipped counts output before Offset that the provider no longer
	// held (it keeps the latest 256 KiB of a run).
	Skipped int64 `json:"skipped,omitempty"`
	// Note says what happened to the stream: a new attempt starts, the
	// output comes from the result because no provider holds it any more.
	Note string `json:"note,omitempty"`
	// Next is where a reader that got this chunk resumes: "ATTEMPT:OFFSET",
	// also the SSE event id (send it back as Last-Event-ID or ?from=).
	Next string `json:"next"`
}
