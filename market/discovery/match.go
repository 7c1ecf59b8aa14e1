package discovery

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/offload-project/offload/market/wire"
)

// Any is the filter value that matches everything (as in HWF's hardware
// dict); an empty value means the same.
const Any = "any"

// PoolFilter selects providers from the pool. Zero numbers and empty or
// "any" strings match everything.
type PoolFilter struct {
	// CPUs, MemoryBytes: at least this much, in the machine or in what the
	// provider offers (whichever is larger).
	CPUs        float64
	MemoryBytes int64
	// GPUs: at least this many GPUs (of GPUModel when it is set).
	GPUs int
	// GPUModel matches a GPU whose model contains it, case-insensitively
	// ("h100" matches "NVIDIA H100 80GB HBM3").
	GPUModel string
	// GPU are typed requirements each of the GPUs must meet as well
	// (memory, compute capability, CUDA version, models, vendor).
	GPU *wire.GPURequirements
	// Arch and OS match exactly, case-insensitively; x86_64 is amd64 and
	// aarch64 is arm64.
	Arch string
	OS   string
	// Executor must be among the provider's executors.
	Executor string
	// Isolation must be among the provider's isolation kinds ("gvisor").
	Isolation string
	// Labels must all be present with these values; a value "any" matches
	// every provider.
	Labels map[string]string
	// Needs are a task's label requirements (wire.LabelsUnmet): each label
	// present, with the value asked unless that is wire.LabelAny or empty.
	Needs map[string]string
	// Machine are a task's requirements of the whole machine
	// (wire.MachineUnmet).
	Machine *wire.MachineRequirements
}

func isAny(s string) bool { return s == "" || strings.EqualFold(s, Any) }

// Match reports whether rec satisfies every set field of f.
func (f PoolFilter) Match(rec *wire.CapRecord) bool { return f.Why(rec) == "" }

// Why returns "" when rec satisfies every set field of f, else the first
// requirement it fails, said for a person ("memory 24 GiB < 40 GiB").
func (f PoolFilter) Why(rec *wire.CapRecord) string {
	hw := &rec.Hardware
	if f.CPUs > 0 && float64(hw.CPUs) < f.CPUs && rec.Capacity.CPUs < f.CPUs {
		return fmt.Sprintf("%d CPUs < %g", hw.CPUs, f.CPUs)
	}
	if f.MemoryBytes > 0 && hw.MemoryBytes < f.MemoryBytes && rec.Capacity.MemoryBytes < f.MemoryBytes {
		return fmt.Sprintf("memory %d MiB < %d MiB", hw.MemoryBytes>>20, f.MemoryBytes>>20)
	}
	if f.GPUs > 0 || !isAny(f.GPUModel) || f.GPU != nil {
		req := f.GPU
		if !isAny(f.GPUModel) {
			r := wire.GPURequirements{}
			if req != nil {
				r = *req
			}
			r.Models = append(slices.Clone(r.Models), f.GPUModel)
			req = &r
		}
		if _, why := wire.MatchGPUs(hw.GPUs, max(f.GPUs, 1), req); why != "" {
			return why
		}
	}
	if !isAny(f.Arch) && wire.NormArch(f.Arch) != wire.NormArch(hw.Arch) {
		return "arch " + hw.Arch + ", not " + f.Arch
	}
	if !isAny(f.OS) && !strings.EqualFold(f.OS, hw.OS) {
		return "os " + hw.OS + ", not " + f.OS
	}
	if !isAny(f.Isolation) && !slices.ContainsFunc(rec.Isolation, func(s string) bool { return strings.EqualFold(s, f.Isolation) }) {
		return "no " + f.Isolation + " isolation"
	}
	if !isAny(f.Executor) {
		found := false
		for _, e := range rec.Executors {
			found = found || strings.EqualFold(e, f.Executor)
		}
		if !found {
			return "no " + f.Executor + " executor"
		}
	}
	if why := wire.LabelsUnmet(hw.Labels, f.Needs); why != "" {
		return why
	}
	if why := wire.MachineUnmet(hw, f.Machine); why != "" {
		return why
	}
	for k, v := range f.Labels {
		if isAny(v) {
			continue
		}
		if got, ok := hw.Labels[k]; !ok || got != v {
			return fmt.Sprintf("label %s=%q, not %q", k, got, v)
		}
	}
	return ""
}

// FilterFor returns the filter of providers that may take a task with req:
// its runtime, at least the resources it asks for, its labels and its
// requirements of the whole machine.
func FilterFor(req wire.Requirements) PoolFilter {
	return PoolFilter{
		Executor: req.Runtime, CPUs: req.Resources.CPUs,
		MemoryBytes: req.Resources.MemoryBytes, GPUs: req.Resources.GPUs, GPU: req.GPU,
		Needs: req.Labels, Machine: req.Machine,
	}
}

// wire returns f as it travels in a wire.CapsRequest.
func (f PoolFilter) wire() *wire.CapsFilter {
	return &wire.CapsFilter{
		CPUs: f.CPUs, MemoryBytes: f.MemoryBytes, GPUs: f.GPUs, GPUModel: f.GPUModel,
		Arch: f.Arch, OS: f.OS, Executor: f.Executor, Isolation: f.Isolation, Labels: maps.Clone(f.Labels),
		GPU: f.GPU,
	}
}

// poolFilterOf is the PoolFilter of a filter from the network.
func poolFilterOf(w *wire.CapsFilter) PoolFilter {
	return PoolFilter{
		CPUs: w.CPUs, MemoryBytes: w.MemoryBytes, GPUs: w.GPUs, GPUModel: w.GPUModel,
		Arch: w.Arch, OS: w.OS, Executor: w.Executor, Isolation: w.Isolation, Labels: maps.Clone(w.Labels),
		GPU: w.GPU,
	}
}
