// Package scratchimage builds a Docker image FROM scratch that holds one
// static program, through the Docker Engine API: nothing is pulled and the
// docker CLI is never run. The demo (cmd/offload) and the tests' images
// (internal/testimage) are built with it.
package scratchimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// Context returns a build context (a tar): a Dockerfile that copies the
// program bin to the absolute path prog in an empty image and runs it, as
// the ENTRYPOINT when entrypoint is true (a task's command is then its
// arguments) or else as the default CMD.
func Context(prog string, bin []byte, entrypoint bool) (io.Reader, error) {
	name := path.Base(prog)
	run := "CMD"
	if entrypoint {
		run = "ENTRYPOINT"
	}
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY %s %s\n%s [%q]\n", name, prog, run, prog)
	return Tar(File{Name: "Dockerfile", Mode: 0o644, Data: []byte(dockerfile)}, File{Name: name, Mode: 0o755, Data: bin})
}

// File is one regular file of a build context.
type File struct {
	Name string
	Mode int64
	Data []byte
}

// Tar returns a build context (a tar in memory) holding files, each with
// a fixed modification time so that equal contexts are equal bytes.
func Tar(files ...File) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.Name, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("build context: %w", err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	return &buf, nil
}

// Current reports whether the engine holds tag with label key set to
// value (e.g. the program's hash), so a build can be skipped.
func Current(ctx context.Context, cli *client.Client, tag, key, value string) bool {
	img, err := cli.ImageInspect(ctx, tag)
	return err == nil && img.Config != nil && img.Config.Labels[key] == value
}

// Build builds buildCtx as tag with labels and no network, reads the
// build's progress stream to its end (the build finishes only then, and
// its errors arrive inside it), and checks that the image is there.
func Build(ctx context.Context, cli *client.Client, tag string, labels map[string]string, buildCtx io.Reader) error {
	res, err := cli.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags:        []string{tag},
		Labels:      labels,
		Remove:      true,
		ForceRemove: true,
		NetworkMode: "none",
		Version:     build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("image build %s: %w", tag, err)
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
			return fmt.Errorf("image build %s: read progress: %w", tag, err)
		}
		if m.Error != nil {
			return fmt.Errorf("image build %s: %s (log: %s)", tag, m.Error.Message, log.String())
		}
		log.WriteString(m.Stream)
	}
	if _, err := cli.ImageInspect(ctx, tag); err != nil {
		return fmt.Errorf("image build %s: not there after build: %w (log: %s)", tag, err, log.String())
	}
	return nil
}

// DockerAvailable reports whether a Docker engine answers, as found through
// the DOCKER_HOST family of environment variables (what the node's docker
// executor uses too), within 5 s.
func DockerAvailable(ctx context.Context) error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("docker ping %s: %w", cli.DaemonHost(), err)
	}
	return nil
}
