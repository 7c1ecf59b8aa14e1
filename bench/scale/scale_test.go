package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
)

// TestMain lets the test binary serve as the harness's worker process:
// startWorker runs the binary it finds itself in with the argument
// "worker".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := runWorker(context.Background(), os.Stdin, os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString("scale worker: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHarnessQuick runs the harness end to end at two small N, with the
// providers in worker processes (three providers a process, so N=8 has
// three workers): every task completes, each after the targeted auction's
// three asks and with no announcement gossip, the counters, CPU and heap
// summed over the processes are filled in, and fresh requestors find
// candidates.
func TestHarnessQuick(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-n", "4,8", "-tasks", "40", "-inflight", "8", "-per-proc", "3",
		"-settle", "0", "-settle-min", "0", "-idle", "200ms", "-discover", "2", "-ready-known", "4", "-json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	var rs []result
	if err := json.Unmarshal(stdout.Bytes(), &rs); err != nil {
		t.Fatalf("results: %v\n%s", err, stdout.String())
	}
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	for _, r := range rs {
		if r.Completed != 40 || r.Failed != 0 {
			t.Errorf("N=%d: %d completed, %d failed (errors %v)", r.N, r.Completed, r.Failed, r.Errors)
		}
		if r.BidsMedian != 3 || r.AttemptsMedian != 1 || r.GossipTasksPerTask != 0 {
			t.Errorf("N=%d: bids %d, attempts %d, task gossip per task %.1f; want 3, 1, 0", r.N, r.BidsMedian, r.AttemptsMedian, r.GossipTasksPerTask)
		}
		// The ask/award/report streams are counted at both ends, across
		// processes: 13 messages on 5 streams per task in a long batch;
		// in one of 40 tasks the last tasks' "lost" verdicts and
		// acknowledgements may still be on their way when the counters
		// are read (10.4 on 4.1 seen), and none are O(N).
		if r.StreamMsgsPerTask < 9 || r.StreamMsgsPerTask > 14 || r.StreamsPerTask < 3.5 {
			t.Errorf("N=%d: %.1f stream messages on %.1f streams per task", r.N, r.StreamMsgsPerTask, r.StreamsPerTask)
		}
		if r.CPUPerTaskMS <= 0 || r.HeapPerNodeKiB <= 0 || r.TasksPerS <= 0 {
			t.Errorf("N=%d: CPU per task %.2f ms, heap per node %.0f KiB, %.1f tasks/s", r.N, r.CPUPerTaskMS, r.HeapPerNodeKiB, r.TasksPerS)
		}
		if d := r.Discovery; len(d.Runs) != 2 || d.Short[0] != 0 || d.P95MS[0] <= 0 {
			t.Errorf("N=%d: discovery %+v", r.N, d)
		}
	}
	t.Log(stderr.String())
}
