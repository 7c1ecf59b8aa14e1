package node_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

// TestDeclaredSizesBoundFetches: the requestor declares the size of the
// content it holds (a module, an input) at submit and refuses a smaller
// declaration; a provider refuses, while fetching, an input larger than
// its declared size, and the task fails on that reason without trying
// another provider, leaving no work directory behind.
func TestDeclaredSizesBoundFetches(t *testing.T) {
	wasmPath := testimage.BuildWASM(t)
	provHome := t.TempDir()
	prov := startNode(t, provHome, true, nil, func(c *node.Config) {
		c.Executors = []string{"wasm"}
		c.MaxFetchBytes = 64 << 20
	})
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	mod, err := req.Add(t.Context(), wasmPath, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() // WASM mounts directories only
	if err := os.WriteFile(filepath.Join(dir, "x.txt"), []byte("held by the requestor"), 0o644); err != nil {
		t.Fatal(err)
	}
	held, err := req.Add(t.Context(), dir, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}

	// Sizes of what the requestor holds are declared for it; the task runs.
	spec := node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"cat", "/inputs/small/x.txt"}, TimeoutMS: 60_000,
		Inputs: []wire.Input{{CID: held, Path: "/inputs/small"}}}
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Spec.ImageSize <= 0 || sub.Spec.Inputs[0].Size < int64(len("held by the requestor")) {
		t.Fatalf("sizes not declared: image %d, input %d", sub.Spec.ImageSize, sub.Spec.Inputs[0].Size)
	}
	if got := waitFor(t, req, sub.ID, time.Minute); got.State != "completed" || got.Stdout != "held by the requestor" {
		t.Fatalf("declared task: %s %q %q", got.State, got.Stdout, got.Error)
	}

	// A declaration below what the requestor holds is refused at submit.
	spec.Inputs[0].Size = 3
	if _, err := req.Submit(t.Context(), spec); !errors.Is(err, wire.ErrInvalid) || !strings.Contains(err.Error(), "declared size 3 bytes is smaller") {
		t.Fatalf("under-declared input submitted: %v", err)
	}

	// 1 MiB the requestor does not hold, declared at 1 KiB: the provider
	// (which happens to hold it) refuses it while fetching, and the task
	// fails on that reason after one execution although retries remain.
	big := make([]byte, 1<<20)
	rand.Read(big)
	bigCID, err := prov.AddReader(t.Context(), bytes.NewReader(big), "big", node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	spec.Inputs = []wire.Input{{CID: bigCID, Path: "/inputs/big", Size: 1024}}
	spec.Retries = wire.Retries(2)
	sub, err = req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "failed" || !strings.Contains(got.Error, "larger than its declared size of 1024 bytes") ||
		!strings.Contains(got.Error, "input "+bigCID) || len(got.Executions) != 1 {
		t.Fatalf("over-declared input: %s %q executions=%d", got.State, got.Error, len(got.Executions))
	}
	t.Logf("refused: %s", got.Error)
	// Nothing of the execution is left in the provider's work directory
	// (only the module cache may be).
	ents, _ := os.ReadDir(filepath.Join(provHome, "work"))
	for _, e := range ents {
		if e.Name() != "modules" {
			t.Errorf("left in the provider's work dir: %s", e.Name())
		}
	}
}
