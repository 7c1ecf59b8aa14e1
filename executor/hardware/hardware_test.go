package hardware_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/offload-project/offload/executor/hardware"
)

func TestParseNvidiaSMI(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		want    []hardware.GPU
		wantErr bool
	}{
		{name: "none", out: "", want: []hardware.GPU{}},
		{
			name: "one H100",
			out:  "NVIDIA H100 80GB HBM3, 81559, GPU-3f7b2c1e-7f0e-2a1b-9c8d-0a1b2c3d4e5f\n",
			want: []hardware.GPU{{Vendor: "nvidia", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 81559 << 20, UUID: "GPU-3f7b2c1e-7f0e-2a1b-9c8d-0a1b2c3d4e5f"}},
		},
		{
			name: "multi GPU with odd spacing and CRLF",
			out: "  Tesla T4 ,15360 ,  GPU-aaaa\r\n" +
				"\n" +
				"NVIDIA GeForce RTX 3090,   24576,GPU-bbbb   \r\n" +
				"NVIDIA A100-SXM4-40GB, 40960, GPU-cccc\n",
			want: []hardware.GPU{
				{Vendor: "nvidia", Model: "Tesla T4", MemoryBytes: 15360 << 20, UUID: "GPU-aaaa"},
				{Vendor: "nvidia", Model: "NVIDIA GeForce RTX 3090", MemoryBytes: 24576 << 20, UUID: "GPU-bbbb"},
				{Vendor: "nvidia", Model: "NVIDIA A100-SXM4-40GB", MemoryBytes: 40960 << 20, UUID: "GPU-cccc"},
			},
		},
		{
			name: "comma in the model name",
			out:  "Weird, Inc. GPU, 1024, GPU-dddd\n",
			want: []hardware.GPU{{Vendor: "nvidia", Model: "Weird, Inc. GPU", MemoryBytes: 1024 << 20, UUID: "GPU-dddd"}},
		},
		{
			name: "memory not supported",
			out:  "NVIDIA Jetson, [N/A], GPU-eeee\n",
			want: []hardware.GPU{{Vendor: "nvidia", Model: "NVIDIA Jetson", UUID: "GPU-eeee"}},
		},
		{name: "too few fields", out: "NVIDIA H100, 81559\n", wantErr: true},
		{name: "memory not a number", out: "NVIDIA H100, lots, GPU-ffff\n", wantErr: true},
		{name: "empty name", out: " , 1024, GPU-gggg\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hardware.ParseNvidiaSMI([]byte(tc.out))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d GPUs %+v, want %d", len(got), got, len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("gpu %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	info, err := hardware.Detect(t.Context(), hardware.Options{Dir: dir, Labels: map[string]string{"fpga": "xilinx"}})
	if err != nil {
		t.Logf("partial detection: %v", err)
	}
	t.Logf("detected: %+v", info)
	if info.OS != runtime.GOOS || info.Arch != runtime.GOARCH || info.CPUs != runtime.NumCPU() {
		t.Errorf("os/arch/cpus = %s/%s/%d", info.OS, info.Arch, info.CPUs)
	}
	if info.MemoryBytes <= 0 || info.DiskFreeBytes <= 0 {
		t.Errorf("memory %d, disk free %d: want both positive", info.MemoryBytes, info.DiskFreeBytes)
	}
	if info.Labels["fpga"] != "xilinx" {
		t.Errorf("labels = %v", info.Labels)
	}
}

func TestDetectWithFakeNvidiaSMI(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("shell script fake")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "nvidia-smi")
	script := "#!/bin/sh\nprintf 'NVIDIA H100 80GB HBM3, 81559, GPU-1\\nNVIDIA H100 80GB HBM3, 81559, GPU-2\\n'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	info, _ := hardware.Detect(t.Context(), hardware.Options{NvidiaSMI: fake})
	if len(info.GPUs) != 2 || info.GPUs[1].Model != "NVIDIA H100 80GB HBM3" || info.GPUs[0].MemoryBytes != 81559<<20 {
		t.Fatalf("gpus = %+v", info.GPUs)
	}
}
