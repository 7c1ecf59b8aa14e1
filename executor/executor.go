// Package executor declares how a provider runs one task: the Executor
// interface, the Spec it runs and the Result it reports. Implementations live
// in sub-packages: executor/docker (the Docker Engine API) and executor/wasm
// (wazero, WASI preview 1).
//
// An executor knows nothing about peers or markets: it gets a Spec whose
// content (image, inputs) is already on the local disk and returns what
// happened. Sandbox defaults (no network, read-only root, dropped
// capabilities, limits) are the implementation's job and are on unless the
// Spec says otherwise.
package executor

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors callers branch on. Implementations wrap them with %w and a
// message that names what went wrong (the image, the limit, the duration).
var (
	// ErrImageNotFound: the image (or WASM module) is not available locally.
	ErrImageNotFound = errors.New("image not found")
	// ErrTimeout: the workload ran past Spec.Timeout and was killed.
	ErrTimeout = errors.New("task timed out")
	// ErrOutOfMemory: the workload exceeded Spec.Limits.MemoryBytes.
	ErrOutOfMemory = errors.New("task ran out of memory")
	// ErrUnavailable: the engine behind the executor does not answer.
	ErrUnavailable = errors.New("executor unavailable")
	// ErrInvalidSpec: the spec cannot be run (bad limits, empty command...).
	ErrInvalidSpec = errors.New("invalid task spec")
)

// Default limits applied when a Spec leaves a field at zero.
const (
	DefaultCPUs        = 1.0
	DefaultMemoryBytes = 512 << 20
	DefaultPIDs        = 256
	DefaultTimeout     = 10 * time.Minute
	// DefaultOutputCap is how many bytes of stdout and of stderr are kept
	// (the tail); the full size is reported separately.
	DefaultOutputCap = 64 << 10
)

// The contract between a provider and an image builder (the "build"
// runtime, executor/docker's Builder): a build task's context tarball is
// the input mounted at BuildContextPath, and the builder leaves the image's
// `docker save` tarball in the outputs directory as BuildOutput, which the
// provider returns as the task's outputs.
const (
	BuildContextPath = "/context"
	BuildOutput      = "image.tar"
)

// Mount is a host path made visible inside the sandbox.
type Mount struct {
	Source   string `json:"source"` // absolute host path (file or directory)
	Target   string `json:"target"` // absolute path inside the sandbox
	ReadOnly bool   `json:"read_only"`
}

// Limits bound what one task may use. Zero means "use the default".
type Limits struct {
	CPUs        float64 `json:"cpus,omitempty"`
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	PIDs        int64   `json:"pids,omitempty"`
	GPUs        int     `json:"gpus,omitempty"`
	// GPUDevices, when set, are the devices (UUIDs or indexes) the task
	// is given, GPUs of them; else any GPUs devices.
	GPUDevices []string `json:"gpu_devices,omitempty"`
	// OutputCap bounds the bytes of stdout and of stderr kept (each).
	OutputCap int64 `json:"output_cap,omitempty"`
}

// Spec is one workload to run. All content is local by the time it reaches an
// executor.
type Spec struct {
	// TaskID labels everything the executor creates (containers carry the
	// label offload.task=TaskID) so that work can be found after a restart.
	TaskID string `json:"task_id"`
	// Image is a Docker image reference or ID (docker), or the path of a
	// WASM module file on the host (wasm).
	Image string `json:"image"`
	// Entrypoint overrides the image's entrypoint when non-empty.
	Entrypoint []string `json:"entrypoint,omitempty"`
	// Cmd replaces the image's command when non-empty. For WASM, Cmd is argv
	// after the program name.
	Cmd     []string          `json:"cmd,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	WorkDir string            `json:"workdir,omitempty"`
	Limits  Limits            `json:"limits"`
	// Timeout is the wall-clock limit of the run (image loading excluded).
	Timeout time.Duration `json:"timeout,omitempty"`
	Mounts  []Mount       `json:"mounts,omitempty"`
	// Isolation selects a stronger sandbox: "gvisor" runs a Docker task
	// under gVisor. Empty: the executor's default.
	Isolation string `json:"isolation,omitempty"`
	// OutputsDir, when set, is a host directory mounted writable at
	// /outputs; whatever the task writes there is returned by the caller.
	// It must exist, unless the executor says it makes it
	// (MakesOutputsDir, the WASM executor): then it may be missing after
	// the run, if the task never used /outputs.
	OutputsDir string `json:"outputs_dir,omitempty"`
	// Log, when set, receives the workload's output as it is written
	// ("stdout" or "stderr" and the bytes, which it must not keep), on
	// top of the tails in the Result. It must not block.
	Log func(stream string, p []byte) `json:"-"`
}

// Usage is measured, not estimated.
type Usage struct {
	WallMS      int64 `json:"wall_ms"`
	CPUMS       int64 `json:"cpu_ms"`
	MaxRSSBytes int64 `json:"max_rss_bytes"`
}

// Result is what one run produced.
type Result struct {
	ExitCode int `json:"exit_code"`
	// Stdout and Stderr hold the tail of each stream, at most
	// Limits.OutputCap bytes; the *Size fields give the full size.
	Stdout     []byte    `json:"stdout"`
	Stderr     []byte    `json:"stderr"`
	StdoutSize int64     `json:"stdout_size"`
	StderrSize int64     `json:"stderr_size"`
	Usage      Usage     `json:"usage"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Executor runs workloads. Implementations are safe for concurrent use.
type Executor interface {
	// Name is the runtime's name as used in specs and adverts: "docker", "wasm".
	Name() string
	// Available reports whether the engine behind the executor answers now;
	// the error wraps ErrUnavailable with the reason.
	Available(ctx context.Context) error
	// Run runs spec to completion and blocks until it ends or ctx is done
	// (then the workload is stopped and removed before Run returns).
	//
	// A nil error means the workload ran to its own exit; a non-zero exit
	// code is not an error. When the workload started but was stopped
	// (ErrTimeout, ErrOutOfMemory, ctx canceled) Run returns the partial
	// Result together with the error. When it could not start at all
	// (ErrImageNotFound, ErrInvalidSpec, ErrUnavailable) the Result is nil.
	Run(ctx context.Context, spec Spec) (*Result, error)
}
