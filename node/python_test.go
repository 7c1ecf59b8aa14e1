package node_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/node"
)

// TestPythonClient runs sdk/python's unittest suite against a real
// provider and requestor: once with WASM tasks (no Docker needed), once
// with Docker tasks.
func TestPythonClient(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing")
		}
		t.Skip("python3 is missing")
	}
	t.Run("wasm", func(t *testing.T) {
		wasmPath := testimage.BuildWASM(t)
		prov := startNode(t, t.TempDir(), true, nil, func(c *node.Config) { c.Executors = []string{"wasm"} })
		reqHome := t.TempDir()
		req := startNode(t, reqHome, false, prov.Identity().Addrs)
		mod, err := req.Add(t.Context(), wasmPath, node.AddOptions{CIDVersion: 1})
		if err != nil {
			t.Fatal(err)
		}
		runPythonSuite(t, python, reqHome, mod, "wasm", prov.ID().String())
	})
	t.Run("docker", func(t *testing.T) {
		testimage.RequireDocker(t)
		testimage.Ensure(t, testimage.DefaultTag)
		prov := startNode(t, t.TempDir(), true, nil)
		reqHome := t.TempDir()
		startNode(t, reqHome, false, prov.Identity().Addrs)
		runPythonSuite(t, python, reqHome, testimage.DefaultTag, "docker", prov.ID().String())
	})
}

func runPythonSuite(t *testing.T, python, home, image, runtime, provider string) {
	t.Helper()
	sdk, err := filepath.Abs(filepath.Join("..", "sdk", "python"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "-v", "test_offload")
	cmd.Dir = sdk
	cmd.Env = append(os.Environ(),
		"OFFLOAD_HOME="+home,
		"OFFLOAD_TEST_IMAGE="+image,
		"OFFLOAD_TEST_RUNTIME="+runtime,
		"OFFLOAD_TEST_PROVIDER="+provider,
		"PYTHONDONTWRITEBYTECODE=1",
	)
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest (%s):\n%s", runtime, out)
	if err != nil {
		t.Fatalf("python client tests failed: %v", err)
	}
}
