package node_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/node"
)

// TestImageBuildRequests: POST /api/v1/images/build answers 201 with the
// task (as POST /api/v1/tasks does) for a good request, and 400 with a
// clear message, before anything is submitted, for one a provider would
// refuse. No provider and no Docker are needed.
func TestImageBuildRequests(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.ProviderWait = 200 * time.Millisecond })
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	write := func(name, body string) {
		p := filepath.Join(ctxDir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM scratch\nCOPY app /app\nCMD [\"/app\"]\n")
	write("app", "x")
	write("sub/bad.Dockerfile", "FROM scratch\nMAINTAINER me\n")
	write("sub/escape.Dockerfile", "FROM scratch\nCOPY ../../etc/passwd /x\n")
	os.Symlink("/etc", filepath.Join(ctxDir, "out"))
	write("sub/link.Dockerfile", "FROM scratch\nCOPY out/passwd /x\n")
	write(".dockerignore", "# kept on this machine\n.env\n")
	write(".env", "TOKEN=hunter2")
	write("sub/env.Dockerfile", "FROM scratch\nCOPY .env /x\n")
	write("sub/badignore/Dockerfile", "FROM scratch\n")
	write("sub/badignore/.dockerignore", "ok\n[oops\n")
	empty := t.TempDir()

	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for _, c := range []struct {
		name string
		body string
		want string
	}{
		{"relative context", `{"context":"rel"}`, "must be an absolute path"},
		{"no such dir", js(map[string]any{"context": filepath.Join(empty, "nope")}), "no such file"},
		{"no Dockerfile", js(map[string]any{"context": empty}), "Dockerfile is not in the build context"},
		{"Dockerfile outside", js(map[string]any{"context": ctxDir, "dockerfile": "../Dockerfile"}), "leaves the build context"},
		{"unknown instruction", js(map[string]any{"context": ctxDir, "dockerfile": "sub/bad.Dockerfile"}), `line 2: unknown or unsupported instruction "MAINTAINER"`},
		{"COPY outside", js(map[string]any{"context": ctxDir, "dockerfile": "sub/escape.Dockerfile"}), "leaves the build context"},
		{"COPY through a link out", js(map[string]any{"context": ctxDir, "dockerfile": "sub/link.Dockerfile"}), "points out of the build context"},
		{"COPY of what .dockerignore excludes", js(map[string]any{"context": ctxDir, "dockerfile": "sub/env.Dockerfile"}),
			`line 2: COPY: build context refused: .env is not in the build context: .dockerignore line 2 (".env") leaves it out`},
		{"malformed .dockerignore", js(map[string]any{"context": filepath.Join(ctxDir, "sub", "badignore")}), `.dockerignore line 2: "[oops": syntax error in pattern`},
		{"negative memory", js(map[string]any{"context": ctxDir, "memory": -1}), "negative"},
		{"unknown field", js(map[string]any{"context": ctxDir, "colour": 1}), "unknown field"},
		{"bad label", js(map[string]any{"context": ctxDir, "labels": map[string]string{"a=b": "c"}}), "label requirement"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := apiCall{method: "POST", path: "/api/v1/images/build", body: c.body}.do(t, cl)
			var e client.Error
			json.Unmarshal(body, &e)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e.Error, c.want) {
				t.Errorf("%d %s, want 400 with %q", resp.StatusCode, body, c.want)
			}
		})
	}
	if ts, _ := n.List(); len(ts) != 0 {
		t.Fatalf("a refused build submitted %d tasks", len(ts))
	}

	resp, body := apiCall{method: "POST", path: "/api/v1/images/build",
		body: js(map[string]any{"context": ctxDir, "timeout_ms": 60000, "memory": 64 << 20, "tag": "app:1", "build_args": map[string]string{"A": "b"},
			"network": true, "labels": map[string]string{"zone": "eu"}})}.do(t, cl)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var task client.Task
	if err := json.Unmarshal(body, &task); err != nil || task.ID == "" {
		t.Fatalf("%v: %s", err, body)
	}
	s := task.Spec
	if s.Runtime != "build" || s.Image != "scratch" || len(s.Cmd) != 1 || s.Cmd[0] != "Dockerfile" || s.TimeoutMS != 60000 ||
		s.Resources.MemoryBytes != 64<<20 || s.Name != "app:1" || s.Env["A"] != "b" || len(s.Inputs) != 1 || s.Inputs[0].Path != "/context" || s.Inputs[0].Size == 0 {
		t.Errorf("spec %+v", s)
	}
	if len(s.Labels) != 2 || s.Labels["build-network"] != "*" || s.Labels["zone"] != "eu" {
		t.Errorf("a build asking for the network and zone=eu has labels %v", s.Labels)
	}
	if task.Image != "" {
		t.Errorf("an unfinished build has image %q", task.Image)
	}
}
