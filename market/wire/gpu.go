package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// Typed GPU matching: providers advertise each GPU's vendor, model,
// memory, compute capability, driver and CUDA versions (GPU); a task asks
// for a number of GPUs (Resources.GPUs) each meeting typed minimums and
// sets (GPURequirements); MatchGPUs decides, and says which requirement
// fails.

// maxGPUModels bounds the models a requirement may list.
const maxGPUModels = 32

// GPURequirements are what each of a task's GPUs must meet. Empty fields
// ask for nothing.
type GPURequirements struct {
	// Vendor is the GPU vendor ("nvidia"), case-insensitively.
	Vendor string `json:"vendor,omitempty"`
	// Models are accepted models: a GPU matches when its model contains
	// one of them, case-insensitively ("H100" matches "NVIDIA H100 80GB
	// HBM3").
	Models []string `json:"models,omitempty"`
	// MemoryBytes is the least memory of each GPU.
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// Compute is the least compute capability ("8.0").
	Compute string `json:"compute,omitempty"`
	// CUDA is the least CUDA version the provider's driver supports
	// ("12.2").
	CUDA string `json:"cuda,omitempty"`
}

// Validate checks the requirements' sizes and versions.
func (r *GPURequirements) Validate() error {
	if len(r.Vendor) > maxCapText || len(r.Models) > maxGPUModels {
		return invalid("gpu: vendor too long or more than %d models", maxGPUModels)
	}
	for _, m := range r.Models {
		if m == "" || len(m) > maxCapText {
			return invalid("gpu model %q: empty or too long", m)
		}
	}
	if r.MemoryBytes < 0 {
		return invalid("gpu: negative memory")
	}
	for name, v := range map[string]string{"compute capability": r.Compute, "cuda version": r.CUDA} {
		if v == "" {
			continue
		}
		if _, ok := parseVersion(v); !ok {
			return invalid("gpu %s %q is not a version like 8.0 or 12.2", name, v)
		}
	}
	return nil
}

// String says the requirements for a person.
func (r *GPURequirements) String() string {
	if r == nil {
		return "any GPU"
	}
	var parts []string
	if r.Vendor != "" {
		parts = append(parts, "vendor "+r.Vendor)
	}
	if len(r.Models) > 0 {
		parts = append(parts, "model "+strings.Join(r.Models, " or "))
	}
	if r.MemoryBytes > 0 {
		parts = append(parts, "memory ≥ "+gib(r.MemoryBytes))
	}
	if r.Compute != "" {
		parts = append(parts, "compute capability ≥ "+r.Compute)
	}
	if r.CUDA != "" {
		parts = append(parts, "CUDA ≥ "+r.CUDA)
	}
	if len(parts) == 0 {
		return "any GPU"
	}
	return strings.Join(parts, ", ")
}

// Unmet returns "" when g meets r (nil meets everything), else the first
// requirement g fails, said for a person.
func (r *GPURequirements) Unmet(g GPU) string {
	if r == nil {
		return ""
	}
	if r.Vendor != "" && !strings.EqualFold(r.Vendor, g.Vendor) {
		return fmt.Sprintf("vendor %s, not %s", orUnknown(g.Vendor), r.Vendor)
	}
	if len(r.Models) > 0 {
		ok := false
		for _, m := range r.Models {
			ok = ok || strings.Contains(strings.ToLower(g.Model), strings.ToLower(m))
		}
		if !ok {
			return fmt.Sprintf("model %s, not %s", orUnknown(g.Model), strings.Join(r.Models, " or "))
		}
	}
	if r.MemoryBytes > 0 && g.MemoryBytes < r.MemoryBytes {
		return fmt.Sprintf("memory %s < %s", gib(g.MemoryBytes), gib(r.MemoryBytes))
	}
	if r.Compute != "" && !versionAtLeast(g.ComputeCapability, r.Compute) {
		return fmt.Sprintf("compute capability %s < %s", orUnknown(g.ComputeCapability), r.Compute)
	}
	if r.CUDA != "" && !versionAtLeast(g.CUDAVersion, r.CUDA) {
		return fmt.Sprintf("CUDA %s < %s", orUnknown(g.CUDAVersion), r.CUDA)
	}
	return ""
}

// MatchGPUs returns the indexes of the GPUs that meet r, and, when fewer
// than n do, why: the requirement each other GPU fails (the same reasons
// counted once).
func MatchGPUs(gpus []GPU, n int, r *GPURequirements) (meeting []int, why string) {
	var reasons []string
	seen := map[string]int{}
	for i, g := range gpus {
		if u := r.Unmet(g); u != "" {
			if seen[u] == 0 {
				reasons = append(reasons, u)
			}
			seen[u]++
			continue
		}
		meeting = append(meeting, i)
	}
	if len(meeting) >= n {
		return meeting, ""
	}
	why = fmt.Sprintf("needs %d GPU(s) with %s; has %d", n, r.String(), len(meeting))
	if len(reasons) > 0 {
		var parts []string
		for _, u := range reasons {
			if seen[u] > 1 {
				u = fmt.Sprintf("%d× %s", seen[u], u)
			}
			parts = append(parts, u)
		}
		why += " (others: " + strings.Join(parts, "; ") + ")"
	}
	return meeting, why
}

// parseVersion reads "MAJOR[.MINOR]" as major*1000+minor.
func parseVersion(s string) (int, bool) {
	maj, min, _ := strings.Cut(strings.TrimSpace(s), ".")
	a, err := strconv.Atoi(maj)
	if err != nil || a < 0 || a > 1000 {
		return 0, false
	}
	b := 0
	if min != "" {
		if b, err = strconv.Atoi(min); err != nil || b < 0 || b > 999 {
			return 0, false
		}
	}
	return a*1000 + b, true
}

// versionAtLeast reports whether have ≥ want (an unknown have is not).
func versionAtLeast(have, want string) bool {
	h, ok := parseVersion(have)
	w, ok2 := parseVersion(want)
	return ok && ok2 && h >= w
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func gib(b int64) string {
	return strconv.FormatFloat(float64(b)/(1<<30), 'f', -1, 64) + " GiB"
}
