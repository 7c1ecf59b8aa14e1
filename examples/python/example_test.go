// Package python_test runs example.py with python3 against a real
// provider and requestor started in this process (WASM tasks, so no Docker
// engine is needed).
package python_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/node"
)

func TestExampleScript(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing")
		}
		t.Skip("python3 is missing")
	}
	module := testimage.BuildWASM(t)
	loopback := []string{"/ip4/127.0.0.1/tcp/0"}
	// A compilation cache shared between runs: wazero compiles the module
	// once (seconds), later runs load it.
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	ex, err := wasm.New(wasm.WithCacheDir(filepath.Join(cache, "offload-examples", "wasm")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.Close() })
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	prov, err := node.New(t.Context(), node.Config{Home: t.TempDir(), Listen: loopback, Provider: true,
		ExecutorImpls: []executor.Executor{ex}, Logger: quiet, AllowImages: []string{"offload-test/*"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.Close() })
	home := t.TempDir()
	req, err := node.New(t.Context(), node.Config{Home: home, Listen: loopback, Bootstrap: prov.Identity().Addrs, APIAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { req.Close() })
	mod, err := req.Add(t.Context(), module, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "example.py", "--runtime", "wasm", "--image", mod)
	cmd.Env = append(os.Environ(), "OFFLOAD_HOME="+home, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("python3 example.py:\n%s", out)
	if err != nil {
		t.Fatalf("example.py: %v", err)
	}
	for _, want := range []string{
		"callback greet-2: completed OFFLOAD_DATA=hello 2",
		"joined 3 tasks: completed, completed, completed",
		"run cat: completed 1 2 3 5 8 13",
		"report.txt: sum=32",
		"done",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
