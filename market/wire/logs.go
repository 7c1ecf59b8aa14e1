package wire

// Live logs: a requestor follows a running task's stdout and stderr on
// its provider.

// ProtoLogs: requestor -> provider, one LogsRequest, answered by LogChunk
// frames: what the provider still holds of the execution's output from
// the requested offset, then (with Follow) every chunk as the task writes
// it, until the run ends; the last frame has End set.
const ProtoLogs = "/offload/logs/1"

// Size limits of the logs protocol.
const (
	// MaxLogsRequestSize bounds a LogsRequest.
	MaxLogsRequestSize = 1 << 10
	// MaxLogChunkData bounds the bytes of one chunk; MaxLogChunkSize the
	// encoded frame (base64 and the other fields).
	MaxLogChunkData = 16 << 10
	MaxLogChunkSize = 32 << 10
)

// Log stream names.
const (
	LogStdout = "stdout"
	LogStderr = "stderr"
)

// LogsRequest asks for an execution's output.
type LogsRequest struct {
	TaskID  string `json:"task"`
	Attempt int    `json:"attempt"`
	// From is the offset to start at: the output of both streams counts
	// as one sequence of bytes, in the order it was written.
	From int64 `json:"from"`
	// Follow keeps the stream open and sends output as it is written,
	// until the run ends.
	Follow bool `json:"follow,omitempty"`
}

// Validate checks a LogsRequest.
func (r *LogsRequest) Validate() error {
	if err := validID(r.TaskID); err != nil {
		return err
	}
	if r.Attempt < 0 || r.From < 0 {
		return invalid("negative attempt or offset")
	}
	return nil
}

// LogChunk is a piece of an execution's output.
type LogChunk struct {
	// Stream is LogStdout or LogStderr ("" on a frame without data).
	Stream string `json:"stream,omitempty"`
	// Offset is where Data starts in the execution's output.
	Offset int64  `json:"offset"`
	Data   []byte `json:"data,omitempty"`
	// Skipped counts the bytes before Offset (from the requested offset
	// on) that the provider no longer holds: its buffer keeps the latest
	// output only.
	Skipped int64 `json:"skipped,omitempty"`
	// End marks the last frame: the run ended (or, without Follow, what
	// is held was sent); Error says why there is nothing (more).
	End   bool   `json:"end,omitempty"`
	Error string `json:"error,omitempty"`
}

// Validate checks a LogChunk.
func (c *LogChunk) Validate() error {
	if c.Stream != "" && c.Stream != LogStdout && c.Stream != LogStderr {
		return invalid("unknown log stream %q", c.Stream)
	}
	if c.Offset < 0 || c.Skipped < 0 {
		return invalid("negative offset")
	}
	if len(c.Data) > MaxLogChunkData {
		return invalid("chunk of %d bytes, over %d", len(c.Data), MaxLogChunkData)
	}
	if len(c.Error) > 1024 {
		return invalid("error text over 1024 bytes")
	}
	return nil
}
