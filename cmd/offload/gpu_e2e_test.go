package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testwait"
)

// TestTypedGPUMatchingAcrossProcesses: a provider process whose GPUs are
// an A100 (compute 8.0, 40 GiB), a T4, an RTX 4090 and a V100 (a stand-in
// nvidia-smi prints them, as recorded in executor/hardware/testdata)
// advertises each GPU's memory, compute capability and CUDA version; the
// requestor's `offload pool` matches typed minimums and, with --why, names
// the requirement a provider fails; a task no GPU there can meet fails
// saying which requirement each GPU failed.
func TestTypedGPUMatchingAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	td, err := filepath.Abs(filepath.Join("..", "..", "executor", "hardware", "testdata", "nvidia-smi"))
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(dir, "nvidia-smi")
	script := "#!/bin/sh\ncase \"$1\" in\n  --query-gpu=index*) cat " + td + "/mixed.csv ;;\n  '') cat " + td + "/mixed.banner ;;\n  *) exit 2 ;;\nesac\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	prov := startNodeProc(t, filepath.Join(dir, "P"), "--provider", "--executors", "wasm", "--nvidia-smi", fake)
	pid := prov.id(t)
	req := startNodeProc(t, filepath.Join(dir, "R"), "--bootstrap", pid.Addrs[0])

	pool := func(args ...string) []client.Provider { t.Helper(); return poolOf(t, req.home, args...) }
	if !testwait.Until(t.Context(), 30*time.Second, 200*time.Millisecond, func() bool { return len(pool()) == 1 }) {
		t.Fatal("the provider never showed up in the pool")
	}
	gpus := pool()[0].Hardware.GPUs
	if len(gpus) != 4 || gpus[0].ComputeCapability != "8.0" || gpus[0].CUDAVersion != "12.2" || gpus[2].Model != "NVIDIA GeForce RTX 4090" {
		t.Fatalf("advertised GPUs: %+v", gpus)
	}
	if got := pool("--gpus", "2", "--gpu-compute", "8.0"); len(got) != 1 {
		t.Errorf("two GPUs of compute ≥ 8.0 (A100, 4090): %d providers", len(got))
	}
	if got := pool("--gpus", "1", "--gpu-memory", "40g", "--cuda", "12.2", "--gpu-model", "h100,a100"); len(got) != 1 {
		t.Errorf("an A100 with 40 GiB and CUDA 12.2: %d providers", len(got))
	}
	if got := pool("--gpus", "1", "--gpu-compute", "9.0"); len(got) != 0 {
		t.Errorf("compute 9.0 matched %d providers", len(got))
	}
	why := pool("--gpus", "3", "--gpu-compute", "8.0", "--why")
	if len(why) != 1 || !strings.Contains(why[0].Unmet, "has 2") || !strings.Contains(why[0].Unmet, "compute capability 7.5 < 8.0") {
		t.Fatalf("--why: %+v", why)
	}
	text, _, _ := offload(t, "pool", "--home", req.home, "--gpus", "1", "--gpu-memory", "80g", "--why")
	if !strings.Contains(text, "no: needs 1 GPU(s) with memory ≥ 80 GiB; has 0") {
		t.Errorf("pool --why text:\n%s", text)
	}

	// Why no bid: the provider declines naming what each GPU lacks.
	out, _, _ := offload(t, "run", "--home", req.home, "--wait", "--json", "--runtime", "wasm", "--image", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
		"--gpu-compute", "9.0", "--cuda", "12.0", "--", "x")
	var task client.Task
	if err := json.Unmarshal([]byte(out), &task); err != nil {
		t.Fatalf("run: %v %s", err, out)
	}
	if task.State != "failed" || !strings.Contains(task.Error, "compute capability 8.0 < 9.0") {
		t.Fatalf("a compute 9.0 task: %s: %s", task.State, task.Error)
	}
}
