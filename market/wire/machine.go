package wire

import (
	"fmt"
	"strings"
)

// MachineRequirements are what a task needs of a provider's machine as a
// whole, beyond what it reserves (Resources): its OS, its architecture,
// its CPU model, and at least so many CPUs and so much memory in the
// machine (HWF's hardware dict: {"os", "cpu", "ram"}). Empty fields ask
// nothing; providers whose machine does not meet them decline.
type MachineRequirements struct {
	// OS and Arch match the machine's exactly, case-insensitively;
	// x86_64 is amd64 and aarch64 is arm64 (NormArch).
	OS   string `json:"os,omitempty"`
	Arch string `json:"arch,omitempty"`
	// CPUModel is found in the machine's CPU model, case-insensitively
	// ("epyc" matches "AMD EPYC 7763 64-Core Processor").
	CPUModel string `json:"cpu_model,omitempty"`
	// CPUs and MemoryBytes are what the machine has at least, whatever
	// part of it the provider offers.
	CPUs        int   `json:"cpus,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
}

// Validate checks sizes and ranges.
func (m *MachineRequirements) Validate() error {
	for _, s := range []string{m.OS, m.Arch, m.CPUModel} {
		if len(s) > maxCapText {
			return invalid("machine requirement longer than %d bytes", maxCapText)
		}
	}
	if m.CPUs < 0 || m.CPUs > 1<<16 || m.MemoryBytes < 0 {
		return invalid("machine requirement: negative or absurd cpus or memory")
	}
	return nil
}

// NormArch names an architecture as Go does: x86_64 is amd64, aarch64 is
// arm64; other names are only lowered.
func NormArch(a string) string {
	switch a = strings.ToLower(a); a {
	case "x86_64", "x86-64", "x64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return a
}

// MachineUnmet returns "" when the machine hw meets every requirement of
// m (nil asks nothing), else the first it fails, said for a person
// ("arch arm64, not amd64").
func MachineUnmet(hw *Hardware, m *MachineRequirements) string {
	switch {
	case m == nil:
		return ""
	case m.OS != "" && !strings.EqualFold(m.OS, hw.OS):
		return fmt.Sprintf("os %s, not %s", hw.OS, m.OS)
	case m.Arch != "" && NormArch(m.Arch) != NormArch(hw.Arch):
		return fmt.Sprintf("arch %s, not %s", hw.Arch, m.Arch)
	case m.CPUModel != "" && !strings.Contains(strings.ToLower(hw.CPUModel), strings.ToLower(m.CPUModel)):
		return fmt.Sprintf("cpu model %q, not %q", hw.CPUModel, m.CPUModel)
	case m.CPUs > 0 && hw.CPUs < m.CPUs:
		return fmt.Sprintf("%d CPUs in the machine, not %d", hw.CPUs, m.CPUs)
	case m.MemoryBytes > 0 && hw.MemoryBytes < m.MemoryBytes:
		return fmt.Sprintf("%d MiB of memory in the machine, not %d MiB", hw.MemoryBytes>>20, m.MemoryBytes>>20)
	}
	return ""
}
