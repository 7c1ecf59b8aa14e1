package node_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/pyenv"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/node"
)

// TestPythonClient installs sdk/python into a fresh virtual environment
// with no package index and runs its unittest suite (sdk/python/tests),
// from outside the source tree, against a real provider and requestor:
// once with WASM tasks (no Docker needed), once with Docker tasks.
func TestPythonClient(t *testing.T) {
	python := pyenv.Install(t)
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
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "discover", "-v", "-s", filepath.Join(pyenv.SDK(), "tests"))
	cmd.Dir = t.TempDir() // not the source tree: `import offload` finds the installed copy
	cmd.Env = append(os.Environ(),
		"OFFLOAD_HOME="+home,
		"OFFLOAD_TEST_IMAGE="+image,
		"OFFLOAD_TEST_RUNTIME="+runtime,
		"OFFLOAD_TEST_PROVIDER="+provider,
		"OFFLOAD_TEST_INSTALLED=1",
		"PYTHONDONTWRITEBYTECODE=1",
	)
	out, err := cmd.CombinedOutput()
	t.Logf("python -m unittest (%s):\n%s", runtime, out)
	if err != nil {
		t.Fatalf("python client tests failed: %v", err)
	}
}
