package main_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
)

// wasmSwarm starts n WASM provider processes (the first the others' and
// the requestor's bootstrap) and a requestor process whose pool lists all
// of them (a targeted auction asks only providers in the pool), adds the
// test program's WASM module on the requestor, and returns the providers
// by peer id, the requestor, the bootstrap address and the module's CID.
func wasmSwarm(t *testing.T, n int) (map[string]*nodeProc, *nodeProc, string, string) {
	t.Helper()
	dir := t.TempDir()
	first := startNodeProc(t, filepath.Join(dir, "P0"), "--provider", "--executors", "wasm")
	boot := first.id(t).Addrs[0]
	provs := map[string]*nodeProc{first.id(t).ID: first}
	for i := 1; i < n; i++ {
		p := startNodeProc(t, filepath.Join(dir, fmt.Sprintf("P%d", i)), "--provider", "--executors", "wasm", "--bootstrap", boot)
		provs[p.id(t).ID] = p
	}
	req := startNodeProc(t, filepath.Join(dir, "R"), "--bootstrap", boot)
	if !testwait.Until(t.Context(), 30*time.Second, 200*time.Millisecond, func() bool {
		out, _, code := offload(t, "pool", "--json", "--home", req.home, "--executor", "wasm")
		var ps []client.Provider
		return code == 0 && json.Unmarshal([]byte(out), &ps) == nil && len(ps) == n
	}) {
		t.Fatalf("the requestor's pool never listed the %d providers", n)
	}
	return provs, req, boot, addWASM(t, req.home)
}

// addWASM adds the test program's WASM module on the node at home and
// returns its CID.
func addWASM(t *testing.T, home string) string {
	t.Helper()
	out, stderr, code := offload(t, "add", "--json", "--home", home, testimage.BuildWASM(t))
	var added struct{ CID string }
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil {
		t.Fatalf("add: %d %s %s", code, out, stderr)
	}
	return added.CID
}
