// Package hardware detects what a provider's machine offers: operating
// system, architecture, CPU model and cores, memory, free disk under the
// node's home, and GPUs. The market advertises the result in its capability
// record; this package knows nothing about peers.
//
// Choices:
//   - CPU, memory and disk come from gopsutil, so the same code works on
//     Linux, macOS and Windows. A probe that fails leaves its field at zero
//     and Detect still returns what it found (a provider with an unknown CPU
//     model is still a provider).
//   - NVIDIA GPUs are found through `nvidia-smi --query-gpu=...` when it is on
//     PATH; its CSV output is parsed by ParseNvidiaSMI, a pure function. No
//     cgo (NVML) is needed for an inventory.
//   - Labels are what the operator says about the machine (fpga=xilinx);
//     they are copied, never detected.
package hardware

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
)

// GPU vendors.
const (
	VendorNVIDIA = "nvidia"
)

// GPU is one accelerator.
type GPU struct {
	// Vendor is lower case: "nvidia".
	Vendor string `json:"vendor"`
	// Model is the vendor's product name, e.g. "NVIDIA H100 80GB HBM3".
	Model string `json:"model"`
	// MemoryBytes is the device's total memory.
	MemoryBytes int64 `json:"memory_bytes"`
	// ComputeCapability ("9.0"), DriverVersion ("550.54.15") and
	// CUDAVersion (the highest the driver supports, "12.4") are empty when
	// nvidia-smi does not report them (drivers before 510 have no
	// compute_cap field).
	ComputeCapability string `json:"compute_capability,omitempty"`
	DriverVersion     string `json:"driver_version,omitempty"`
	CUDAVersion       string `json:"cuda_version,omitempty"`
	// Index is nvidia-smi's device index and UUID the device's id on its
	// machine: a task is given a device by them (not advertised).
	Index string `json:"-"`
	UUID  string `json:"-"`
}

// DeviceID is how the container engine is told to give a task this GPU:
// its UUID when known, else its index.
func (g GPU) DeviceID() string {
	if g.UUID != "" {
		return g.UUID
	}
	return g.Index
}

// Info is a machine's inventory.
type Info struct {
	OS            string            `json:"os"`
	Arch          string            `json:"arch"`
	CPUModel      string            `json:"cpu_model"`
	CPUs          int               `json:"cpus"`
	MemoryBytes   int64             `json:"memory_bytes"`
	DiskFreeBytes int64             `json:"disk_free_bytes"`
	GPUs          []GPU             `json:"gpus"`
	Labels        map[string]string `json:"labels"`
}

// Options tune Detect.
type Options struct {
	// Dir is where free disk space is measured (the node's home); "" skips it.
	Dir string
	// Labels are copied into the result.
	Labels map[string]string
	// NvidiaSMI is the nvidia-smi command; default "nvidia-smi" on PATH.
	// Set it to "-" to skip GPU detection.
	NvidiaSMI string
}

// probeTimeout bounds each external probe (nvidia-smi can hang on a wedged
// driver).
const probeTimeout = 5 * time.Second

// Detect takes the machine's inventory. It never fails: a probe that does
// not answer leaves its fields at zero; the returned error joins what went
// wrong, for logging.
func Detect(ctx context.Context, opts Options) (Info, error) {
	info := Info{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Labels: map[string]string{}, GPUs: []GPU{}}
	for k, v := range opts.Labels {
		info.Labels[k] = v
	}
	var errs []error
	if cs, err := cpu.InfoWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("cpu info: %w", err))
	} else if len(cs) > 0 {
		info.CPUModel = strings.TrimSpace(cs[0].ModelName)
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("memory: %w", err))
	} else {
		info.MemoryBytes = int64(vm.Total)
	}
	if opts.Dir != "" {
		if u, err := disk.UsageWithContext(ctx, opts.Dir); err != nil {
			errs = append(errs, fmt.Errorf("disk usage of %s: %w", opts.Dir, err))
		} else {
			info.DiskFreeBytes = int64(u.Free)
		}
	}
	if opts.NvidiaSMI != "-" {
		gpus, err := nvidiaGPUs(ctx, opts.NvidiaSMI)
		if err != nil {
			errs = append(errs, err)
		}
		info.GPUs = append(info.GPUs, gpus...)
	}
	return info, errors.Join(errs...)
}

// NvidiaSMIArgs are the arguments whose output ParseNvidiaSMI reads;
// NvidiaSMILegacyArgs those of drivers without the compute_cap field
// (before 510), whose output ParseNvidiaSMILegacy reads.
var (
	NvidiaSMIArgs       = []string{"--query-gpu=index,name,memory.total,uuid,compute_cap,driver_version", "--format=csv,noheader,nounits"}
	NvidiaSMILegacyArgs = []string{"--query-gpu=name,memory.total,uuid", "--format=csv,noheader,nounits"}
)

// nvidiaGPUs runs nvidia-smi when it exists. A machine without it has no
// NVIDIA GPUs, which is not an error. The CUDA version comes from the
// banner of a plain nvidia-smi run (ParseCUDAVersion).
func nvidiaGPUs(ctx context.Context, bin string) ([]GPU, error) {
	if bin == "" {
		bin = "nvidia-smi"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var gpus []GPU
	out, err := exec.CommandContext(ctx, path, NvidiaSMIArgs...).Output()
	if err == nil {
		gpus, err = ParseNvidiaSMI(out)
	} else if legacy, lerr := exec.CommandContext(ctx, path, NvidiaSMILegacyArgs...).Output(); lerr == nil {
		gpus, err = ParseNvidiaSMILegacy(legacy)
	}
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi: %w", err)
	}
	if banner, err := exec.CommandContext(ctx, path).Output(); err == nil {
		if cuda := ParseCUDAVersion(banner); cuda != "" {
			for i := range gpus {
				gpus[i].CUDAVersion = cuda
			}
		}
	}
	return gpus, nil
}

// cudaBanner finds the CUDA version in nvidia-smi's banner:
// "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |".
var cudaBanner = regexp.MustCompile(`CUDA Version:\s*([0-9]+\.[0-9]+)`)

// ParseCUDAVersion returns the CUDA version a plain nvidia-smi run prints
// in its banner, or "".
func ParseCUDAVersion(out []byte) string {
	if m := cudaBanner.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}

// ParseNvidiaSMI parses the output of
//
//	nvidia-smi --query-gpu=index,name,memory.total,uuid,compute_cap,driver_version --format=csv,noheader,nounits
//
// one GPU a line: "0, NVIDIA H100 80GB HBM3, 81559, GPU-3f..., 9.0, 550.54.15".
// Memory is in MiB. Blank lines and surrounding spaces are ignored; a
// model name may itself contain commas, so the index is taken from the
// left and the other fields from the right. "[N/A]" and "[Not Supported]"
// leave a field unknown. A line that cannot be parsed is an error naming
// it.
func ParseNvidiaSMI(out []byte) ([]GPU, error) {
	return parseCSV(out, 6, "index, name, memory.total, uuid, compute_cap, driver_version", func(f []string, i int) (GPU, error) {
		k, tr := len(f), strings.TrimSpace
		index := tr(f[0])
		if _, err := strconv.Atoi(index); err != nil {
			return GPU{}, fmt.Errorf("index %q is not a number", index)
		}
		return GPU{Vendor: VendorNVIDIA, Model: strings.Join(f[1:k-4], ","), Index: index,
			UUID: known(tr(f[k-3])), ComputeCapability: known(tr(f[k-2])), DriverVersion: known(tr(f[k-1]))}, nil
	}, 4)
}

// parseCSV parses nvidia-smi's CSV output, one GPU a line of at least
// min fields (want names them): blank lines are skipped, fn makes the
// GPU of a line's untrimmed fields (a model name may hold commas; i: how
// many GPUs came before), its model is trimmed, and
// the field memAt places from the right is the memory in MiB. Every error
// names the line.
func parseCSV(out []byte, min int, want string, fn func(f []string, i int) (GPU, error), memAt int) ([]GPU, error) {
	gpus := []GPU{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < min {
			return nil, fmt.Errorf("line %d %q: want %s", n, line, want)
		}
		g, err := fn(f, len(gpus))
		if err == nil && strings.TrimSpace(g.Model) == "" {
			err = errors.New("empty GPU name")
		}
		if err == nil {
			g.Model = strings.TrimSpace(g.Model)
			g.MemoryBytes, err = parseMiB(strings.TrimSpace(f[len(f)-memAt]))
		}
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n, line, err)
		}
		gpus = append(gpus, g)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read nvidia-smi output: %w", err)
	}
	return gpus, nil
}

// known returns "" for nvidia-smi's "[N/A]" and "[Not Supported]".
func known(s string) string {
	if strings.HasPrefix(s, "[") {
		return ""
	}
	return s
}

// parseMiB reads a memory field in MiB ("[N/A]", "[Not Supported]":
// unknown, 0).
func parseMiB(field string) (int64, error) {
	if strings.HasPrefix(field, "[") {
		return 0, nil
	}
	field = strings.TrimSpace(strings.TrimSuffix(field, "MiB"))
	mib, err := strconv.ParseFloat(field, 64)
	if err != nil || mib < 0 {
		return 0, fmt.Errorf("memory %q is not a number of MiB", field)
	}
	return int64(mib * (1 << 20)), nil
}

// ParseNvidiaSMILegacy parses the output of
//
//	nvidia-smi --query-gpu=name,memory.total,uuid --format=csv,noheader,nounits
//
// one GPU a line: "NVIDIA H100 80GB HBM3, 81559, GPU-3f...". Memory is in
// MiB. Blank lines and surrounding spaces are ignored; a model name may
// itself contain commas, so the last two fields are taken from the right. A
// line that cannot be parsed is an error naming it.
func ParseNvidiaSMILegacy(out []byte) ([]GPU, error) {
	return parseCSV(out, 3, "name, memory.total, uuid", func(f []string, i int) (GPU, error) {
		k := len(f)
		return GPU{Vendor: VendorNVIDIA, Model: strings.Join(f[:k-2], ","), UUID: strings.TrimSpace(f[k-1]), Index: strconv.Itoa(i)}, nil
	}, 2)
}
