package market_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// TestGPUsTypedAndExclusive: a provider with an A100 (compute 8.0) and a
// T4 (7.5) gives each task GPUs meeting its typed requirements, by device
// id, and never the same device to two tasks at once; a task no device
// can meet is declined naming the failing requirement; the devices are
// free again once a task ends.
func TestGPUsTypedAndExclusive(t *testing.T) {
	const gib = 1 << 30
	s := newSwarm(t)
	cfg := providerConfig(t, 1)
	cfg.Capacity.GPUs = 2
	cfg.GPUs = []market.GPUDevice{
		{ID: "GPU-a100", GPU: wire.GPU{Vendor: "nvidia", Model: "NVIDIA A100-SXM4-40GB", MemoryBytes: 40 * gib, ComputeCapability: "8.0", CUDAVersion: "12.2"}},
		{ID: "GPU-t4", GPU: wire.GPU{Vendor: "nvidia", Model: "Tesla T4", MemoryBytes: 15 * gib, ComputeCapability: "7.5", CUDAVersion: "12.2"}},
	}
	prov := s.provider(cfg)
	devices := make(chan []string, 8)
	release := make(chan struct{})
	prov.ex.setRun(func(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
		devices <- spec.Limits.GPUDevices
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		now := time.Now()
		return &executor.Result{StartedAt: now, FinishedAt: now}, nil
	})
	req := s.requestor(fastRequestor())
	s.connect()
	gpuTask := func(r *wire.GPURequirements) wire.TaskSpec {
		return wire.TaskSpec{Resources: wire.Resources{CPUs: 0.5, GPUs: 1}, GPU: r}
	}

	// No device meets compute 9.0: declined, saying which requirement.
	no := req.wait(t, req.submit(t, gpuTask(&wire.GPURequirements{Compute: "9.0"})), 10*time.Second)
	if no.State != market.StateFailed || !strings.Contains(no.Reason, "compute capability 8.0 < 9.0") || !strings.Contains(no.Reason, "compute capability 7.5 < 9.0") {
		t.Fatalf("compute 9.0 task %s: %q", no.State, no.Reason)
	}

	// Compute 8.0: the A100, by id.
	big := req.submit(t, gpuTask(&wire.GPURequirements{Compute: "8.0", MemoryBytes: 32 * gib}))
	if got := <-devices; !slices.Equal(got, []string{"GPU-a100"}) {
		t.Fatalf("the compute 8.0 task got %v", got)
	}
	// Any GPU while the A100 is taken: the T4, never the A100 again.
	small := req.submit(t, gpuTask(nil))
	if got := <-devices; !slices.Equal(got, []string{"GPU-t4"}) {
		t.Fatalf("the second task got %v", got)
	}
	// A second compute 8.0 task waits: the only device meeting it is taken.
	waiting := req.submit(t, gpuTask(&wire.GPURequirements{Compute: "8.0"}))
	select {
	case got := <-devices:
		t.Fatalf("a third task ran on %v while both GPUs were taken", got)
	case <-time.After(700 * time.Millisecond):
	}
	// The first two end: their devices are free, and the waiting task
	// gets the A100.
	close(release)
	for _, id := range []string{big, small} {
		if task := req.wait(t, id, 10*time.Second); task.State != market.StateCompleted {
			t.Fatalf("task %s: %s", task.State, task.Reason)
		}
	}
	select {
	case got := <-devices:
		if !slices.Equal(got, []string{"GPU-a100"}) {
			t.Fatalf("the waiting task got %v", got)
		}
	case <-time.After(10 * time.Second):
		cur, _ := req.r.Get(waiting)
		t.Fatalf("the waiting task never ran: %s: %s", cur.State, cur.Reason)
	}
	if task := req.wait(t, waiting, 15*time.Second); task.State != market.StateCompleted {
		t.Fatalf("waiting task %s: %s", task.State, task.Reason)
	}
	waitFor(t, 2*time.Second, "both GPUs free once every task ended", func() bool { return prov.p.Free().GPUs == 2 })
}
