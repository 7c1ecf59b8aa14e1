package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market/wire"
)

type runFlags struct {
	checkpoint, gpuMemory, gpuCompute, cuda, gpuModel, gpuVendor                        string
	machineOS, machineArch, cpuModel, machineMemory                                     string
	machineCPUs                                                                         int
	checkpointEvery                                                                     time.Duration
	image, runtime, isolation, entrypoint, workdir, memory, timeout, provider, strategy string
	env, inputs, labels                                                                 []string
	cpus, maxPrice                                                                      float64
	gpus, retries, redundancy                                                           int
	wait, asJSON, each                                                                  bool
	svc                                                                                 serviceFlags // runservice.go
}

func newRunCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --image REF [flags] -- CMD ARGS...",
		Short: "Run a task on the swarm",
		Long: `Run a task on a provider of the swarm.

Everything after -- replaces the image's command; --entrypoint overrides its
entrypoint. Without --wait the task id is printed as soon as the task is
stored; with --wait the command follows the task and prints its result, and
exits non-zero unless the task completed with exit code 0.`,
		Example: `  offload run --image hello:1 --wait -- /hello echo hi
  offload run --image alpine:3 --cpus 2 --memory 1g --timeout 5m --wait --json -- sh -c 'nproc'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.spec(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.Submit(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if !f.wait {
				if f.asJSON {
					return printJSON(cmd.OutOrStdout(), map[string]string{"id": t.ID})
				}
				fmt.Fprintln(cmd.OutOrStdout(), t.ID)
				return nil
			}
			return follow(cmd, c, t.ID, f.asJSON)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "container image: a reference local to providers, or a CID from `offload image push`; with --runtime wasm, a module CID")
	fl.StringVar(&f.runtime, "runtime", "docker", "runtime: docker or wasm")
	fl.StringVar(&f.isolation, "isolation", "", "stronger sandbox: gvisor (docker tasks without network; only providers offering it bid)")
	fl.StringArrayVar(&f.env, "env", nil, "environment variable K=V (repeatable)")
	fl.StringArrayVar(&f.inputs, "input", nil, "content mounted read-only: CID:/path (repeatable)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.StringVar(&f.workdir, "workdir", "", "working directory inside the task")
	fl.Float64Var(&f.cpus, "cpus", 0, "CPUs (default 1)")
	fl.StringVar(&f.memory, "memory", "", "memory limit, e.g. 512m, 2g (default 512m)")
	fl.IntVar(&f.gpus, "gpus", 0, "GPUs (1 when a --gpu-* or --cuda requirement is given)")
	fl.StringVar(&f.gpuMemory, "gpu-memory", "", "at least SIZE of memory on each GPU (e.g. 40g)")
	fl.StringVar(&f.gpuCompute, "gpu-compute", "", "at least this compute capability on each GPU (e.g. 8.0)")
	fl.StringVar(&f.cuda, "cuda", "", "at least this CUDA version supported by the provider's driver (e.g. 12.2)")
	fl.StringVar(&f.gpuModel, "gpu-model", "", "GPU models, any of (case-insensitive substrings, comma-separated, e.g. H100,H200)")
	fl.StringVar(&f.gpuVendor, "gpu-vendor", "", "GPU vendor (e.g. nvidia)")
	fl.StringVar(&f.machineOS, "os", "", "run only on a provider whose machine runs this OS (e.g. linux)")
	fl.StringVar(&f.machineArch, "arch", "", "run only on a provider whose machine has this architecture (amd64 or x86_64, arm64 or aarch64, ...)")
	fl.StringVar(&f.cpuModel, "cpu-model", "", "run only on a provider whose CPU model contains this, case-insensitively (e.g. epyc)")
	fl.IntVar(&f.machineCPUs, "machine-cpus", 0, "run only on a provider whose machine has at least N CPUs (whatever part it offers; --cpus is what the task reserves)")
	fl.StringVar(&f.machineMemory, "machine-memory", "", "run only on a provider whose machine has at least SIZE of memory (e.g. 64g; --memory is what the task reserves)")
	fl.StringArrayVar(&f.labels, "label", nil, "run only on providers with this label: KEY=VALUE, or KEY for any value (repeatable; e.g. --label fpga=xilinx)")
	fl.StringVar(&f.timeout, "timeout", "10m", "execution time limit, e.g. 30s, 5m")
	fl.Float64Var(&f.maxPrice, "max-price", 0, "maximum price in credits per CPU-second (0: no cap)")
	fl.IntVar(&f.retries, "retries", wire.DefaultRetries, "how many other providers to try after a retryable failure")
	fl.StringVar(&f.provider, "provider", "", "run only on this provider (peer id)")
	fl.StringVar(&f.strategy, "strategy", "cheapest", "bid selection: cheapest, fastest or reputation")
	fl.IntVar(&f.redundancy, "redundancy", 1, "run on N distinct providers; complete only if their results agree")
	fl.StringVar(&f.checkpoint, "checkpoint", "", "a directory in the sandbox the task keeps its state in: snapshot every --checkpoint-every; a task moved to another provider resumes from the latest snapshot")
	fl.DurationVar(&f.checkpointEvery, "checkpoint-every", 5*time.Minute, "how often the --checkpoint directory is snapshot (the task can also ask by writing "+wire.CheckpointMarker+" there)")
	fl.BoolVar(&f.each, "each", false, "run once on every provider that matches now, each run with its own result (see 'offload status')")
	fl.BoolVar(&f.wait, "wait", false, "wait for the result")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	f.svc.register(fl)
	return cmd
}

// spec turns flags into a task spec, refusing bad values before anything
// is submitted.
func (f *runFlags) spec(args []string) (wire.TaskSpec, error) {
	spec := wire.TaskSpec{
		Runtime: f.runtime, Isolation: f.isolation, Image: f.image, Cmd: args, WorkDir: f.workdir,
		Resources: wire.Resources{CPUs: f.cpus, GPUs: f.gpus},
		MaxPrice:  f.maxPrice, Retries: wire.Retries(f.retries), Provider: f.provider,
		Strategy: f.strategy, Redundancy: f.redundancy, Each: f.each,
	}
	if f.gpuMemory != "" || f.gpuCompute != "" || f.cuda != "" || f.gpuModel != "" || f.gpuVendor != "" {
		r := &wire.GPURequirements{Vendor: f.gpuVendor, Compute: f.gpuCompute, CUDA: f.cuda}
		if f.gpuMemory != "" {
			m, err := units.RAMInBytes(f.gpuMemory)
			if err != nil || m <= 0 {
				return spec, fmt.Errorf("--gpu-memory %q is not a size (try 40g)", f.gpuMemory)
			}
			r.MemoryBytes = m
		}
		for _, m := range strings.Split(f.gpuModel, ",") {
			if m = strings.TrimSpace(m); m != "" {
				r.Models = append(r.Models, m)
			}
		}
		spec.GPU = r
		if spec.Resources.GPUs == 0 {
			spec.Resources.GPUs = 1
		}
	}
	if f.machineOS != "" || f.machineArch != "" || f.cpuModel != "" || f.machineCPUs != 0 || f.machineMemory != "" {
		m := &wire.MachineRequirements{OS: f.machineOS, Arch: f.machineArch, CPUModel: f.cpuModel, CPUs: f.machineCPUs}
		if f.machineMemory != "" {
			b, err := units.RAMInBytes(f.machineMemory)
			if err != nil || b <= 0 {
				return spec, fmt.Errorf("--machine-memory %q is not a size (try 64g)", f.machineMemory)
			}
			m.MemoryBytes = b
		}
		spec.Machine = m
	}
	var err error
	if spec.Labels, err = labelFlags(f.labels); err != nil {
		return spec, err
	}
	if f.checkpoint != "" {
		spec.Checkpoint = &wire.Checkpoint{Path: f.checkpoint, EveryMS: f.checkpointEvery.Milliseconds()}
	}
	if f.image == "" {
		return spec, fmt.Errorf("--image is required (a local image reference on the provider, e.g. --image hello:1)")
	}
	if f.entrypoint != "" {
		spec.Entrypoint = []string{f.entrypoint}
	}
	if f.memory != "" {
		m, err := units.RAMInBytes(f.memory)
		if err != nil || m <= 0 {
			return spec, fmt.Errorf("--memory %q is not a size (try 512m or 2g)", f.memory)
		}
		spec.Resources.MemoryBytes = m
	}
	if f.timeout != "" {
		d, err := time.ParseDuration(f.timeout)
		if err != nil || d <= 0 {
			return spec, fmt.Errorf("--timeout %q is not a positive duration (try 30s or 5m)", f.timeout)
		}
		spec.TimeoutMS = d.Milliseconds()
	}
	if len(f.env) > 0 {
		spec.Env = map[string]string{}
		for _, kv := range f.env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return spec, fmt.Errorf("--env %q is not K=V", kv)
			}
			spec.Env[k] = v
		}
	}
	for _, in := range f.inputs {
		c, p, ok := strings.Cut(in, ":")
		if !ok || c == "" || p == "" {
			return spec, fmt.Errorf("--input %q is not CID:/path", in)
		}
		spec.Inputs = append(spec.Inputs, wire.Input{CID: c, Path: p})
	}
	if err := f.svc.apply(&spec); err != nil {
		return spec, err
	}
	if err := spec.Validate(); err != nil {
		return spec, err
	}
	return spec, nil
}

// follow streams the task's state changes to stderr until it ends, then
// prints the result.
func follow(cmd *cobra.Command, c *client.Client, id string, asJSON bool) error {
	stderr := cmd.ErrOrStderr()
	last := ""
	t, err := c.Watch(cmd.Context(), id, func(t *client.Task) error {
		if !asJSON && t.State != last {
			line := t.State
			if t.Reason != "" {
				line += ": " + t.Reason
			}
			fmt.Fprintf(stderr, "[%s] %s\n", id, line)
			last = t.State
		}
		return nil
	})
	if err != nil {
		return err
	}
	return printResult(cmd.OutOrStdout(), stderr, t, asJSON)
}

func printResult(stdout, stderr io.Writer, t *client.Task, asJSON bool) error {
	if asJSON {
		if err := printJSON(stdout, t); err != nil {
			return err
		}
	} else {
		io.WriteString(stdout, t.Stdout)
		io.WriteString(stderr, t.Stderr)
		if t.Error != "" {
			fmt.Fprintf(stderr, "task %s %s: %s\n", t.ID, t.State, t.Error)
		}
	}
	if t.State != "completed" {
		return &exitError{code: 1}
	}
	return nil
}

// labelFlags turns --label KEY[=VALUE] flags into a task's label
// requirements (nil for none).
func labelFlags(flags []string) (map[string]string, error) {
	var out map[string]string
	for _, l := range flags {
		k, v, err := wire.ParseLabelRequirement(l)
		if err != nil {
			return nil, fmt.Errorf("--label: %w", err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out, nil
}
