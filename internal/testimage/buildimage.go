package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
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
	if img, err := cli.ImageInspect(ctx, tag); err == nil &&
		img.Config != nil && img.Config.Labels[HashLabel] == hash {
		return "/" + name, nil
	}

	dockerfile := fmt.Sprintf("FROM scratch\nCOPY %s /%s\nCMD [\"/%s\"]\n", name, name, name)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {name, 0o755, bin}} {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("build context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", fmt.Errorf("build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("build context: %w", err)
	}

	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags:        []string{tag},
		Labels:      map[string]string{HashLabel: hash},
		Remove:      true,
		ForceRemove: true,
		NetworkMode: "none",
		Version:     build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("image build %s: %w", tag, err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	var log bytes.Buffer
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("image build %s: read progress: %w", tag, err)
		}
		if m.Error != nil {
			return "", fmt.Errorf("image build %s: %s (log: %s)", tag, m.Error.Message, log.String())
		}
		log.WriteString(m.Stream)
	}
	if _, err := cli.ImageInspect(ctx, tag); err != nil {
		return "", fmt.Errorf("image build %s: not there after build: %w (log: %s)", tag, err, log.String())
	}
	return "/" + name, nil
}
