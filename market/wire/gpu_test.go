package wire_test

import (
	"strings"
	"testing"

	"github.com/offload-project/offload/market/wire"
)

func TestMatchGPUs(t *testing.T) {
	const gib = 1 << 30
	h100 := wire.GPU{Vendor: "nvidia", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 80 * gib, ComputeCapability: "9.0", CUDAVersion: "12.4"}
	a100 := wire.GPU{Vendor: "nvidia", Model: "NVIDIA A100-SXM4-40GB", MemoryBytes: 40 * gib, ComputeCapability: "8.0", CUDAVersion: "12.4"}
	t4 := wire.GPU{Vendor: "nvidia", Model: "Tesla T4", MemoryBytes: 15 * gib, ComputeCapability: "7.5", CUDAVersion: "11.8"}
	old := wire.GPU{Vendor: "nvidia", Model: "Tesla K80", MemoryBytes: 12 * gib} // no compute capability reported
	for _, tc := range []struct {
		name string
		gpus []wire.GPU
		n    int
		req  *wire.GPURequirements
		ok   bool
		why  string
	}{
		{"any", []wire.GPU{t4}, 1, nil, true, ""},
		{"memory", []wire.GPU{t4, a100}, 1, &wire.GPURequirements{MemoryBytes: 40 * gib}, true, ""},
		{"memory short", []wire.GPU{t4}, 1, &wire.GPURequirements{MemoryBytes: 40 * gib}, false, "memory 15 GiB < 40 GiB"},
		{"two of one", []wire.GPU{a100, t4}, 2, &wire.GPURequirements{Compute: "8.0"}, false, "compute capability 7.5 < 8.0"},
		{"compute 8.0", []wire.GPU{a100, h100}, 2, &wire.GPURequirements{Compute: "8.0"}, true, ""},
		{"compute 8.9 vs 8.10 ordering", []wire.GPU{{Vendor: "nvidia", Model: "x", ComputeCapability: "8.10"}}, 1, &wire.GPURequirements{Compute: "8.9"}, true, ""},
		{"unknown compute", []wire.GPU{old}, 1, &wire.GPURequirements{Compute: "3.0"}, false, "compute capability unknown < 3.0"},
		{"cuda", []wire.GPU{t4}, 1, &wire.GPURequirements{CUDA: "12.2"}, false, "CUDA 11.8 < 12.2"},
		{"models", []wire.GPU{a100, h100}, 1, &wire.GPURequirements{Models: []string{"H100", "H200"}}, true, ""},
		{"models none", []wire.GPU{a100, t4}, 1, &wire.GPURequirements{Models: []string{"h100", "h200"}}, false, "model Tesla T4, not h100 or h200"},
		{"vendor", []wire.GPU{a100}, 1, &wire.GPURequirements{Vendor: "amd"}, false, "vendor nvidia, not amd"},
		{"no gpus", nil, 1, nil, false, "has 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, why := wire.MatchGPUs(tc.gpus, tc.n, tc.req)
			if (why == "") != tc.ok || !strings.Contains(why, tc.why) {
				t.Fatalf("why = %q, want ok=%v containing %q", why, tc.ok, tc.why)
			}
		})
	}
	if err := (&wire.GPURequirements{Compute: "eight"}).Validate(); err == nil {
		t.Error("compute 'eight' accepted")
	}
	spec := wire.TaskSpec{Image: "x:1", GPU: &wire.GPURequirements{MemoryBytes: gib}}
	if err := spec.Validate(); err == nil {
		t.Error("gpu requirements without gpus accepted")
	}
}
