package main_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/offload-project/offload/client"
)

// TestEachOnThreeProviderProcesses: `offload run --each` on a requestor
// that knows three WASM providers runs the task once on each of them, each
// run with its own result, and `offload status` shows the three together.
func TestEachOnThreeProviderProcesses(t *testing.T) {
	provs, req, _, mod := wasmSwarm(t, 3)
	want := map[string]bool{}
	for id := range provs {
		want[id] = true
	}

	out, stderr, code := offload(t, "run", "--home", req.home, "--each", "--wait", "--json", "--runtime", "wasm", "--image", mod, "--", "echo", "from-each")
	var parent client.Task
	if code != 0 || json.Unmarshal([]byte(out), &parent) != nil {
		t.Fatalf("run --each: %d\n%s\n%s", code, out, stderr)
	}
	if parent.State != "completed" || len(parent.Children) != 3 {
		t.Fatalf("parent %s (%s) with %d children", parent.State, parent.Error, len(parent.Children))
	}
	for _, c := range parent.Children {
		out, _, code := offload(t, "status", c.ID, "--json", "--home", req.home)
		var child client.Task
		if code != 0 || json.Unmarshal([]byte(out), &child) != nil {
			t.Fatalf("status %s: %d %s", c.ID, code, out)
		}
		if child.State != "completed" || child.Stdout != "from-each\n" || !want[child.Provider] || child.Spec.Provider != child.Provider {
			t.Fatalf("child %d: %s on %s (pinned %s), stdout %q", c.Piece, child.State, child.Provider, child.Spec.Provider, child.Stdout)
		}
		delete(want, child.Provider)
	}
	if len(want) != 0 {
		t.Fatalf("no run on %v", want)
	}
	text, _, code := offload(t, "status", parent.ID, "--home", req.home)
	if code != 0 || strings.Count(text, "child ") != 3 || strings.Count(text, "completed on ") != 3 {
		t.Fatalf("status of the parent:\n%s", text)
	}
}
