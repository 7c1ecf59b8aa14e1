// Package wire holds every message of the marketplace protocol, version 1,
// in one place: the task announcement published on gossipsub, and the
// bid, award and report exchanged on libp2p streams.
//
// Messages are JSON, framed by stream.WriteMsg/ReadMsg. Each message has a
// Validate method that every receiver calls before acting; Decode* helpers
// combine unmarshalling with validation and are the fuzz targets.
//
// Privacy choice: an Announce carries only what providers need to decide
// whether to bid (runtime, image, resources, timeout, price cap, input CIDs).
// The command, arguments and environment travel only in the Award, to the
// provider that won.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Version is the protocol version carried in every announcement.
const Version = 1

// Protocol IDs and topic names.
const (
	// TopicTasks carries Announce messages.
	TopicTasks = "/offload/tasks/1"
	// ProtoBid: provider -> requestor, one Bid, answered by one BidAck.
	ProtoBid = "/offload/bid/1"
	// ProtoAsk: requestor -> provider, one Announce (whose Requestor is the
	// stream's peer), answered by one Bid, which the requestor answers with
	// one BidAck: a targeted auction, in which the requestor asks the few
	// candidates it chose rather than gossiping to every provider.
	ProtoAsk = "/offload/ask/1"
	// ProtoAward: requestor -> provider, one Award, answered by one AwardReply.
	ProtoAward = "/offload/award/1"
	// ProtoReport: provider -> requestor, one Report (a status change or the
	// result), answered by one Ack.
	ProtoReport = "/offload/report/1"
	// ProtoCancel: requestor -> provider, one Cancel, answered by one Ack.
	ProtoCancel = "/offload/cancel/1"
)

// Size limits of each message, enforced before decoding.
const (
	MaxAnnounceSize = 64 << 10
	MaxBidSize      = 16 << 10
	MaxAwardSize    = 256 << 10
	MaxReportSize   = 1 << 20
	MaxAckSize      = 4 << 10
)

// Limits on fields.
const (
	maxIDLen      = 64
	maxImageLen   = 512
	maxArgs       = 256
	maxArgLen     = 16 << 10
	maxEnv        = 256
	maxReasonLen  = 1024
	maxTimeout    = 7 * 24 * time.Hour
	maxCPUs       = 1024
	maxGPUs       = 64
	maxOutputTail = 256 << 10
	maxInputs     = 64
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid message")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Resources a task asks for.
type Resources struct {
	CPUs        float64 `json:"cpus,omitempty"`
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	GPUs        int     `json:"gpus,omitempty"`
}

// Validate checks ranges.
func (r Resources) Validate() error {
	switch {
	case badFloat(r.CPUs) || r.CPUs < 0 || r.CPUs > maxCPUs:
		return invalid("cpus %v out of range (0..%d)", r.CPUs, maxCPUs)
	case r.MemoryBytes < 0:
		return invalid("memory %d is negative", r.MemoryBytes)
	case r.GPUs < 0 || r.GPUs > maxGPUs:
		return invalid("gpus %d out of range (0..%d)", r.GPUs, maxGPUs)
	}
	return nil
}

// DefaultRetries is the retry budget of a spec that does not say
// (TaskSpec.Retries nil): whether it comes from the CLI, a task file, the
// HTTP API, the Go library or the Python client.
const DefaultRetries = 2

// Retries returns a pointer to n, for TaskSpec.Retries.
func Retries(n int) *int { return &n }

// RetryBudget is how many more providers may be tried after a retryable
// failure: Retries, or DefaultRetries when the spec does not say.
func (s TaskSpec) RetryBudget() int {
	if s.Retries == nil {
		return DefaultRetries
	}
	return *s.Retries
}

// TaskSpec is what a requestor asks to run.
type TaskSpec struct {
	// Runtime is "docker" (default), "wasm" or "build" (RuntimeBuild).
	Runtime string `json:"runtime,omitempty"`
	// Isolation asks for a stronger sandbox than the runtime's default:
	// IsolationGVisor runs a Docker task under gVisor (runsc). Empty: the
	// provider's default (which may itself be gVisor).
	Isolation  string            `json:"isolation,omitempty"`
	Image      string            `json:"image"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	WorkDir    string            `json:"workdir,omitempty"`
	Resources  Resources         `json:"resources"`
	// TimeoutMS is the execution's wall-clock limit in milliseconds.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// MaxPrice caps the unit price (credits per CPU-second); 0 = no cap.
	MaxPrice float64 `json:"max_price,omitempty"`
	// Retries is how many more providers may be tried after a retryable
	// failure; nil means DefaultRetries (see RetryBudget), for every way
	// of submitting. Write Retries(n) for an explicit count, 0 included.
	Retries *int `json:"retries,omitempty"`
	// Provider pins the task to one peer when set.
	Provider string `json:"provider,omitempty"`
	// Inputs are content mounted read-only into the task.
	Inputs []Input `json:"inputs,omitempty"`
	// ImageSize, when positive, is the declared size of an image given by
	// CID, as Input.Size is of an input.
	ImageSize int64 `json:"image_size,omitempty"`
	// Strategy selects among bids: "cheapest" (default), "fastest" or
	// "reputation".
	Strategy string `json:"strategy,omitempty"`
	// Redundancy runs the task on this many distinct providers and
	// completes it only when their results agree (0 or 1: once).
	Redundancy int `json:"redundancy,omitempty"`
	// Subtasks fan the task out: one execution per piece, each with its
	// own arguments, environment and inputs, in parallel.
	Subtasks []Subtask `json:"subtasks,omitempty"`
	// Each runs the task once on every provider that matches it when it is
	// submitted (at most MaxEach), each run with its own result: for
	// maintenance, benchmarks, or data already spread over the nodes.
	Each bool `json:"each,omitempty"`
	// GPU is what each of the task's GPUs (Resources.GPUs) must meet:
	// vendor, models, memory, compute capability, CUDA version (gpu.go).
	GPU *GPURequirements `json:"gpu,omitempty"`
	// Labels are provider labels the task needs (fpga=xilinx): each key
	// among the provider's labels, with this value or, for LabelAny or an
	// empty value, with any value (labels.go). Providers without them
	// decline, and requestors never ask them.
	Labels map[string]string `json:"labels,omitempty"`
	// Machine is what the provider's machine must be or have as a whole:
	// OS, architecture, CPU model, CPUs and memory (machine.go).
	Machine *MachineRequirements `json:"machine,omitempty"`
	// Checkpoint makes the task resumable on another provider from its
	// latest snapshot of a directory (checkpoint.go).
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Verify checks each piece's outputs on the requestor's own executor.
	Verify *Verify `json:"verify,omitempty"`
	// Exclude lists providers that may not run this task (a redundant
	// copy's siblings, a piece's rejected providers).
	Exclude []string `json:"exclude,omitempty"`
	// Name is a label for people.
	Name string `json:"name,omitempty"`
	// Stages run in order in the same sandbox (same mounts and limits),
	// sharing /outputs and a work dir at /work; the first failure stops
	// the rest unless the stage says continue_on_error. Without stages the
	// task runs Cmd once.
	Stages []Stage `json:"stages,omitempty"`
	// Artifacts are the paths (under /outputs or /work) returned as the
	// task's outputs; all of /outputs when none are listed.
	Artifacts []string `json:"artifacts,omitempty"`
	// Service, Ports, Namespace, Volumes and NotBefore: see service.go.
	Service   bool     `json:"service,omitempty"`
	Ports     []int    `json:"ports,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Volumes   []Volume `json:"volumes,omitempty"`
	NotBefore int64    `json:"not_before,omitempty"`
}

// Stage is one command of a multi-stage task.
type Stage struct {
	Name            string            `json:"name"`
	Cmd             []string          `json:"cmd"`
	Env             map[string]string `json:"env,omitempty"`
	ContinueOnError bool              `json:"continue_on_error,omitempty"`
}

// StageResult is what one stage did.
type StageResult struct {
	Name     string `json:"name"`
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	WallMS   int64  `json:"wall_ms"`
	Usage    Usage  `json:"usage"`
	Error    string `json:"error,omitempty"`
}

// Sandbox paths a task can write.
const (
	OutputsPath = "/outputs"
	WorkPath    = "/work"
)

// ValidateArtifact checks an artifact path: clean, absolute, inside
// /outputs or /work.
func ValidateArtifact(p string) error {
	if path.Clean(p) != p || !strings.HasPrefix(p, "/") {
		return invalid("artifact %q must be a clean absolute path", p)
	}
	for _, root := range []string{OutputsPath, WorkPath} {
		if strings.HasPrefix(p, root+"/") {
			return nil
		}
	}
	return invalid("artifact %q must be inside %s or %s", p, OutputsPath, WorkPath)
}

// Subtask is one piece of a fanned-out task: it overrides the task's
// command (when Cmd is set), adds environment variables and inputs.
type Subtask struct {
	Name   string            `json:"name,omitempty"`
	Cmd    []string          `json:"cmd,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	Inputs []Input           `json:"inputs,omitempty"`
}

// Verify is a check run on the requestor over a piece's outputs, mounted
// read-only at /inputs/piece; exit code 0 accepts the piece. The piece's
// index is in $OFFLOAD_PIECE and its stdout in $OFFLOAD_PIECE_STDOUT.
type Verify struct {
	Runtime   string   `json:"runtime,omitempty"`
	Image     string   `json:"image"`
	Cmd       []string `json:"cmd,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"`
}

// Limits of fan-out.
const (
	MaxRedundancy = 16
	MaxSubtasks   = 1024
	// MaxEach bounds the providers an Each task runs on.
	MaxEach = 256
)

// Input is content (a file or a directory, by CID) mounted read-only at
// Path inside the task.
type Input struct {
	CID  string `json:"cid"`
	Path string `json:"path"`
	// Size, when positive, is the input's size as the requestor declares
	// it: the size of its DAG, every block counted as often as the DAG
	// links it (kubo's CumulativeSize; at least the file bytes). The
	// provider refuses, while fetching, content that is larger (the
	// content is not what the task says) and never fetches more than its
	// own limit either. The requestor fills it when it holds the content.
	Size int64 `json:"size,omitempty"`
}

// reservedPaths may not be the target of an input mount, nor contain one:
// the sandbox's own directories and the system's.
var reservedPaths = []string{"/outputs", "/tmp", "/proc", "/sys", "/dev", "/etc", "/bin", "/sbin",
	"/usr", "/lib", "/lib64", "/boot", "/root", "/run", "/var/run"}

// ValidateMountPath checks that p is a clean absolute path that is neither
// the root, a system path nor one of the sandbox's own directories (nor
// inside them).
func ValidateMountPath(p string) error {
	if p == "" || !strings.HasPrefix(p, "/") {
		return invalid("mount path %q must be absolute", p)
	}
	if len(p) > 1024 || strings.ContainsAny(p, "\x00:") {
		return invalid("mount path %q has a forbidden character or is too long", p)
	}
	if path.Clean(p) != p {
		return invalid("mount path %q is not clean (try %q)", p, path.Clean(p))
	}
	if p == "/" {
		return invalid("cannot mount over /")
	}
	for _, r := range reservedPaths {
		if p == r || strings.HasPrefix(p, r+"/") {
			return invalid("mount path %q is a system or sandbox path (%s)", p, r)
		}
	}
	return nil
}

// ValidCID reports whether s parses as a CID (v0 or v1).
func ValidCID(s string) error {
	if _, err := cid.Decode(s); err != nil {
		return invalid("%q is not a CID: %v", s, err)
	}
	return nil
}

// RuntimeBuild builds a Docker image on the provider (executor/docker's
// Builder): Image is the Dockerfile's base (a reference the provider has,
// a CID, or "scratch"), the input at executor.BuildContextPath the context tarball,
// Cmd at most the Dockerfile's path in it, Env the build args; the outputs
// are the image's `docker save` tarball, as one file.
const RuntimeBuild = "build"

// Runtimes known to this version.
var Runtimes = []string{"docker", "wasm", RuntimeBuild}

// RuntimeOrDefault returns the spec's runtime, "docker" when unset.
func (s TaskSpec) RuntimeOrDefault() string {
	if s.Runtime == "" {
		return "docker"
	}
	return s.Runtime
}

// Timeout returns the spec's timeout as a duration (0 when unset).
func (s TaskSpec) Timeout() time.Duration { return time.Duration(s.TimeoutMS) * time.Millisecond }

// Validate checks a spec.
func (s TaskSpec) Validate() error {
	rt := s.RuntimeOrDefault()
	if rt != "docker" && rt != "wasm" && rt != RuntimeBuild {
		return invalid("unknown runtime %q (want docker, wasm or build)", s.Runtime)
	}
	if rt == RuntimeBuild {
		if err := s.validateBuild(); err != nil {
			return err
		}
	}
	if strings.TrimSpace(s.Image) == "" {
		return invalid("image is required")
	}
	if len(s.Image) > maxImageLen {
		return invalid("image reference longer than %d bytes", maxImageLen)
	}
	if len(s.Cmd)+len(s.Entrypoint) > maxArgs {
		return invalid("more than %d arguments", maxArgs)
	}
	for _, a := range append(append([]string{}, s.Entrypoint...), s.Cmd...) {
		if len(a) > maxArgLen {
			return invalid("argument longer than %d bytes", maxArgLen)
		}
	}
	if len(s.Env) > maxEnv {
		return invalid("more than %d environment variables", maxEnv)
	}
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return invalid("invalid environment variable name %q", k)
		}
		if len(v) > maxArgLen {
			return invalid("environment variable %s longer than %d bytes", k, maxArgLen)
		}
	}
	if err := s.Resources.Validate(); err != nil {
		return err
	}
	if s.TimeoutMS < 0 || s.TimeoutMS > maxTimeout.Milliseconds() {
		return invalid("timeout %dms out of range (0..%s)", s.TimeoutMS, maxTimeout)
	}
	if s.MaxPrice < 0 || math.IsNaN(s.MaxPrice) || math.IsInf(s.MaxPrice, 0) {
		return invalid("max price %v is negative", s.MaxPrice)
	}
	if s.Retries != nil && (*s.Retries < 0 || *s.Retries > 100) {
		return invalid("retries %d out of range (0..100)", *s.Retries)
	}
	if s.Provider != "" {
		if _, err := peer.Decode(s.Provider); err != nil {
			return invalid("provider %q is not a peer id: %v", s.Provider, err)
		}
	}
	if s.Redundancy < 0 || s.Redundancy > MaxRedundancy {
		return invalid("redundancy %d out of range (0..%d)", s.Redundancy, MaxRedundancy)
	}
	if len(s.Subtasks) > MaxSubtasks {
		return invalid("more than %d subtasks", MaxSubtasks)
	}
	if s.Redundancy > 1 && len(s.Subtasks) > 0 {
		return invalid("redundancy and subtasks cannot be combined")
	}
	if s.Each && (s.Redundancy > 1 || len(s.Subtasks) > 0 || s.Provider != "") {
		return invalid("each cannot be combined with redundancy, subtasks or a pinned provider")
	}
	if s.GPU != nil {
		if err := s.GPU.Validate(); err != nil {
			return err
		}
		if s.Resources.GPUs < 1 {
			return invalid("gpu requirements need at least one GPU (resources.gpus)")
		}
	}
	if s.Checkpoint != nil {
		if err := s.Checkpoint.Validate(); err != nil {
			return err
		}
		if s.Service || len(s.Stages) > 0 {
			return invalid("a checkpoint is for a task that runs once to its end: not a service, no stages")
		}
		for _, in := range s.Inputs {
			if in.Path == s.Checkpoint.Path {
				return invalid("checkpoint path %s is also an input's", in.Path)
			}
		}
		for _, v := range s.Volumes {
			if v.Path == s.Checkpoint.Path {
				return invalid("checkpoint path %s is also a volume's", v.Path)
			}
		}
	}
	for i, st := range s.Subtasks {
		piece := s
		piece.Subtasks, piece.Verify = nil, nil
		if len(st.Cmd) > 0 {
			piece.Cmd = st.Cmd
		}
		piece.Inputs = append(append([]Input{}, s.Inputs...), st.Inputs...)
		for k := range st.Env {
			if piece.Env == nil {
				piece.Env = map[string]string{}
			}
			piece.Env[k] = st.Env[k]
		}
		if err := piece.Validate(); err != nil {
			return fmt.Errorf("subtask %d: %w", i, err)
		}
	}
	if s.Verify != nil {
		if len(s.Subtasks) == 0 {
			return invalid("verify needs subtasks")
		}
		v := TaskSpec{Runtime: s.Verify.Runtime, Image: s.Verify.Image, Cmd: s.Verify.Cmd, TimeoutMS: s.Verify.TimeoutMS}
		if err := v.Validate(); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	if len(s.Exclude) > 1024 {
		return invalid("more than 1024 excluded providers")
	}
	if err := ValidateLabelRequirements(s.Labels); err != nil {
		return err
	}
	if s.Machine != nil {
		if err := s.Machine.Validate(); err != nil {
			return err
		}
	}
	if len(s.Name) > 256 {
		return invalid("name longer than 256 bytes")
	}
	if len(s.Stages) > 64 {
		return invalid("more than 64 stages")
	}
	names := map[string]bool{}
	for i, st := range s.Stages {
		if st.Name == "" {
			return invalid("stage %d has no name", i)
		}
		if names[st.Name] {
			return invalid("two stages are named %q", st.Name)
		}
		names[st.Name] = true
		if len(st.Cmd) == 0 {
			return invalid("stage %q has no command", st.Name)
		}
		if len(st.Cmd) > maxArgs || len(st.Env) > maxEnv {
			return invalid("stage %q has too many arguments or variables", st.Name)
		}
		for k := range st.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return invalid("stage %q: invalid environment variable name %q", st.Name, k)
			}
		}
	}
	if len(s.Artifacts) > 256 {
		return invalid("more than 256 artifacts")
	}
	for _, a := range s.Artifacts {
		if err := ValidateArtifact(a); err != nil {
			return err
		}
	}
	switch s.Isolation {
	case "":
	case IsolationGVisor:
		if s.RuntimeOrDefault() != "docker" {
			return invalid("isolation %q is for the docker runtime", s.Isolation)
		}
	default:
		return invalid("unknown isolation %q (want %q or nothing)", s.Isolation, IsolationGVisor)
	}
	switch s.Strategy {
	case "", "cheapest", "fastest", "reputation":
	default:
		return invalid("unknown strategy %q (want cheapest, fastest or reputation)", s.Strategy)
	}
	if len(s.Inputs) > maxInputs {
		return invalid("more than %d inputs", maxInputs)
	}
	seen := map[string]bool{}
	for _, in := range s.Inputs {
		if err := ValidCID(in.CID); err != nil {
			return invalid("input %s: %v", in.Path, err)
		}
		if err := ValidateMountPath(in.Path); err != nil {
			return err
		}
		if in.Size < 0 {
			return invalid("input %s: negative size %d", in.Path, in.Size)
		}
		if seen[in.Path] {
			return invalid("two inputs mounted at %s", in.Path)
		}
		seen[in.Path] = true
	}
	if s.ImageSize < 0 {
		return invalid("negative image size %d", s.ImageSize)
	}
	if s.ImageSize > 0 && !s.ImageIsCID() {
		return invalid("an image size is for an image given by CID, not %q", s.Image)
	}
	if err := s.validateService(); err != nil {
		return err
	}
	if rt == "wasm" {
		if err := ValidCID(s.Image); err != nil {
			return invalid("a wasm task's image must be the CID of a module: %v", err)
		}
	}
	return nil
}

// validateBuild checks what a build task cannot have.
func (s TaskSpec) validateBuild() error {
	switch {
	case s.Service || len(s.Stages) > 0 || len(s.Subtasks) > 0 || s.Each || s.Checkpoint != nil || len(s.Volumes) > 0 || s.Verify != nil:
		return invalid("a build is one run: no service, stages, subtasks, each, checkpoint, volumes or verify")
	case len(s.Entrypoint) > 0 || len(s.Cmd) > 1:
		return invalid("a build's command is at most the Dockerfile's path")
	case len(s.Artifacts) > 0:
		return invalid("a build's output is its image; it lists no artifacts")
	}
	return nil
}

// ImageIsCID reports whether the spec's image is content (a docker-save
// tarball or a WASM module by CID) rather than a local image reference.
func (s TaskSpec) ImageIsCID() bool {
	_, err := cid.Decode(s.Image)
	return err == nil && !strings.Contains(s.Image, ":") && !strings.Contains(s.Image, "/")
}

// Requirements are the part of a spec providers match on.
type Requirements struct {
	Runtime string `json:"runtime"`
	// Isolation is the task's TaskSpec.Isolation.
	Isolation string    `json:"isolation,omitempty"`
	Image     string    `json:"image"`
	Resources Resources `json:"resources"`
	TimeoutMS int64     `json:"timeout_ms"`
	MaxPrice  float64   `json:"max_price,omitempty"`
	Provider  string    `json:"provider,omitempty"`
	// Exclude lists providers that must not answer.
	Exclude []string `json:"exclude,omitempty"`
	// Inputs lists the CIDs the task reads, so providers can say how much
	// they already hold.
	Inputs []string `json:"inputs,omitempty"`
	// Service says the task is a long-running service (see TaskSpec).
	Service bool `json:"service,omitempty"`
	// GPU is the task's TaskSpec.GPU.
	GPU *GPURequirements `json:"gpu,omitempty"`
	// Labels are the task's TaskSpec.Labels.
	Labels map[string]string `json:"labels,omitempty"`
	// Machine is the task's TaskSpec.Machine.
	Machine *MachineRequirements `json:"machine,omitempty"`
}

// IsolationGVisor names gVisor (runsc) isolation in specs and adverts.
const IsolationGVisor = "gvisor"

// RequirementsOf extracts what providers need to see from a spec.
func RequirementsOf(s TaskSpec) Requirements {
	return Requirements{
		Runtime: s.RuntimeOrDefault(), Isolation: s.Isolation, Image: s.Image, Resources: s.Resources,
		TimeoutMS: s.TimeoutMS, MaxPrice: s.MaxPrice, Provider: s.Provider,
		Inputs: inputCIDs(s.Inputs), Exclude: s.Exclude, Service: s.Service, GPU: s.GPU,
		Labels: s.Labels, Machine: s.Machine,
	}
}

func inputCIDs(in []Input) []string {
	var out []string
	for _, i := range in {
		out = append(out, i.CID)
	}
	return out
}

// Announce is published on TopicTasks by a requestor looking for providers.
type Announce struct {
	Version int    `json:"v"`
	TaskID  string `json:"task"`
	// Attempt distinguishes announcements of the same task after a failover.
	Attempt   int          `json:"attempt"`
	Requestor string       `json:"requestor"`
	Req       Requirements `json:"req"`
	// BidDeadline (unix ms) is when the requestor stops taking bids.
	BidDeadline int64 `json:"bid_deadline"`
}

// Validate checks an announcement.
func (a *Announce) Validate() error {
	if a.Version != Version {
		return invalid("unsupported version %d", a.Version)
	}
	if err := validID(a.TaskID); err != nil {
		return err
	}
	if a.Attempt < 0 {
		return invalid("negative attempt")
	}
	if _, err := peer.Decode(a.Requestor); err != nil {
		return invalid("requestor %q is not a peer id", a.Requestor)
	}
	spec := TaskSpec{Runtime: a.Req.Runtime, Image: a.Req.Image, Resources: a.Req.Resources,
		TimeoutMS: a.Req.TimeoutMS, MaxPrice: a.Req.MaxPrice, Provider: a.Req.Provider, GPU: a.Req.GPU,
		Labels: a.Req.Labels, Machine: a.Req.Machine}
	if len(a.Req.Inputs) > maxInputs {
		return invalid("more than %d inputs", maxInputs)
	}
	for _, c := range a.Req.Inputs {
		if err := ValidCID(c); err != nil {
			return err
		}
	}
	return spec.Validate()
}

// Bid is a provider's answer to an announcement: an offer, or a decline
// with a reason (so that "nobody bid" never looks like "bids are slow").
type Bid struct {
	TaskID  string `json:"task"`
	Attempt int    `json:"attempt"`
	// Decline, when set, says why the provider will not run the task.
	Decline string `json:"decline,omitempty"`
	// Busy marks a decline for lack of free capacity right now: the
	// requestor may announce again later.
	Busy bool `json:"busy,omitempty"`
	// Price is credits per CPU-second.
	Price float64 `json:"price"`
	// MaxCost is Price times the requested CPUs times the timeout.
	MaxCost float64 `json:"max_cost"`
	// StartMS estimates how soon the task would start after an award.
	StartMS int64 `json:"start_ms"`
	// HasImage tells whether the image is already local to the provider.
	HasImage bool `json:"has_image"`
	// InputsLocal is the share (0..1) of the task's input bytes the
	// provider already holds.
	InputsLocal float64 `json:"inputs_local,omitempty"`
	// ReservationMS is how long the provider holds capacity for this bid.
	ReservationMS int64 `json:"reservation_ms"`
}

// Validate checks a bid.
func (b *Bid) Validate() error {
	if err := validID(b.TaskID); err != nil {
		return err
	}
	if b.Attempt < 0 {
		return invalid("negative attempt")
	}
	if len(b.Decline) > maxReasonLen {
		return invalid("decline reason longer than %d bytes", maxReasonLen)
	}
	if b.Price < 0 || b.MaxCost < 0 || b.StartMS < 0 || b.ReservationMS < 0 || badFloat(b.Price) || badFloat(b.MaxCost) ||
		badFloat(b.InputsLocal) || b.InputsLocal < 0 || b.InputsLocal > 1 {
		return invalid("negative price, cost, start or reservation")
	}
	return nil
}

// BidAck answers a Bid.
type BidAck struct {
	OK     bool    `json:"ok"`
	Code   AckCode `json:"code,omitempty"`
	Reason string  `json:"reason,omitempty"`
}

// Award gives the task to the provider whose bid won.
type Award struct {
	TaskID  string   `json:"task"`
	Attempt int      `json:"attempt"`
	Spec    TaskSpec `json:"spec"`
}

// Validate checks an award.
func (a *Award) Validate() error {
	if err := validID(a.TaskID); err != nil {
		return err
	}
	if a.Attempt < 0 {
		return invalid("negative attempt")
	}
	return a.Spec.Validate()
}

// AwardReply accepts or declines an award.
type AwardReply struct {
	Accepted bool    `json:"accepted"`
	Code     AckCode `json:"code,omitempty"`
	Reason   string  `json:"reason,omitempty"`
}

// Execution states reported by providers.
const (
	// ExecHeartbeat says the provider still holds the task (preparing or
	// running); it changes no state.
	ExecHeartbeat = "heartbeat"
	ExecRunning   = "running"
	ExecCompleted = "completed" // the workload ran to its own exit (any code)
	ExecFailed    = "failed"    // it could not run or was stopped (see Error)
)

// Usage mirrors executor.Usage on the wire.
type Usage struct {
	WallMS      int64 `json:"wall_ms"`
	CPUMS       int64 `json:"cpu_ms"`
	MaxRSSBytes int64 `json:"max_rss_bytes"`
}

// Result is what an execution produced.
type Result struct {
	ExitCode   int    `json:"exit_code"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	StdoutSize int64  `json:"stdout_size"`
	StderrSize int64  `json:"stderr_size"`
	Usage      Usage  `json:"usage"`
	Error      string `json:"error,omitempty"`
	// Retryable tells the requestor another provider might succeed (an
	// image this provider lacks, an engine that is down); a non-zero exit, a
	// timeout or running out of memory are not retryable.
	Retryable  bool      `json:"retryable,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Cost is what the provider charges: unit price times CPU seconds used.
	Cost float64 `json:"cost"`
	// Outputs is the root CID of what the task wrote to /outputs ("" when
	// it wrote nothing); the provider keeps it pinned until fetched.
	Outputs string `json:"outputs,omitempty"`
	// FetchMS is the time spent fetching and loading the image and inputs,
	// which does not count against the task's timeout.
	FetchMS int64 `json:"fetch_ms,omitempty"`
	// Stages reports each stage of a multi-stage task.
	Stages []StageResult `json:"stages,omitempty"`
	// Receipt is the provider's signed account of the execution.
	Receipt *SignedReceipt `json:"receipt,omitempty"`
	// Volumes are the new contents of the task's volumes (see service.go).
	Volumes []VolumeResult `json:"volumes,omitempty"`
}

// Report is sent by the provider running a task: a state change, and at the
// end the result. Reports are retried until acknowledged.
type Report struct {
	TaskID  string  `json:"task"`
	Attempt int     `json:"attempt"`
	State   string  `json:"state"`
	Message string  `json:"message,omitempty"`
	Result  *Result `json:"result,omitempty"`
	// Checkpoint, on a heartbeat, names the latest snapshot of the task's
	// checkpoint directory.
	Checkpoint *CheckpointRef `json:"checkpoint,omitempty"`
}

// Validate checks a report.
func (r *Report) Validate() error {
	if err := validID(r.TaskID); err != nil {
		return err
	}
	if r.Attempt < 0 {
		return invalid("negative attempt")
	}
	if r.Checkpoint != nil {
		if err := r.Checkpoint.Validate(); err != nil {
			return err
		}
	}
	switch r.State {
	case ExecRunning, ExecHeartbeat:
	case ExecCompleted, ExecFailed:
		if r.Result == nil {
			return invalid("%s report without a result", r.State)
		}
		if len(r.Result.Stdout) > maxOutputTail || len(r.Result.Stderr) > maxOutputTail {
			return invalid("output tail longer than %d bytes", maxOutputTail)
		}
		if len(r.Result.Error) > 4*maxReasonLen {
			return invalid("error longer than %d bytes", 4*maxReasonLen)
		}
	default:
		return invalid("unknown state %q", r.State)
	}
	if len(r.Message) > maxReasonLen {
		return invalid("message longer than %d bytes", maxReasonLen)
	}
	return nil
}

// Cancel asks the provider to stop a task.
type Cancel struct {
	TaskID  string `json:"task"`
	Attempt int    `json:"attempt"`
}

// Validate checks a cancel request.
func (c *Cancel) Validate() error { return validID(c.TaskID) }

// Ack acknowledges a Report or Cancel.
type Ack struct {
	OK bool `json:"ok"`
	// Code says why in a form a program decides on; Reason says it to a
	// person. An unknown code is treated as CodeRefused.
	Code   AckCode `json:"code,omitempty"`
	Reason string  `json:"reason,omitempty"`
	// Countersig, on the ack of a result, is the requestor's signature of
	// the result's receipt.
	Countersig []byte `json:"countersig,omitempty"`
}

// AckCode is the machine-readable answer of an Ack, BidAck or AwardReply.
// Peers decide on codes, never on reason strings.
type AckCode string

// Acknowledgement codes.
const (
	// CodeOK: taken.
	CodeOK AckCode = ""
	// CodeBadRequest: the message did not decode or validate.
	CodeBadRequest AckCode = "bad-request"
	// CodeUnknownTask: the receiver has no such task (for good: stop
	// sending).
	CodeUnknownTask AckCode = "unknown-task"
	// CodeNotAwarded: the sender was never awarded this task and attempt
	// (for good: stop sending).
	CodeNotAwarded AckCode = "not-awarded"
	// CodeNoLongerYours: the task moved on from the sender's attempt (it
	// was canceled, settled elsewhere or failed over): stop working on it;
	// a stale attempt never becomes current again (final).
	CodeNoLongerYours AckCode = "no-longer-yours"
	// CodeSettled: the task is already terminal; a result is acknowledged
	// with OK and this code so the provider clears its outbox.
	CodeSettled AckCode = "settled"
	// CodeAuctionClosed: the bid came after its auction ended.
	CodeAuctionClosed AckCode = "auction-closed"
	// CodeTooMany: the receiver's bound on such messages is reached.
	CodeTooMany AckCode = "too-many"
	// CodeNoReservation: an award without a live reservation for the
	// sender, task and attempt.
	CodeNoReservation AckCode = "no-reservation"
	// CodeRefused: refused for the reason given (policy, capacity, image).
	CodeRefused AckCode = "refused"
	// CodeInvalidReceipt: a result whose receipt does not verify.
	CodeInvalidReceipt AckCode = "invalid-receipt"
	// CodeRetryLater: the receiver could not take it now (a store
	// error); send again.
	CodeRetryLater AckCode = "retry-later"
)

// Final reports whether a refusal with this code will never change, so the
// sender should stop trying.
func (c AckCode) Final() bool {
	return c == CodeUnknownTask || c == CodeNotAwarded || c == CodeBadRequest || c == CodeInvalidReceipt || c == CodeNoLongerYours
}

// badFloat reports NaN and infinities, which JSON cannot carry and no
// price or share may be.
func badFloat(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }

func validID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return invalid("task id %q: empty or longer than %d bytes", id, maxIDLen)
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r == '-' || r == '_') {
			return invalid("task id %q has character %q", id, r)
		}
	}
	return nil
}

// Decode unmarshals data into a message and validates it. It is the single
// entry point for bytes that arrive from the network.
func Decode[T any, PT interface {
	*T
	Validate() error
}](data []byte) (*T, error) {
	v := PT(new(T))
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return (*T)(v), nil
}
