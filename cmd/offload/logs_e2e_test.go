package main_test

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLogsFollowAcrossRequestorRestart: a task that prints a line a second
// is followed with `offload logs -f` from its first line; each line
// arrives within a second of being written (the line carries the time it
// was written); the requestor node is restarted mid-way and `logs -f`
// picks up again where it was, so every line is printed once, in order,
// and it exits 0 when the task ends.
func TestLogsFollowAcrossRequestorRestart(t *testing.T) {
	dir := t.TempDir()
	prov := startNodeProc(t, filepath.Join(dir, "P"), "--provider", "--executors", "wasm")
	boot := prov.id(t).Addrs[0]
	req := startNodeProc(t, filepath.Join(dir, "R"), "--bootstrap", boot)
	mod := addWASM(t, req.home)
	const ticks = 8
	out, stderr, code := offload(t, "run", "--home", req.home, "--json", "--runtime", "wasm", "--image", mod, "--timeout", "2m", "--", "tick", strconv.Itoa(ticks), "1s")
	var sub struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil || sub.ID == "" {
		t.Fatalf("run: %d %s %s", code, out, stderr)
	}

	follow := exec.CommandContext(t.Context(), bin, "logs", "-f", sub.ID, "--home", req.home)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var followErr strings.Builder
	follow.Stderr = &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var got []string
	var worst time.Duration
	restarted := false
	timeout := time.After(90 * time.Second)
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				break read
			}
			arrived := time.Now()
			got = append(got, line)
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "tick" || f[1] != strconv.Itoa(len(got)) {
				t.Fatalf("line %d is %q; so far %q", len(got), line, got)
			}
			ns, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if lag := arrived.Sub(time.Unix(0, ns)); !restarted || len(got) > 4 {
				worst = max(worst, lag)
			}
			if len(got) == 3 && !restarted {
				// Restart the requestor: `logs -f` must wait and go on.
				restarted = true
				req.stop(t)
				req = startNodeProc(t, req.home, "--bootstrap", boot)
			}
		case <-timeout:
			t.Fatalf("logs -f printed %d lines in 90 s: %q\nstderr: %s", len(got), got, followErr.String())
		}
	}
	if err := follow.Wait(); err != nil {
		t.Fatalf("logs -f exited with %v after %q\nstderr: %s", err, got, followErr.String())
	}
	if len(got) != ticks {
		t.Fatalf("printed %d lines, want %d: %q\nstderr: %s", len(got), ticks, got, followErr.String())
	}
	if worst > time.Second {
		t.Fatalf("a line arrived %s after it was written", worst)
	}
	t.Logf("all %d lines once and in order across a requestor restart; slowest line outside the restart: %s", ticks, worst.Round(time.Millisecond))

	// Without -f after the end: the whole output.
	out, _, code = offload(t, "logs", sub.ID, "--home", req.home)
	if code != 0 || strings.Count(out, "tick ") != ticks {
		t.Fatalf("logs after the end: %d %q", code, out)
	}
}
