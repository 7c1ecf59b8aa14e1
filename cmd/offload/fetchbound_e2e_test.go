package main_test

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
)

// TestInputOverDeclaredSizeAcrossNodeProcesses: through two `offload
// node` processes, a task file's input declared smaller than its content
// fails on the provider, which refuses it while fetching, with that reason
// and without trying again; the same input declared at its size runs.
// A bad --max-fetch is refused before the node starts.
func TestInputOverDeclaredSizeAcrossNodeProcesses(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	dir := t.TempDir()
	if _, stderr, code := offload(t, "node", "--home", filepath.Join(dir, "X"), "--max-fetch", "lots"); code == 0 || !strings.Contains(stderr, "--max-fetch") {
		t.Fatalf("a bad --max-fetch: exit %d: %s", code, stderr)
	}
	a := startNodeProc(t, filepath.Join(dir, "A"), "--provider", "--max-fetch", "64MiB")
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", a.id(t).Addrs[0])

	// 1 MiB the requestor does not hold (the provider does): the requestor
	// cannot check the declaration, the provider does.
	big := filepath.Join(dir, "big.bin")
	data := make([]byte, 1<<20)
	rand.Read(data)
	os.WriteFile(big, data, 0o644)
	out, _, code := offload(t, "add", "--home", a.home, big)
	if code != 0 {
		t.Fatal("add on the provider")
	}
	c := strings.TrimSpace(out)
	submit := func(size string) client.Task {
		t.Helper()
		file := filepath.Join(dir, "task-"+size+".yaml")
		os.WriteFile(file, []byte(`
image: `+testimage.DefaultTag+`
timeout: 1m
retries: 2
inputs:
  - {cid: `+c+`, path: /inputs/big.bin, size: `+size+`}
command: [/hello, echo, fetched]
`), 0o644)
		out, stderr, _ := offload(t, "submit", "--home", b.home, "-f", file, "--wait", "--json")
		var task client.Task
		if err := json.Unmarshal([]byte(out), &task); err != nil {
			t.Fatalf("submit: %v: %s %s", err, out, stderr)
		}
		return task
	}
	task := submit("1k")
	if task.State != "failed" || !strings.Contains(task.Error, "larger than its declared size of 1024 bytes") || len(task.Executions) != 1 {
		t.Fatalf("declared 1k: %s %q executions=%d\nprovider:\n%s", task.State, task.Error, len(task.Executions), a.log)
	}
	task = submit("2m")
	if task.State != "completed" || task.Stdout != "fetched\n" {
		t.Fatalf("declared 2m: %s %q %q", task.State, task.Stdout, task.Error)
	}
}
