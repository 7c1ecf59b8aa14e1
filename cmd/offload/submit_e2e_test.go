package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
)

func TestSubmitTaskFileWithStagesAndArtifacts(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	dir := t.TempDir()
	a := startNodeProc(t, filepath.Join(dir, "A"), "--provider")
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", a.id(t).Addrs[0])

	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "in.txt"), []byte("from a local input"), 0o644)
	file := filepath.Join(dir, "task.yaml")
	os.WriteFile(file, []byte(`
name: pipeline
image: `+testimage.DefaultTag+`
resources: {cpus: 1, memory: 128m}
timeout: 1m
inputs:
  - {local: ./data, path: /inputs/data}
stages:
  - name: copy
    command: [/hello, cat, /inputs/data/in.txt]
  - name: write
    command: [/hello, write, /work/step.txt, stage-two]
  - name: flaky
    command: [/hello, exit, "3"]
    continue_on_error: true
  - name: report
    command: [/hello, write, /outputs/report.txt, done]
artifacts: [/work/step.txt, /outputs/report.txt]
`), 0o644)

	out, stderr, code := offload(t, "submit", "--home", b.home, "-f", file, "--dry-run")
	if code != 0 || !strings.Contains(out, "valid (4 stages") {
		t.Fatalf("dry run: %d %s %s", code, out, stderr)
	}
	out, stderr, code = offload(t, "submit", "--home", b.home, "-f", file, "--wait", "--json")
	var task client.Task
	if code != 0 || json.Unmarshal([]byte(out), &task) != nil {
		t.Fatalf("submit: %d %s %s", code, out, stderr)
	}
	if len(task.Stages) != 4 || task.Stages[0].Stdout != "from a local input" || task.Stages[2].ExitCode != 3 || task.Stages[3].Name != "report" {
		t.Fatalf("stages: %+v", task.Stages)
	}
	// The local input was added for this task only: it is held for it
	// (the node releases it after the task, at its next collection).
	out, _, _ = offload(t, "ls", "--home", b.home, "--json")
	if !strings.Contains(out, `"task:`+task.ID+`"`) {
		t.Errorf("the local input is not held for its task: %s", out)
	}
	res := filepath.Join(dir, "res")
	if _, stderr, code := offload(t, "results", "--home", b.home, task.ID, "-o", res); code != 0 {
		t.Fatalf("results: %s", stderr)
	}
	for name, want := range map[string]string{"step.txt": "stage-two", "report.txt": "done"} {
		if got, _ := os.ReadFile(filepath.Join(res, name)); string(got) != want {
			t.Errorf("artifact %s = %q, want %q", name, got, want)
		}
	}

	// A failing stage stops the rest; a missing artifact fails the task.
	os.WriteFile(file, []byte("image: "+testimage.DefaultTag+"\nstages:\n  - {name: bad, command: [/hello, exit, \"2\"]}\n  - {name: never, command: [/hello, echo, x]}\n"), 0o644)
	out, _, code = offload(t, "submit", "--home", b.home, "-f", file, "--wait", "--json")
	if code == 0 || json.Unmarshal([]byte(out), &task) != nil || len(task.Stages) != 1 || *task.ExitCode != 2 {
		t.Fatalf("failing stage: %d %s", code, out)
	}
	os.WriteFile(file, []byte("image: "+testimage.DefaultTag+"\ncommand: [/hello, echo, x]\nartifacts: [/outputs/missing.bin]\n"), 0o644)
	out, _, code = offload(t, "submit", "--home", b.home, "-f", file, "--wait", "--json")
	if code == 0 || !strings.Contains(out, "missing.bin was not produced") {
		t.Fatalf("missing artifact: %d %s", code, out)
	}

	// A malformed file names the line and creates no task.
	os.WriteFile(file, []byte("image: x\nresources:\n  memory: lots\n"), 0o644)
	_, stderr, code = offload(t, "submit", "--home", b.home, "-f", file)
	if code == 0 || !strings.Contains(stderr, "line 3") {
		t.Fatalf("malformed file: %d %s", code, stderr)
	}
	out, _, _ = offload(t, "list", "--home", b.home, "--json")
	var list []client.Task
	json.Unmarshal([]byte(out), &list)
	if len(list) != 3 {
		t.Errorf("want 3 tasks (the malformed file created none), got %d", len(list))
	}
}
