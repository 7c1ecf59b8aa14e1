// Command embed shows offload as a library inside your own Go program: it
// starts a provider and a requestor in this process (loopback, temporary
// homes, no HTTP API), adds a WASM module as content, submits a task,
// follows its states with Watch and prints the result. It needs no Docker
// engine: the provider runs the module under wazero.
//
//	go run ./examples/embed
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

// run starts the two nodes, runs one task and writes what happens to out.
func run(ctx context.Context, out io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	// The workload: a tiny Go program compiled for WASI (GOOS=wasip1).
	// Any .wasm module that reads args and writes stdout works the same.
	bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	module, err := testimage.WASMFile(bctx)
	cancel()
	if err != nil {
		return fmt.Errorf("compile the wasm module: %w", err)
	}

	root, err := os.MkdirTemp("", "offload-embed-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(root)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	loopback := []string{"/ip4/127.0.0.1/tcp/0"}

	// A provider: sells compute, runs WASM only. Executors: []string{"wasm"}
	// would do; building the executor here keeps wazero's compiled modules
	// in the user cache dir, so a second run skips the compile (seconds).
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	ex, err := wasm.New(wasm.WithCacheDir(filepath.Join(cache, "offload-examples", "wasm")))
	if err != nil {
		return fmt.Errorf("wasm executor: %w", err)
	}
	defer ex.Close()
	prov, err := node.New(ctx, node.Config{
		Home: filepath.Join(root, "provider"), Listen: loopback,
		Provider: true, ExecutorImpls: []executor.Executor{ex}, Price: 0.001,
		Logger: log.With("node", "provider"),
	})
	if err != nil {
		return fmt.Errorf("start provider: %w", err)
	}
	defer prov.Close()

	// A requestor: joins the swarm through the provider's address.
	req, err := node.New(ctx, node.Config{
		Home: filepath.Join(root, "requestor"), Listen: loopback,
		Bootstrap: prov.Identity().Addrs, Logger: log.With("node", "requestor"),
	})
	if err != nil {
		return fmt.Errorf("start requestor: %w", err)
	}
	defer req.Close()
	say("provider  %s", prov.ID())
	say("requestor %s", req.ID())

	// The module travels as content: providers fetch it by CID.
	mod, err := req.Add(ctx, module, node.AddOptions{CIDVersion: 1})
	if err != nil {
		return fmt.Errorf("add module: %w", err)
	}
	say("module    %s", mod)

	t, err := req.Submit(ctx, node.TaskSpec{
		Runtime: "wasm", Image: mod, Cmd: []string{"echo", "hello", "from", "an", "embedded", "swarm"},
		TimeoutMS: 30_000, Retries: wire.Retries(1),
	})
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	say("task      %s submitted", t.ID)

	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var states []string
	err = req.Watch(wctx, t.ID, func(t *node.Task) error {
		if len(states) == 0 || states[len(states)-1] != t.State {
			states = append(states, t.State)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", t.ID, err)
	}
	say("states    %s", strings.Join(states, " → "))

	done, err := req.Get(t.ID)
	if err != nil {
		return fmt.Errorf("get %s: %w", t.ID, err)
	}
	if done.State != "completed" {
		return fmt.Errorf("task %s %s: %s", done.ID, done.State, done.Error)
	}
	say("provider  %s ran it (%.6f credits, wall %d ms)", short(done.Provider), done.Price, done.Usage.WallMS)
	say("stdout    %s", strings.TrimSpace(done.Stdout))
	return nil
}

// short abbreviates a peer ID for display.
func short(id string) string {
	if len(id) <= 12 {
		return id
	}
	return id[:6] + "…" + id[len(id)-6:]
}
