package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testwait"
)

// TestCheckpointSurvivesTwoProviderKills: a task that counts to 40, a step
// every 250 ms, with a checkpoint every 2 s, survives two SIGKILLs of the
// provider process running it: each time the requestor moves it to another
// provider, which resumes from the latest checkpoint; it completes on the
// third with the right total, and each kill loses at most one interval of
// work (8 steps, measured from the task's own log: the last count the
// killed run printed against where the next run resumed).
func TestCheckpointSurvivesTwoProviderKills(t *testing.T) {
	provs, req, _, mod := wasmSwarm(t, 3)
	const total, step, every = 40, 250 * time.Millisecond, 2 * time.Second
	out, stderr, code := offload(t, "run", "--home", req.home, "--json", "--runtime", "wasm", "--image", mod, "--timeout", "5m",
		"--retries", "3", "--checkpoint", "/checkpoint", "--checkpoint-every", every.String(),
		"--", "count", strconv.Itoa(total), step.String(), "/checkpoint")
	var sub struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("run: %d %s %s", code, out, stderr)
	}

	// Follow the task's own log throughout: lines by attempt.
	follow := exec.CommandContext(t.Context(), bin, "logs", "-f", sub.ID, "--home", req.home)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	follow.Stderr = &strings.Builder{}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	status := func() client.Task {
		out, _, _ := offload(t, "status", sub.ID, "--json", "--home", req.home)
		var task client.Task
		_ = json.Unmarshal([]byte(out), &task)
		return task
	}
	lastCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		for i := len(lines) - 1; i >= 0; i-- {
			if n, ok := strings.CutPrefix(lines[i], "count "); ok {
				v, _ := strconv.Atoi(n)
				return v
			}
		}
		return 0
	}
	var killedAt []int
	for kill := 0; kill < 2; kill++ {
		// Let the run get past a checkpoint (and past the previous count).
		base := lastCount()
		if !testwait.Until(t.Context(), 60*time.Second, 50*time.Millisecond, func() bool {
			return status().State == "running" && lastCount() >= base+10
		}) {
			t.Fatalf("kill %d: the task did not run on: %+v, log %q", kill+1, status(), lines)
		}
		task := status()
		p := provs[task.Provider]
		if p == nil {
			t.Fatalf("running on unknown provider %s", task.Provider)
		}
		p.kill()
		killedAt = append(killedAt, lastCount())
		t.Logf("kill %d: provider %s killed at count %d (attempt %d)", kill+1, task.Provider[len(task.Provider)-6:], killedAt[kill], task.Attempt)
	}
	final := waitTask(t, req.home, sub.ID, 3*time.Minute)
	if err := follow.Wait(); err != nil {
		t.Logf("logs -f: %v", err)
	}
	if final.State != "completed" || !strings.Contains(final.Stdout, fmt.Sprintf("total %d\n", total)) {
		t.Fatalf("task %s: %s\nstdout %q", final.State, final.Error, final.Stdout)
	}
	completedRuns := 0
	for _, e := range final.Executions {
		if e.State == "completed" {
			completedRuns++
		}
	}
	if completedRuns != 1 || len(final.Executions) < 3 {
		t.Fatalf("executions: %+v", final.Executions)
	}
	// Where each later run resumed, from the log.
	mu.Lock()
	var resumed []int
	for _, l := range lines {
		if n, ok := strings.CutPrefix(l, "resumed at "); ok {
			v, _ := strconv.Atoi(n)
			resumed = append(resumed, v)
		}
	}
	mu.Unlock()
	if len(resumed) != 2 {
		t.Fatalf("resumed %d times, want 2; log %q", len(resumed), lines)
	}
	perInterval := int(every / step)
	for i := range 2 {
		lost := killedAt[i] - resumed[i]
		t.Logf("kill %d: last count %d, resumed at %d: %d steps lost (one interval is %d)", i+1, killedAt[i], resumed[i], lost, perInterval)
		if lost < 0 || lost > perInterval+1 {
			t.Errorf("kill %d lost %d steps, more than one interval (%d)", i+1, lost, perInterval)
		}
	}
}

// waitTask polls the task's status until it is terminal.
func waitTask(t *testing.T, home, id string, d time.Duration) client.Task {
	t.Helper()
	var task client.Task
	if !testwait.Until(t.Context(), d, 200*time.Millisecond, func() bool {
		out, _, code := offload(t, "status", id, "--json", "--home", home)
		return code == 0 && json.Unmarshal([]byte(out), &task) == nil && task.Terminal()
	}) {
		t.Fatalf("task %s not terminal within %s: %+v", id, d, task)
	}
	return task
}
