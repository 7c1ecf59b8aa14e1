package node

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/storage/content"
)

// TestProviderCollectsFetchedBlocks: the blocks a provider fetched for a
// task (its module and an input, unpinned once written to the task's
// directory) are collected by the periodic GC, so no requestor can make a
// provider keep them on disk for good; the provider still runs the module
// afterwards (from its module cache).
func TestProviderCollectsFetchedBlocks(t *testing.T) {
	wasmPath := testimage.BuildWASM(t)
	log := slog.New(slog.DiscardHandler)
	prov, err := New(t.Context(), Config{Home: t.TempDir(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0",
		Provider: true, Executors: []string{"wasm"}, Logger: log, GCInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()
	req, err := New(t.Context(), Config{Home: t.TempDir(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0",
		Bootstrap: prov.Identity().Addrs, Logger: log, ProviderWait: 5 * time.Second, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	module, err := req.Add(t.Context(), wasmPath, AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	inPath := t.TempDir() // WASM mounts directories
	if err := os.WriteFile(filepath.Join(inPath, "input.bin"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	input, err := req.Add(t.Context(), inPath, AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	spec := TaskSpec{Runtime: "wasm", Image: module, Cmd: []string{"echo", "ok"}, TimeoutMS: 60_000,
		Inputs: []wire.Input{{CID: input, Path: "/data"}}}
	run := func() {
		t.Helper()
		sub, err := req.Submit(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := req.Wait(t.Context(), sub.ID)
		if err != nil || got.State != "completed" {
			t.Fatalf("task: %v %+v", err, got)
		}
	}
	run()
	inCID, _ := content.ParseCID(input)
	modCID, _ := content.ParseCID(module)
	held := func(c cid.Cid) bool { ok, _ := prov.content.Has(t.Context(), c); return ok }
	if !testwait.Until(t.Context(), 10*time.Second, 50*time.Millisecond, func() bool { return !held(inCID) && !held(modCID) }) {
		t.Fatalf("the provider still holds the fetched blocks (input %v, module %v)", held(inCID), held(modCID))
	}
	// The requestor's own content is pinned: its GC is off here, and it
	// would keep it anyway.
	if ok, _ := req.content.Has(t.Context(), inCID); !ok {
		t.Fatal("the requestor lost its input")
	}
	run() // the module runs from the provider's cache; the input is fetched again
}
