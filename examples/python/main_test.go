// Package python_test runs the Python examples with the installed offload
// package (a fresh venv, no index) against real `offload node` processes.
package python_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-project/offload/examples/internal/clitest"
)

func TestMain(m *testing.M) { os.Exit(clitest.Main(m)) }

// runScript runs the example script (a file of this directory) with the
// venv's python against the requestor whose home is home, from a
// directory outside the source tree (so the installed package is what it
// imports), and returns its output; the test fails when it exits non-zero.
func runScript(t *testing.T, python, home, script string, args ...string) string {
	t.Helper()
	path, err := filepath.Abs(script)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), "OFFLOAD_HOME="+home, "PYTHONDONTWRITEBYTECODE=1")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", script, out)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return string(out)
}
