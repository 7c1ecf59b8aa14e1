package testimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/moby/moby/client"
	"github.com/offload-project/offload/internal/scratchimage"
)

// CompileGo builds the Go main package in dir for goos/goarch with
// CGO_ENABLED=0 (a static binary for linux, a module for wasip1/wasm) and
// writes it to out. It uses the toolchain running the caller and the module
// cache, never the network beyond what `go build` itself needs.
func CompileGo(ctx context.Context, dir, goos, goarch, out string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("compile %s: %w", dir, err)
	}
	outAbs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("compile %s: %w", dir, err)
	}
	cmd := exec.CommandContext(ctx, goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", outAbs, ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w: %s", dir, goos, goarch, err, b)
	}
	return nil
}

// BuildImage compiles the Go main package in dir statically for linux and
// builds the image tag FROM scratch through the Engine API, with the binary
// at /NAME (NAME is the base name of dir) and CMD ["/NAME"]; there is no
// entrypoint, so a task's command starts with /NAME. The build context is a
// tar in memory and nothing is pulled. Like Build it does nothing when tag
// already holds the same binary (HashLabel). It returns /NAME.
func BuildImage(ctx context.Context, tag, dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", tag, err)
	}
	name := filepath.Base(abs)
	tmp, err := os.MkdirTemp("", "offload-buildimage-")
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", tag, err)
	}
	defer os.RemoveAll(tmp)
	binPath := filepath.Join(tmp, name)
	if err := CompileGo(ctx, abs, "linux", runtime.GOARCH, binPath); err != nil {
		return "", fmt.Errorf("build image %s: %w", tag, err)
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", tag, err)
	}
	sum := sha256.Sum256(bin)
	hash := hex.EncodeToString(sum[:])

	cli, err := client.New(client.FromEnv)
	if err != nil {
		return "", fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	if scratchimage.Current(ctx, cli, tag, HashLabel, hash) {
		return "/" + name, nil
	}
	buildCtx, err := scratchimage.Context("/"+name, bin, false)
	if err != nil {
		return "", err
	}
	if err := scratchimage.Build(ctx, cli, tag, map[string]string{HashLabel: hash}, buildCtx); err != nil {
		return "", err
	}
	return "/" + name, nil
}
