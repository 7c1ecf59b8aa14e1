// Package testimage builds the test workloads shared by the executor tests
// and by other packages' integration tests: the hello program in ./hello,
// compiled statically for Linux and packed into a Docker image FROM scratch
// (built through the Engine API from an in-memory tar, never pulled), and the
// same program compiled for WASI preview 1.
//
// Nothing here touches the network: the Go toolchain builds from the module
// cache and the image has no base layer.
package testimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/offload-project/offload/internal/scratchimage"
)

// DefaultTag is the image tag tests use unless they need their own.
const DefaultTag = "offload-test/hello:latest"

// HashLabel is the image label holding the sha256 of the hello binary inside,
// so that Build can skip images that are already up to date.
const HashLabel = "offload.testimage.hash"

// DockerAvailable reports whether a Docker engine answers locally
// (scratchimage.DockerAvailable).
func DockerAvailable(ctx context.Context) error { return scratchimage.DockerAvailable(ctx) }

// RequireDocker skips the test when no Docker engine answers, or fails it
// when the environment variable CI is "true" (CI starts an engine, so a
// missing one there is a broken setup, not a reason to skip).
func RequireDocker(tb testing.TB) {
	tb.Helper()
	err := DockerAvailable(context.Background())
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("docker engine required under CI: %v", err)
	}
	tb.Skipf("no docker engine (start one with scripts/ensure-docker.sh): %v", err)
}

// Ensure makes sure the hello image tagged tag exists (building it when
// missing or stale) and skips or fails the test like RequireDocker when no
// engine answers.
func Ensure(tb testing.TB, tag string) {
	tb.Helper()
	RequireDocker(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := Build(ctx, tag); err != nil {
		tb.Fatalf("build test image %s: %v", tag, err)
	}
}

// Build compiles hello for linux (CGO_ENABLED=0) and builds the image tag
// FROM scratch with /hello as its entrypoint, through the Engine API. It does
// nothing when tag already exists with the same binary (HashLabel).
func Build(ctx context.Context, tag string) error {
	bin, err := binary(ctx, "hello", "linux", runtime.GOARCH)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read hello binary: %w", err)
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])

	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()

	if scratchimage.Current(ctx, cli, tag, HashLabel, hash) {
		return nil
	}
	buildCtx, err := scratchimage.Context("/hello", data, true)
	if err != nil {
		return err
	}
	return scratchimage.Build(ctx, cli, tag, map[string]string{HashLabel: hash}, buildCtx)
}

var wasmOnce struct {
	sync.Once
	path string
	err  error
}

// BuildWASM compiles hello with GOOS=wasip1 GOARCH=wasm and returns the path
// of the .wasm file. It builds once per test process.
func BuildWASM(tb testing.TB) string {
	tb.Helper()
	wasmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		wasmOnce.path, wasmOnce.err = binary(ctx, "hello", "wasip1", "wasm")
	})
	if wasmOnce.err != nil {
		tb.Fatalf("build hello.wasm: %v", wasmOnce.err)
	}
	return wasmOnce.path
}

// WASMFile compiles hello for WASI preview 1 (cached) and returns the .wasm
// path; for programs such as `offload demo` that have no testing.TB.
func WASMFile(ctx context.Context) (string, error) {
	return binary(ctx, "hello", "wasip1", "wasm")
}

var (
	binMu    sync.Mutex
	binCache = map[string]string{}
)

// binary builds the program ./PROGRAM for goos/goarch into a per-user cache
// directory (once per process, program and target) and returns its path.
func binary(ctx context.Context, program, goos, goarch string) (string, error) {
	key := program + "_" + goos + "_" + goarch
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binCache[key]; ok {
		return p, nil
	}
	src, err := sourceDir(program)
	if err != nil {
		return "", err
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "offload-testimage")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%s cache dir: %w", program, err)
	}
	name := key
	if goos == "wasip1" {
		name += ".wasm"
	}
	out := filepath.Join(dir, name)
	// Build into a temporary name and rename, since test processes of other
	// packages may build the same file at the same time.
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return "", fmt.Errorf("%s temp file: %w", program, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := CompileGo(ctx, src, goos, goarch, tmp.Name()); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("%s binary: %w", program, err)
	}
	binCache[key] = out
	return out, nil
}

// sourceDir finds the sources of the program called name (a directory
// next to this file holding main.go).
func sourceDir(name string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("testimage: cannot locate the %s sources", name)
	}
	dir := filepath.Join(filepath.Dir(file), name)
	if _, err := os.Stat(filepath.Join(dir, "main.go")); err != nil {
		return "", fmt.Errorf("testimage: %s sources: %w", name, err)
	}
	return dir, nil
}

// goTool is the go command of the toolchain running the tests, falling back
// to the one on PATH.
func goTool() string {
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// HelloBinary returns the path of the hello program compiled statically
// for linux (built once per process), for tests that put it into an
// image themselves.
func HelloBinary(ctx context.Context) (string, error) {
	return binary(ctx, "hello", "linux", runtime.GOARCH)
}
