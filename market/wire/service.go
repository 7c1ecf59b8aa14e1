package wire

import (
	"regexp"
	"slices"
	"time"
)

// Services, sessions and portable volumes.
//
// A task with Service set is long-running: it lives until its timeout (then
// it is stopped and completes with exit code 0) or until it is canceled; it
// ends earlier only when its process exits. Ports lists the TCP ports it
// listens on; its requestor reaches them through ProtoTunnel streams and
// runs commands in it through ProtoExec streams. A service still has no
// route to any outside network: the provider puts it on an internal network
// of the requestor's Namespace, where the requestor's other services of
// that namespace reach it by its Name (or task id). A service without a
// namespace gets a network of its own; the namespace of a task that is not
// a service has no effect.
//
// A Volume is a writable directory that follows the requestor: the provider
// fetches it by CID ("" for a new, empty volume), mounts it at Path, and
// after a run that exits 0 adds its new content and returns the CID in
// Result.Volumes. The requestor swaps its name to the new CID only once the
// whole new content is local, so a volume is never half-updated.
//
// NotBefore (unix milliseconds) holds a task on its requestor until then.

// Protocol IDs of live tasks.
const (
	// ProtoTunnel: requestor -> provider, one TunnelRequest answered by one
	// TunnelReply; when accepted, the stream then carries the bytes of one
	// TCP connection to the service's port, both ways.
	ProtoTunnel = "/offload/tunnel/1"
	// ProtoExec: requestor -> provider, one ExecRequest answered by
	// ExecFrames (output as it comes) and a last frame with Exit set or
	// Error set.
	ProtoExec = "/offload/exec/1"
)

// Size limits of the live-task messages.
const (
	MaxTunnelRequestSize = 4 << 10
	MaxExecRequestSize   = 256 << 10
	// MaxExecFrameSize bounds one output frame (ExecChunk bytes of output
	// plus JSON and base64 overhead).
	MaxExecFrameSize = 64 << 10
	// ExecChunk is the most output bytes one ExecFrame carries.
	ExecChunk = 32 << 10
)

// Limits of services and volumes.
const (
	MaxPorts   = 16
	MaxVolumes = 16
	// MaxSchedule is how far ahead NotBefore may be.
	MaxSchedule = 30 * 24 * time.Hour
)

// nameRE is what namespace and volume names look like: DNS-label-like, so
// that a task name can also be an alias on the namespace's network.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// ValidName reports whether s can name a namespace or a volume.
func ValidName(s string) error {
	if !nameRE.MatchString(s) {
		return invalid("name %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", s)
	}
	return nil
}

// Volume is a writable directory mounted at Path, tracked by name on the
// requestor and carried by CID (empty for a new volume).
type Volume struct {
	Name string `json:"name"`
	Path string `json:"path"`
	CID  string `json:"cid,omitempty"`
	// Size, when positive, is the declared size of the volume's content
	// (see Input.Size): a volume is carried by CID like an input, so the
	// provider bounds its fetch the same way. The requestor fills it when
	// it resolves the volume's CID (it holds the content it tracks).
	Size int64 `json:"size,omitempty"`
}

// VolumeResult is a volume's content after a run.
type VolumeResult struct {
	Name string `json:"name"`
	CID  string `json:"cid"`
	Size int64  `json:"size"`
}

// validateService checks the service, namespace, volume and schedule
// fields of a spec.
func (s TaskSpec) validateService() error {
	if len(s.Ports) > 0 && !s.Service {
		return invalid("ports need a service (--service)")
	}
	if len(s.Ports) > MaxPorts {
		return invalid("more than %d ports", MaxPorts)
	}
	for i, p := range s.Ports {
		if p < 1 || p > 65535 {
			return invalid("port %d out of range (1..65535)", p)
		}
		if slices.Contains(s.Ports[:i], p) {
			return invalid("port %d listed twice", p)
		}
	}
	if s.Service {
		if s.RuntimeOrDefault() != "docker" {
			return invalid("a service needs the docker runtime")
		}
		if len(s.Stages) > 0 || len(s.Subtasks) > 0 || s.Redundancy > 1 {
			return invalid("a service cannot have stages, subtasks or redundancy")
		}
	}
	if s.Namespace != "" {
		if err := ValidName(s.Namespace); err != nil {
			return invalid("namespace: %v", err)
		}
	}
	if len(s.Volumes) > MaxVolumes {
		return invalid("more than %d volumes", MaxVolumes)
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for _, in := range s.Inputs {
		paths[in.Path] = true
	}
	for _, v := range s.Volumes {
		if err := ValidName(v.Name); err != nil {
			return invalid("volume: %v", err)
		}
		if err := ValidateMountPath(v.Path); err != nil {
			return invalid("volume %s: %v", v.Name, err)
		}
		if v.Path == WorkPath {
			return invalid("volume %s: %s is the stages' work dir", v.Name, WorkPath)
		}
		if v.CID != "" {
			if err := ValidCID(v.CID); err != nil {
				return invalid("volume %s: %v", v.Name, err)
			}
		}
		if v.Size < 0 {
			return invalid("volume %s: negative size %d", v.Name, v.Size)
		}
		if names[v.Name] || paths[v.Path] {
			return invalid("volume %s: name or path %s used twice", v.Name, v.Path)
		}
		names[v.Name], paths[v.Path] = true, true
	}
	if len(s.Volumes) > 0 && (len(s.Subtasks) > 0 || s.Redundancy > 1) {
		return invalid("volumes cannot be combined with subtasks or redundancy (which copy would win?)")
	}
	if s.NotBefore < 0 || s.NotBefore > time.Now().Add(MaxSchedule).UnixMilli() {
		return invalid("start time out of range (at most %s ahead)", MaxSchedule)
	}
	return nil
}

// TunnelRequest opens a tunnel to one port of a running service.
type TunnelRequest struct {
	TaskID  string `json:"task"`
	Attempt int    `json:"attempt"`
	Port    int    `json:"port"`
}

// Validate checks a tunnel request.
func (r *TunnelRequest) Validate() error {
	if err := validID(r.TaskID); err != nil {
		return err
	}
	if r.Attempt < 0 {
		return invalid("negative attempt")
	}
	if r.Port < 1 || r.Port > 65535 {
		return invalid("port %d out of range", r.Port)
	}
	return nil
}

// TunnelReply accepts or refuses a tunnel, with the reason.
type TunnelReply struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// Validate checks a tunnel reply.
func (r *TunnelReply) Validate() error {
	if len(r.Reason) > maxReasonLen {
		return invalid("reason longer than %d bytes", maxReasonLen)
	}
	return nil
}

// ExecRequest runs a command inside a running service.
type ExecRequest struct {
	TaskID  string   `json:"task"`
	Attempt int      `json:"attempt"`
	Cmd     []string `json:"cmd"`
}

// Validate checks an exec request.
func (r *ExecRequest) Validate() error {
	if err := validID(r.TaskID); err != nil {
		return err
	}
	if r.Attempt < 0 {
		return invalid("negative attempt")
	}
	if len(r.Cmd) == 0 || len(r.Cmd) > maxArgs {
		return invalid("command needs 1..%d arguments", maxArgs)
	}
	for _, a := range r.Cmd {
		if len(a) > maxArgLen {
			return invalid("argument longer than %d bytes", maxArgLen)
		}
	}
	return nil
}

// ExecFrame is one frame of an exec's answer: output, or the end (Exit
// set), or a refusal or failure (Error set, Exit nil).
type ExecFrame struct {
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
	Exit   *int   `json:"exit,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Validate checks an exec frame.
func (f *ExecFrame) Validate() error {
	if len(f.Stdout) > ExecChunk || len(f.Stderr) > ExecChunk {
		return invalid("output frame longer than %d bytes", ExecChunk)
	}
	if len(f.Error) > 4*maxReasonLen {
		return invalid("error longer than %d bytes", 4*maxReasonLen)
	}
	return nil
}
