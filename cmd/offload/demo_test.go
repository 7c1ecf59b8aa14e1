package main_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/testimage"
)

// TestDemo runs `offload demo` the way a user of an installed binary does:
// the binary is built with -trimpath, copied away from the build, and run
// from a directory outside the source tree with a PATH that holds no go
// command, HOME, OFFLOAD_HOME and TMPDIR in temporary directories and no GO*
// variables. It runs once with Docker (skipped when no engine answers,
// unless CI=true; scripts/ensure-docker.sh starts one) and once with
// DOCKER_HOST pointed at a socket that does not exist, which makes the demo
// take its WASM path. Both must complete the task; what the demo runs comes
// from the binary itself (package demoassets).
func TestDemo(t *testing.T) {
	installed := installedOffload(t)
	for _, c := range []struct {
		name   string
		docker bool
		want   []string
	}{
		{"docker", true, []string{"building the demo image", "executors [docker]"}},
		{"wasm", false, []string{"using the WASM runtime", "carried in this binary", "executors [wasm]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.docker {
				testimage.RequireDocker(t)
			}
			home, tmp, work := t.TempDir(), t.TempDir(), t.TempDir()
			if dir, ok := goModAbove(work); ok {
				t.Fatalf("working directory %s is inside a module (%s)", work, dir)
			}
			env := userEnv(t, home, tmp)
			if !c.docker {
				env = append(env, "DOCKER_HOST=unix:///nonexistent/docker.sock")
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, installed, "demo")
			cmd.Dir, cmd.Env = work, env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			out := stdout.String()
			if err != nil {
				t.Fatalf("offload demo: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
			}
			for _, want := range append([]string{
				"discovery: the requestor sees 2 providers",
				"completed",
				"won: lowest price",
				`exit code 0, stdout "hello from the swarm\n"`,
				"done: the task crossed the swarm and came back.",
			}, c.want...) {
				if !strings.Contains(out, want) {
					t.Errorf("demo output lacks %q:\n%s", want, out)
				}
			}
			// The demo removes its temporary homes (no --keep).
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("demo left %d entries in TMPDIR, e.g. %s", len(left), left[0].Name())
			}
		})
	}
}

// installedOffload builds the offload binary with -trimpath and copies it
// into a directory of its own, as an installed binary, returning its path.
func installedOffload(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build offload with")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	built := filepath.Join(t.TempDir(), "offload")
	if b, err := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", built, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -trimpath: %v\n%s", err, b)
	}
	installed := filepath.Join(t.TempDir(), "offload")
	src, err := os.Open(built)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(installed, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return installed
}

// userEnv is this process's environment as a user without Go would have it:
// no GO* or XDG_* variables, PATH without any directory holding a go
// command, and HOME, OFFLOAD_HOME and TMPDIR under the given directories.
func userEnv(t *testing.T, home, tmp string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GO") || strings.HasPrefix(k, "XDG_") || strings.HasPrefix(k, "CGO_") ||
			k == "PATH" || k == "HOME" || k == "OFFLOAD_HOME" || k == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	var path []string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, "go")); err == nil && !fi.IsDir() {
			continue
		}
		path = append(path, dir)
	}
	return append(env, "PATH="+strings.Join(path, string(filepath.ListSeparator)),
		"HOME="+home, "OFFLOAD_HOME="+filepath.Join(home, ".offload"), "TMPDIR="+tmp)
}

// goModAbove reports the first directory at or above dir holding a go.mod.
func goModAbove(dir string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
