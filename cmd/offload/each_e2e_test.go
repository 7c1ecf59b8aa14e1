package main_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
)

// TestEachOnThreeProviderProcesses: `offload run --each` on a requestor
// that knows three WASM providers runs the task once on each of them, each
// run with its own result, and `offload status` shows the three together.
func TestEachOnThreeProviderProcesses(t *testing.T) {
	dir := t.TempDir()
	first := startNodeProc(t, filepath.Join(dir, "P0"), "--provider", "--executors", "wasm")
	boot := first.id(t).Addrs[0]
	provs := []*nodeProc{first}
	for i := 1; i < 3; i++ {
		provs = append(provs, startNodeProc(t, filepath.Join(dir, fmt.Sprintf("P%d", i)), "--provider", "--executors", "wasm", "--bootstrap", boot))
	}
	req := startNodeProc(t, filepath.Join(dir, "R"), "--bootstrap", boot)
	want := map[string]bool{}
	for _, p := range provs {
		want[p.id(t).ID] = true
	}
	if !testwait.Until(t.Context(), 30*time.Second, 200*time.Millisecond, func() bool {
		out, _, code := offload(t, "pool", "--json", "--home", req.home, "--executor", "wasm")
		var ps []client.Provider
		return code == 0 && json.Unmarshal([]byte(out), &ps) == nil && len(ps) == 3
	}) {
		t.Fatal("the requestor's pool never listed the three providers")
	}
	out, stderr, code := offload(t, "add", "--json", "--home", req.home, testimage.BuildWASM(t))
	var added struct{ CID string }
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil {
		t.Fatalf("add: %d %s %s", code, out, stderr)
	}

	out, stderr, code = offload(t, "run", "--home", req.home, "--each", "--wait", "--json", "--runtime", "wasm", "--image", added.CID, "--", "echo", "from-each")
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
