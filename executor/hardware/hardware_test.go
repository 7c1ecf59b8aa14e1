package hardware_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/offload-project/offload/executor/hardware"
)

func TestParseNvidiaSMILegacy(t *testing.T) {
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
			got, err := hardware.ParseNvidiaSMILegacy([]byte(tc.out))
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
				tc.want[i].Index = strconv.Itoa(i)
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

// TestParseNvidiaSMIFixtures reads nvidia-smi output of several cards
// (testdata/nvidia-smi: an 8×H100 server, a mixed A100/T4/RTX 4090/V100
// machine, a Jetson that reports no memory or UUID) in the query format
// and the CUDA version from each banner.
func TestParseNvidiaSMIFixtures(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		file string
		want []hardware.GPU
		cuda string
	}{
		{"h100x8", []hardware.GPU{{Vendor: "nvidia", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 81559 * mib, ComputeCapability: "9.0", DriverVersion: "550.54.15",
			Index: "7", UUID: "GPU-7a8b9c0d-1e2f-4a4b-9c6d-7e8f9a0b1c2d"}}, "12.4"},
		{"mixed", []hardware.GPU{
			{Vendor: "nvidia", Model: "NVIDIA A100-SXM4-40GB", MemoryBytes: 40960 * mib, ComputeCapability: "8.0", DriverVersion: "535.161.07", Index: "0", UUID: "GPU-a100aaaa-1111-4222-8333-444455556666"},
			{Vendor: "nvidia", Model: "Tesla T4", MemoryBytes: 15360 * mib, ComputeCapability: "7.5", DriverVersion: "535.161.07", Index: "1", UUID: "GPU-t4bbbbbb-1111-4222-8333-444455556666"},
			{Vendor: "nvidia", Model: "NVIDIA GeForce RTX 4090", MemoryBytes: 24564 * mib, ComputeCapability: "8.9", DriverVersion: "535.161.07", Index: "2", UUID: "GPU-4090cccc-1111-4222-8333-444455556666"},
			{Vendor: "nvidia", Model: "Tesla V100-SXM2-16GB", MemoryBytes: 16384 * mib, ComputeCapability: "7.0", DriverVersion: "535.161.07", Index: "3", UUID: "GPU-v100dddd-1111-4222-8333-444455556666"},
		}, "12.2"},
		{"jetson-na", []hardware.GPU{{Vendor: "nvidia", Model: "Orin (nvgpu)", ComputeCapability: "8.7", DriverVersion: "540.2.0", Index: "0"}}, ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", "nvidia-smi", tc.file+".csv"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := hardware.ParseNvidiaSMI(out)
			if err != nil {
				t.Fatal(err)
			}
			// The last GPU of each file is compared whole (all of them for
			// the mixed machine).
			want := tc.want
			if len(want) == 1 {
				got = got[len(got)-1:]
			}
			if len(got) != len(want) {
				t.Fatalf("got %d GPUs: %+v", len(got), got)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("gpu %d = %+v, want %+v", i, got[i], want[i])
				}
			}
			banner, _ := os.ReadFile(filepath.Join("testdata", "nvidia-smi", tc.file+".banner"))
			if cuda := hardware.ParseCUDAVersion(banner); cuda != tc.cuda {
				t.Errorf("cuda = %q, want %q", cuda, tc.cuda)
			}
		})
	}
	if got, err := hardware.ParseNvidiaSMI([]byte("0, Weird, Inc. GPU, 1024, GPU-1, 8.0, 550\n")); err != nil || got[0].Model != "Weird, Inc. GPU" || got[0].MemoryBytes != 1024*mib {
		t.Errorf("comma in the model name: %+v %v", got, err)
	}
	for _, bad := range []string{"0, H100, 81559, GPU-1, 9.0\n", "x, H100, 81559, GPU-1, 9.0, 550\n", "0, , 1, GPU-1, 9.0, 550\n", "0, H100, lots, GPU-1, 9.0, 550\n"} {
		if got, err := hardware.ParseNvidiaSMI([]byte(bad)); err == nil {
			t.Errorf("%q parsed as %+v", bad, got)
		}
	}
}

// TestDetectWithFakeNvidiaSMI runs Detect against a stand-in nvidia-smi
// that answers like a recent driver (the query with compute_cap, and the
// banner), then like one before 510 (the compute_cap query fails).
func TestDetectWithFakeNvidiaSMI(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("shell script fake")
	}
	td, _ := filepath.Abs(filepath.Join("testdata", "nvidia-smi"))
	for _, tc := range []struct{ name, script string }{
		{"recent", "#!/bin/sh\ncase \"$1\" in\n  --query-gpu=index*) cat " + td + "/mixed.csv ;;\n  '') cat " + td + "/mixed.banner ;;\n  *) exit 2 ;;\nesac\n"},
		{"before 510", "#!/bin/sh\ncase \"$1\" in\n  --query-gpu=index*) echo 'Field \"compute_cap\" is not a valid field to query.' >&2; exit 2 ;;\n  --query-gpu=name*) cat " + td + "/legacy-470.csv ;;\n  '') cat " + td + "/legacy-470.banner ;;\n  *) exit 2 ;;\nesac\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := filepath.Join(t.TempDir(), "nvidia-smi")
			if err := os.WriteFile(fake, []byte(tc.script), 0o755); err != nil {
				t.Fatal(err)
			}
			info, err := hardware.Detect(t.Context(), hardware.Options{NvidiaSMI: fake})
			if err != nil {
				t.Logf("partial detection: %v", err)
			}
			switch tc.name {
			case "recent":
				if len(info.GPUs) != 4 || info.GPUs[2].ComputeCapability != "8.9" || info.GPUs[0].CUDAVersion != "12.2" || info.GPUs[1].DeviceID() != "GPU-t4bbbbbb-1111-4222-8333-444455556666" {
					t.Fatalf("gpus = %+v", info.GPUs)
				}
			default:
				if len(info.GPUs) != 2 || info.GPUs[1].Model != "Tesla K80" || info.GPUs[1].ComputeCapability != "" || info.GPUs[0].CUDAVersion != "11.4" || info.GPUs[1].Index != "1" {
					t.Fatalf("gpus = %+v", info.GPUs)
				}
			}
		})
	}
}
