package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testwait"
)

// TestPoolEndToEnd: a provider started with --labels is listed by
// `offload pool --json --label` on another node, and a label it does not
// have lists nothing.
func TestPoolEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a := startNodeProc(t, filepath.Join(dir, "A"), "--provider", "--executors", "wasm", "--labels", "fpga=xilinx,zone=lab", "--price", "0.5")
	aid := a.id(t)
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", aid.Addrs[0])

	pool := func(args ...string) []client.Provider { t.Helper(); return poolOf(t, b.home, args...) }
	start := time.Now()
	var got []client.Provider
	if !testwait.Until(t.Context(), 15*time.Second, 100*time.Millisecond, func() bool {
		got = pool("--label", "fpga=xilinx")
		return len(got) > 0
	}) {
		t.Fatalf("the provider never showed up in the pool\nnode A:\n%s\nnode B:\n%s", a.log, b.log)
	}
	t.Logf("provider listed after %s", time.Since(start).Round(time.Millisecond))
	p := got[0]
	if len(got) != 1 || p.Peer != aid.ID || p.Hardware.Labels["fpga"] != "xilinx" || p.Price != 0.5 ||
		len(p.Executors) != 1 || p.Executors[0] != "wasm" || p.Hardware.CPUs <= 0 || len(p.Addrs) == 0 {
		t.Errorf("pool entry: %+v", got)
	}
	// The JSON field names scripts rely on.
	out, _, _ := offload(t, "pool", "--json", "--home", b.home)
	var raw []map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 1 {
		t.Fatalf("pool --json: %v %s", err, out)
	}
	for _, k := range []string{"peer", "addrs", "hardware", "executors", "price", "free", "seen_at"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("pool --json has no %q", k)
		}
	}
	hw, _ := raw[0]["hardware"].(map[string]any)
	for _, k := range []string{"os", "arch", "cpu_model", "cpus", "memory_bytes", "disk_free_bytes", "gpus", "labels"} {
		if _, ok := hw[k]; !ok {
			t.Errorf("pool --json hardware has no %q", k)
		}
	}

	if got := pool("--label", "fpga=altera"); len(got) != 0 {
		t.Errorf("fpga=altera matched %+v", got)
	}
	if got := pool("--label", "fpga=any", "--arch", "any", "--executor", "wasm"); len(got) != 1 {
		t.Errorf("any filters: %+v", got)
	}
	if got := pool("--executor", "docker"); len(got) != 0 {
		t.Errorf("--executor docker matched a wasm-only provider: %+v", got)
	}
	if _, stderr, code := offload(t, "pool", "--home", b.home, "--memory", "lots"); code == 0 {
		t.Errorf("--memory lots accepted: %s", stderr)
	}
	out, _, code := offload(t, "pool", "--home", b.home, "--label", "fpga=xilinx")
	if code != 0 || !strings.Contains(out, aid.ID) {
		t.Errorf("pool table: %d %s", code, out)
	}
}

// poolOf runs `offload pool --json` with args on the node at home.
func poolOf(t *testing.T, home string, args ...string) []client.Provider {
	t.Helper()
	out, stderr, code := offload(t, append([]string{"pool", "--json", "--home", home}, args...)...)
	if code != 0 {
		t.Fatalf("pool %v exited %d: %s", args, code, stderr)
	}
	var ps []client.Provider
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("pool --json: %v\n%s", err, out)
	}
	return ps
}

// TestRunWithLabels: `offload run --label` runs a task only on a provider
// process with that label (any value for a bare key, the value for
// KEY=VALUE), fails a task no provider's labels meet saying which label
// is missing, and refuses a malformed requirement before submitting; the
// machine flags (--os, --arch, --machine-cpus, --machine-memory) do the
// same for the whole machine.
func TestRunWithLabels(t *testing.T) {
	dir := t.TempDir()
	a := startNodeProc(t, filepath.Join(dir, "A"), "--provider", "--executors", "wasm", "--labels", "fpga=xilinx")
	aid := a.id(t)
	c := startNodeProc(t, filepath.Join(dir, "C"), "--provider", "--executors", "wasm", "--bootstrap", aid.Addrs[0])
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", aid.Addrs[0])
	if !testwait.Until(t.Context(), 30*time.Second, 200*time.Millisecond, func() bool {
		return len(poolOf(t, b.home, "--executor", "wasm")) == 2
	}) {
		t.Fatalf("the requestor's pool never listed both providers\nnode B:\n%s", b.log)
	}
	mod := addWASM(t, b.home)
	run := func(args ...string) (task struct{ State, Provider, Reason, Stdout string }, stderr string, code int) {
		t.Helper()
		out, stderr, code := offload(t, append([]string{"run", "--home", b.home, "--wait", "--json", "--runtime", "wasm",
			"--image", mod, "--timeout", "1m"}, append(args, "--", "/hello", "echo", "labelled")...)...)
		if code == 0 || strings.HasPrefix(strings.TrimSpace(out), "{") {
			if err := json.Unmarshal([]byte(out), &task); err != nil {
				t.Fatalf("run %v: %v\n%s", args, err, out)
			}
		}
		return task, stderr, code
	}
	for i, labels := range [][]string{{"--label", "fpga"}, {"--label", "fpga=xilinx"}, {"--label", "fpga"}} {
		task, stderr, code := run(labels...)
		if code != 0 || task.State != "completed" || task.Provider != aid.ID || !strings.Contains(task.Stdout, "labelled") {
			t.Fatalf("task %d %v: exit %d, %+v, %s (want completed on %s, not %s)", i, labels, code, task, stderr, aid.ID, c.id(t).ID)
		}
	}
	task, stderr, code := run("--label", "fpga=altera")
	if code == 0 || task.State != "failed" || !strings.Contains(task.Reason, `label fpga="xilinx", not "altera"`) || !strings.Contains(task.Reason, "no label fpga") {
		t.Fatalf("fpga=altera: exit %d, %+v, %s", code, task, stderr)
	}
	t.Logf("fpga=altera failed: %s", task.Reason)
	if _, stderr, code := run("--label", "=x"); code == 0 || !strings.Contains(stderr, "want KEY or KEY=VALUE") {
		t.Fatalf("--label =x: exit %d, %s", code, stderr)
	}
	// Requirements of the whole machine: both providers are this machine,
	// so one that it meets runs, and an architecture it is not fails
	// naming the machine's.
	if task, stderr, code := run("--os", "linux", "--machine-cpus", "1", "--machine-memory", "64m"); code != 0 || task.State != "completed" {
		t.Fatalf("a machine requirement this machine meets: exit %d, %+v, %s", code, task, stderr)
	}
	task, stderr, code = run("--arch", "riscv64")
	if code == 0 || task.State != "failed" || !strings.Contains(task.Reason, "not riscv64") {
		t.Fatalf("--arch riscv64: exit %d, %+v, %s", code, task, stderr)
	}
	if _, stderr, code := run("--machine-memory", "lots"); code == 0 || !strings.Contains(stderr, "not a size") {
		t.Fatalf("--machine-memory lots: exit %d, %s", code, stderr)
	}
}
