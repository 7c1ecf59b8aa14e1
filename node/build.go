package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/market/wire"
)

// Images built on a provider (`offload image build`): the requestor's node
// packs the context directory into a tarball (docker.ContextTar: modes
// kept, symlinks as symlinks, nothing followed, what the context's
// .dockerignore excludes left on this machine), checks it and its
// Dockerfile as a provider would (docker.CheckContext), adds it as private
// content and submits a task of the "build" runtime whose image is the
// Dockerfile's FROM. Only providers that offer builds (`node --build`,
// advertised as the executor "build") bid. The task's outputs are the
// built image's `docker save` tarball, as one file: once the task
// completed, its outputs CID (also its "image") runs as `--image CID`.

// BuildOptions are what Node.BuildImage builds.
type BuildOptions struct {
	// Context is the build context, an absolute directory on this node's
	// disk.
	Context string
	// Dockerfile is the Dockerfile's path inside the context (default
	// "Dockerfile").
	Dockerfile string
	// Args are build args (ARG values).
	Args map[string]string
	// TimeoutMS bounds the whole build (0: the provider's default).
	TimeoutMS int64
	// Memory bounds each RUN step (0: the provider's default).
	Memory int64
	// Tag names the build task (a label for people).
	Tag string
	// Network asks for a provider whose RUN steps may use a network (one
	// advertising wire.LabelBuildNetwork); by default builds have none.
	Network bool
	// Labels are further provider labels the build needs (wire.TaskSpec.Labels).
	Labels map[string]string
}

// ErrBadBuild marks a build request refused before anything was
// submitted: no such directory, no Dockerfile, a Dockerfile or a COPY
// that leaves the context, a malformed .dockerignore or a COPY of what it
// excludes, an instruction the builders do not know.
var ErrBadBuild = errors.New("bad build request")

// BuildImage checks and submits a build of o's context; it returns as soon
// as the task is stored (see Submit). When the task has completed, its
// Image is the built image's CID.
func (n *Node) BuildImage(ctx context.Context, o BuildOptions) (*Task, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadBuild, fmt.Sprintf(format, args...))
	}
	if !filepath.IsAbs(o.Context) {
		return nil, bad("context %q must be an absolute path", o.Context)
	}
	fi, err := os.Stat(o.Context)
	if err != nil {
		return nil, bad("context: %v", err)
	}
	if !fi.IsDir() {
		return nil, bad("context %s is not a directory", o.Context)
	}
	if o.Dockerfile == "" {
		o.Dockerfile = "Dockerfile"
	}
	if o.TimeoutMS < 0 || o.Memory < 0 {
		return nil, bad("negative timeout or memory")
	}
	tmp, err := os.CreateTemp("", "offload-build-context-*.tar")
	if err != nil {
		return nil, fmt.Errorf("image build: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := docker.ContextTar(o.Context, o.Dockerfile, tmp, 0); err != nil {
		if errors.Is(err, docker.ErrBadContext) {
			return nil, bad("%v", err)
		}
		return nil, fmt.Errorf("image build: %w", err)
	}
	base, err := docker.CheckContext(tmp.Name(), o.Dockerfile, o.Args, 0)
	if err != nil {
		if errors.Is(err, docker.ErrBadContext) || errors.Is(err, docker.ErrBadDockerfile) {
			return nil, bad("%s in %s: %v", o.Dockerfile, o.Context, err)
		}
		return nil, fmt.Errorf("image build: %w", err)
	}
	if _, err := tmp.Seek(0, 0); err != nil {
		return nil, fmt.Errorf("image build: %w", err)
	}
	c, err := n.AddReader(ctx, tmp, "build-context:"+o.Context, AddOptions{CIDVersion: 1, Temporary: true})
	if err != nil {
		return nil, fmt.Errorf("image build: add the context: %w", err)
	}
	name := o.Tag
	if name == "" {
		name = "image build " + filepath.Base(o.Context)
	}
	spec := TaskSpec{
		Runtime: wire.RuntimeBuild, Image: base, Cmd: []string{o.Dockerfile}, Env: o.Args,
		Inputs:    []wire.Input{{CID: c, Path: executor.BuildContextPath}},
		TimeoutMS: o.TimeoutMS, Resources: wire.Resources{MemoryBytes: o.Memory}, Name: name,
		Labels: maps.Clone(o.Labels),
	}
	if o.Network {
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[wire.LabelBuildNetwork] = wire.LabelAny
	}
	t, err := n.Submit(ctx, spec)
	if err != nil && errors.Is(err, wire.ErrInvalid) {
		return nil, bad("%v", err)
	}
	if err == nil {
		switch herr := n.HoldForTask(ctx, c, t.ID); {
		case errors.Is(herr, ErrNotHeld): // the same bytes are pinned for the user: kept so
			n.log.Debug("build context pinned for another reason", "cid", c, "err", herr)
		case herr != nil:
			n.log.Warn("hold a build context for its task", "cid", c, "task", t.ID, "err", herr)
		}
	}
	return t, err
}

// buildImage checks and submits a build; it answers 201 with the task,
// as POST /api/v1/tasks does, or 400 when the request was refused before
// anything was submitted.
func (s *apiServer) buildImage(w http.ResponseWriter, r *http.Request) {
	var req client.BuildRequest
	if !readJSON(w, r, &req) {
		return
	}
	t, err := s.n.BuildImage(r.Context(), BuildOptions{Context: req.Context, Dockerfile: req.Dockerfile,
		Args: req.BuildArgs, TimeoutMS: req.TimeoutMS, Memory: req.Memory, Tag: req.Tag,
		Network: req.Network, Labels: req.Labels})
	switch {
	case errors.Is(err, ErrBadBuild):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusCreated, t)
	}
}
