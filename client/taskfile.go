package client

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"

	"github.com/offload-project/offload/market/wire"
)

// MaxTaskFile bounds the size of a task file.
const MaxTaskFile = 1 << 20

// TaskFile is the YAML (or JSON) form of a task, for `offload submit -f`.
//
//	name: train
//	image: trainer:1            # or an image CID; a module CID with runtime: wasm
//	runtime: docker             # docker (default) or wasm
//	resources: {cpus: 2, memory: 1g, gpus: 0}
//	labels: {fpga: xilinx}      # only providers with these labels ("*": any value)
//	machine: {arch: arm64, cpu_model: epyc, cpus: 16, memory: 64g}   # the whole machine
//	timeout: 10m
//	max_price: 0.5
//	inputs:
//	  - {cid: bafy..., path: /inputs/data}
//	  - {local: ./data, path: /inputs/more}   # added as content first
//	stages:
//	  - {name: prepare, command: [/app, prep]}
//	  - {name: train, command: [/app, train], env: {EPOCHS: "3"}, continue_on_error: false}
//	artifacts: [/outputs/model.bin]
type TaskFile struct {
	Name       string            `yaml:"name"`
	Runtime    string            `yaml:"runtime"`
	Isolation  string            `yaml:"isolation"`
	Image      string            `yaml:"image"`
	Entrypoint []string          `yaml:"entrypoint"`
	Command    []string          `yaml:"command"`
	Env        map[string]string `yaml:"env"`
	Workdir    string            `yaml:"workdir"`
	Resources  struct {
		CPUs   float64 `yaml:"cpus"`
		Memory string  `yaml:"memory"`
		GPUs   int     `yaml:"gpus"`
	} `yaml:"resources"`
	Timeout    string  `yaml:"timeout"`
	MaxPrice   float64 `yaml:"max_price"`
	Retries    *int    `yaml:"retries"`
	Strategy   string  `yaml:"strategy"`
	Redundancy int     `yaml:"redundancy"`
	Each       bool    `yaml:"each"`
	// Labels: provider labels the task needs (wire.TaskSpec.Labels):
	// {fpga: xilinx}, or {fpga: "*"} for any value.
	Labels map[string]string `yaml:"labels"`
	// Machine: what the provider's whole machine must be or have
	// (wire.TaskSpec.Machine): {os, arch, cpu_model, cpus, memory}.
	Machine *struct {
		OS       string `yaml:"os"`
		Arch     string `yaml:"arch"`
		CPUModel string `yaml:"cpu_model"`
		CPUs     int    `yaml:"cpus"`
		Memory   string `yaml:"memory"`
	} `yaml:"machine"`
	GPU *struct {
		Vendor  string   `yaml:"vendor"`
		Models  []string `yaml:"models"`
		Memory  string   `yaml:"memory"`
		Compute string   `yaml:"compute"`
		CUDA    string   `yaml:"cuda"`
	} `yaml:"gpu"`
	Checkpoint *struct {
		Path  string `yaml:"path"`
		Every string `yaml:"every"`
	} `yaml:"checkpoint"`
	Provider  string      `yaml:"provider"`
	ImageSize string      `yaml:"image_size"`
	Inputs    []FileInput `yaml:"inputs"`
	Stages    []struct {
		Name            string            `yaml:"name"`
		Command         []string          `yaml:"command"`
		Env             map[string]string `yaml:"env"`
		ContinueOnError bool              `yaml:"continue_on_error"`
	} `yaml:"stages"`
	Artifacts []string `yaml:"artifacts"`
	Subtasks  []struct {
		Name    string            `yaml:"name"`
		Command []string          `yaml:"command"`
		Env     map[string]string `yaml:"env"`
		Inputs  []FileInput       `yaml:"inputs"`
	} `yaml:"subtasks"`
	Verify *struct {
		Runtime string   `yaml:"runtime"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Timeout string   `yaml:"timeout"`
	} `yaml:"verify"`

	source []byte
}

// FileInput is an input by CID, or a local path added as content before
// the task is submitted.
type FileInput struct {
	CID   string `yaml:"cid"`
	Local string `yaml:"local"`
	Path  string `yaml:"path"`
	// Size is the input's declared size (bytes, or 512k, 2g ...): the
	// size of its DAG, which bounds what a provider fetches. The node
	// fills it for content it holds; a CID held elsewhere may declare it.
	Size string `yaml:"size"`
}

// TaskFileError is a task file problem with where it is.
type TaskFileError struct {
	Msg    string
	Source string // the annotated lines of the file, when known
}

func (e *TaskFileError) Error() string {
	if e.Source == "" {
		return "task file: " + e.Msg
	}
	return "task file: " + e.Msg + "\n" + e.Source
}

// ParseTaskFile parses and checks a task file. Errors name the line.
func ParseTaskFile(data []byte) (*TaskFile, error) {
	if len(data) > MaxTaskFile {
		return nil, &TaskFileError{Msg: fmt.Sprintf("larger than %d bytes", MaxTaskFile)}
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil, &TaskFileError{Msg: "empty"}
	}
	var tf TaskFile
	if err := decodeYAML(data, &tf); err != nil {
		return nil, err
	}
	tf.source = data
	if _, err := tf.Spec(nil); err != nil {
		return nil, err
	}
	return &tf, nil
}

// decodeYAML decodes strictly. The YAML library can panic on some malformed
// input (fuzzing found tagged sequences that crash it): that is reported as
// a malformed file, never a crash.
func decodeYAML(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &TaskFileError{Msg: fmt.Sprintf("malformed YAML (the parser gave up: %v)", r)}
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, v, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
		return &TaskFileError{Msg: yaml.FormatError(err, false, true)}
	}
	return nil
}

// at annotates the file around a YAML path such as "$.resources.memory".
func (tf *TaskFile) at(path, format string, a ...any) error {
	e := &TaskFileError{Msg: fmt.Sprintf(format, a...)}
	tf.annotate(e, path)
	return e
}

// annotate adds the line and the surrounding source, best effort.
func (tf *TaskFile) annotate(e *TaskFileError, path string) {
	defer func() { _ = recover() }()
	if p, err := yaml.PathString(path); err == nil && tf.source != nil {
		if f, err := parser.ParseBytes(tf.source, 0); err == nil {
			if n, err := p.FilterFile(f); err == nil && n != nil {
				e.Msg = fmt.Sprintf("line %d: %s", n.GetToken().Position.Line, e.Msg)
				if src, err := p.AnnotateSource(tf.source, false); err == nil {
					e.Source = string(src)
				}
			}
		}
	}
}

// LocalInputs lists the local paths the file wants added as content, by
// the index of the input they fill (subtask inputs as "s<N>.<I>").
func (tf *TaskFile) LocalInputs() map[string]string {
	out := map[string]string{}
	for i, in := range tf.Inputs {
		if in.Local != "" {
			out[fmt.Sprint(i)] = in.Local
		}
	}
	for s, st := range tf.Subtasks {
		for i, in := range st.Inputs {
			if in.Local != "" {
				out[fmt.Sprintf("s%d.%d", s, i)] = in.Local
			}
		}
	}
	return out
}

// Spec builds the task spec. added maps LocalInputs keys to the CIDs they
// were added as; inputs with a local path and no CID yet get a placeholder
// CID only for validation (nil added).
func (tf *TaskFile) Spec(added map[string]string) (wire.TaskSpec, error) {
	spec := wire.TaskSpec{
		Name: tf.Name, Runtime: tf.Runtime, Isolation: tf.Isolation, Image: tf.Image, Entrypoint: tf.Entrypoint, Cmd: tf.Command,
		Env: tf.Env, WorkDir: tf.Workdir, MaxPrice: tf.MaxPrice, Strategy: tf.Strategy,
		Redundancy: tf.Redundancy, Provider: tf.Provider, Artifacts: tf.Artifacts, Retries: tf.Retries,
		Resources: wire.Resources{CPUs: tf.Resources.CPUs, GPUs: tf.Resources.GPUs}, Each: tf.Each,
		Labels: tf.Labels,
	}
	if g := tf.GPU; g != nil {
		r := &wire.GPURequirements{Vendor: g.Vendor, Models: g.Models, Compute: g.Compute, CUDA: g.CUDA}
		if g.Memory != "" {
			m, err := units.RAMInBytes(g.Memory)
			if err != nil || m <= 0 {
				return spec, tf.at("$.gpu.memory", "gpu memory %q is not a size (try 40g)", g.Memory)
			}
			r.MemoryBytes = m
		}
		spec.GPU = r
		if spec.Resources.GPUs == 0 {
			spec.Resources.GPUs = 1
		}
	}
	if m := tf.Machine; m != nil {
		spec.Machine = &wire.MachineRequirements{OS: m.OS, Arch: m.Arch, CPUModel: m.CPUModel, CPUs: m.CPUs}
		if m.Memory != "" {
			b, err := units.RAMInBytes(m.Memory)
			if err != nil || b <= 0 {
				return spec, tf.at("$.machine.memory", "machine memory %q is not a size (try 64g)", m.Memory)
			}
			spec.Machine.MemoryBytes = b
		}
	}
	if cp := tf.Checkpoint; cp != nil {
		every := 5 * time.Minute
		if cp.Every != "" {
			d, err := time.ParseDuration(cp.Every)
			if err != nil || d <= 0 {
				return spec, tf.at("$.checkpoint.every", "checkpoint interval %q is not a positive duration (try 30s or 5m)", cp.Every)
			}
			every = d
		}
		spec.Checkpoint = &wire.Checkpoint{Path: cp.Path, EveryMS: every.Milliseconds()}
	}
	if tf.Image == "" {
		return spec, tf.at("$", "image is required")
	}
	if tf.Resources.Memory != "" {
		m, err := units.RAMInBytes(tf.Resources.Memory)
		if err != nil || m <= 0 {
			return spec, tf.at("$.resources.memory", "memory %q is not a size (try 512m or 2g)", tf.Resources.Memory)
		}
		spec.Resources.MemoryBytes = m
	}
	if tf.ImageSize != "" {
		n, err := units.RAMInBytes(tf.ImageSize)
		if err != nil || n <= 0 {
			return spec, tf.at("$.image_size", "image size %q is not a size (try 1048576, 512m or 2g)", tf.ImageSize)
		}
		spec.ImageSize = n
	}
	if tf.Timeout != "" {
		d, err := time.ParseDuration(tf.Timeout)
		if err != nil || d <= 0 {
			return spec, tf.at("$.timeout", "timeout %q is not a positive duration (try 30s or 5m)", tf.Timeout)
		}
		spec.TimeoutMS = d.Milliseconds()
	}
	in := func(path string, key string, fi FileInput) (wire.Input, error) {
		switch {
		case fi.CID != "" && fi.Local != "":
			return wire.Input{}, tf.at(path, "an input has either cid or local, not both")
		case fi.CID == "" && fi.Local == "":
			return wire.Input{}, tf.at(path, "an input needs cid or local")
		case fi.Path == "":
			return wire.Input{}, tf.at(path, "an input needs a path inside the task")
		}
		c := fi.CID
		if fi.Local != "" {
			c = added[key]
			if c == "" {
				c = "bafkqaaa" // the empty identity CID: a stand-in until added
			}
		}
		var size int64
		if fi.Size != "" {
			n, err := units.RAMInBytes(fi.Size)
			if err != nil || n <= 0 {
				return wire.Input{}, tf.at(path, "input size %q is not a size (try 1048576, 512k or 2g)", fi.Size)
			}
			size = n
		}
		return wire.Input{CID: c, Path: fi.Path, Size: size}, nil
	}
	for i, fi := range tf.Inputs {
		x, err := in(fmt.Sprintf("$.inputs[%d]", i), fmt.Sprint(i), fi)
		if err != nil {
			return spec, err
		}
		spec.Inputs = append(spec.Inputs, x)
	}
	for _, st := range tf.Stages {
		spec.Stages = append(spec.Stages, wire.Stage{Name: st.Name, Cmd: st.Command, Env: st.Env, ContinueOnError: st.ContinueOnError})
	}
	for s, st := range tf.Subtasks {
		sub := wire.Subtask{Name: st.Name, Cmd: st.Command, Env: st.Env}
		for i, fi := range st.Inputs {
			x, err := in(fmt.Sprintf("$.subtasks[%d].inputs[%d]", s, i), fmt.Sprintf("s%d.%d", s, i), fi)
			if err != nil {
				return spec, err
			}
			sub.Inputs = append(sub.Inputs, x)
		}
		spec.Subtasks = append(spec.Subtasks, sub)
	}
	if v := tf.Verify; v != nil {
		spec.Verify = &wire.Verify{Runtime: v.Runtime, Image: v.Image, Cmd: v.Command}
		if v.Timeout != "" {
			d, err := time.ParseDuration(v.Timeout)
			if err != nil || d <= 0 {
				return spec, tf.at("$.verify.timeout", "verify timeout %q is not a positive duration", v.Timeout)
			}
			spec.Verify.TimeoutMS = d.Milliseconds()
		}
	}
	if err := spec.Validate(); err != nil {
		return spec, tf.at(pathOf(err), "%s", strings.TrimPrefix(err.Error(), wire.ErrInvalid.Error()+": "))
	}
	return spec, nil
}

// pathOf guesses the YAML path a validation error is about, so the message
// can point at the line.
func pathOf(err error) string {
	msg := err.Error()
	for _, k := range []struct{ word, path string }{
		{"stage", "$.stages"}, {"artifact", "$.artifacts"}, {"input", "$.inputs"}, {"mount path", "$.inputs"},
		{"subtask", "$.subtasks"}, {"verify", "$.verify"}, {"cpus", "$.resources.cpus"}, {"gpus", "$.resources.gpus"},
		{"runtime", "$.runtime"}, {"strategy", "$.strategy"}, {"redundancy", "$.redundancy"}, {"retries", "$.retries"},
		{"provider", "$.provider"}, {"image", "$.image"}, {"environment", "$.env"}, {"price", "$.max_price"},
	} {
		if strings.Contains(msg, k.word) {
			return k.path
		}
	}
	return "$"
}

// ResolveLocal makes a local input path absolute relative to the task
// file's directory.
func ResolveLocal(taskFile, local string) string {
	if filepath.IsAbs(local) {
		return local
	}
	return filepath.Join(filepath.Dir(taskFile), local)
}
