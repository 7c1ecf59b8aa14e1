package wire

import "time"

// Checkpoints: a long task opts in to be resumable on another provider.
// Its provider snapshots the task's checkpoint directory as content at
// each interval (and when the task writes CheckpointMarker there), names
// the latest snapshot in its heartbeats, and the requestor fetches and
// keeps it; a failed-over task starts on the next provider with the latest
// checkpoint in place. Checkpoints are private content of the task.

// Checkpoint bounds.
const (
	MinCheckpointEvery = time.Second
	MaxCheckpointEvery = 24 * time.Hour
	// CheckpointMarker is the file a task writes in its checkpoint
	// directory to ask for a snapshot now (the provider removes it).
	CheckpointMarker = ".offload-checkpoint"
)

// Checkpoint is a task's checkpoint setting.
type Checkpoint struct {
	// Path is the directory inside the sandbox the task keeps its state
	// in (writable; its files are best written atomically: write, then
	// rename).
	Path string `json:"path"`
	// EveryMS is the snapshot interval.
	EveryMS int64 `json:"every_ms"`
	// From, set by the requestor when it awards a failed-over task, is
	// the checkpoint (a CID) the run starts from, FromSize its declared
	// size.
	From     string `json:"from,omitempty"`
	FromSize int64  `json:"from_size,omitempty"`
}

// Every is the snapshot interval.
func (c *Checkpoint) Every() time.Duration { return time.Duration(c.EveryMS) * time.Millisecond }

// Validate checks a checkpoint setting.
func (c *Checkpoint) Validate() error {
	if err := ValidateMountPath(c.Path); err != nil {
		return invalid("checkpoint: %v", err)
	}
	if c.Path == WorkPath {
		return invalid("checkpoint: %s is the stages' work dir", WorkPath)
	}
	if e := c.Every(); e < MinCheckpointEvery || e > MaxCheckpointEvery {
		return invalid("checkpoint interval %s out of range (%s..%s)", e, MinCheckpointEvery, MaxCheckpointEvery)
	}
	if c.From != "" {
		if err := ValidCID(c.From); err != nil {
			return invalid("checkpoint: %v", err)
		}
	}
	if c.FromSize < 0 {
		return invalid("checkpoint: negative size")
	}
	return nil
}

// CheckpointRef names a snapshot of a task's checkpoint directory, as a
// heartbeat carries it.
type CheckpointRef struct {
	CID  string `json:"cid"`
	Size int64  `json:"size"`
	// At is when the snapshot was taken (unix ms, the provider's clock).
	At int64 `json:"at"`
}

// Validate checks a checkpoint reference.
func (r *CheckpointRef) Validate() error {
	if err := ValidCID(r.CID); err != nil {
		return err
	}
	if r.Size < 0 || r.At < 0 {
		return invalid("negative checkpoint size or time")
	}
	return nil
}
