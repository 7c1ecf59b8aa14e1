// Package pyenv gives tests a Python with the offload package installed the
// way its README tells users to install it: a fresh virtual environment
// (python3 -m venv) and `pip install --no-index --no-build-isolation
// sdk/python`, with no package index. Tests then run that environment's
// python from outside the source tree, so the installed copy is what they
// exercise.
package pyenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// SDK returns the absolute path of sdk/python in this source tree.
func SDK() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "sdk", "python")
}

// System returns the python3 on PATH; it skips the test when there is none,
// and fails it under CI=true, where Python is part of the test bed.
func System(t testing.TB) string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing")
		}
		t.Skip("python3 is missing")
	}
	return python
}

// Install makes a virtual environment in a temporary directory of t,
// installs sdk/python into it offline, and returns the environment's
// python. The environment is removed when t ends.
func Install(t testing.TB) string {
	t.Helper()
	python := System(t)
	dir := filepath.Join(t.TempDir(), "venv")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		// Out of the source tree, and no user configuration that could
		// point pip at an index.
		cmd.Dir = filepath.Dir(dir)
		cmd.Env = append(os.Environ(), "PIP_CONFIG_FILE="+os.DevNull, "PIP_NO_INDEX=1", "PIP_DISABLE_PIP_VERSION_CHECK=1",
			"PYTHONDONTWRITEBYTECODE=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run(python, "-m", "venv", dir)
	venvPython := filepath.Join(dir, "bin", "python")
	run(venvPython, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation", SDK())
	return venvPython
}
