package docker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
)

// BuildName is the runtime name of the image builder in specs and adverts.
const BuildName = "build"

// DefaultMaxBuildImageBytes bounds the size of a built image (base
// included) unless WithMaxBuildImage says otherwise.
const DefaultMaxBuildImageBytes = 1 << 30

// diskWatchEvery is how often a RUN step's writes are measured against
// the image size limit while it runs.
const diskWatchEvery = 500 * time.Millisecond

// defaultBuildUser is who RUN runs as and who owns what COPY adds when the
// Dockerfile names no numeric, non-root USER.
const defaultBuildUser = UnprivilegedUser

var (
	_ executor.Executor = (*Builder)(nil)
	// ErrBuildTooLarge: the image grew past the builder's size limit.
	ErrBuildTooLarge = errors.New("image over the build size limit")
	// ErrBuildNetwork: the network of WithBuildNetwork is not on the
	// engine (or is no network RUN steps may join). Available and Run
	// wrap it with executor.ErrUnavailable: the provider's setup, not the
	// build, is at fault.
	ErrBuildNetwork = errors.New("build network unavailable")
)

// Builder builds Docker images from a Dockerfile and a context, as a task
// (runtime "build"): the Spec's Image is the base (FROM), its mount at
// executor.BuildContextPath the context tarball (ContextTar), Cmd[0] (optional)
// the Dockerfile's path in the context (default "Dockerfile"), Env the
// build args, Limits the bounds of each RUN step and Timeout the bound of
// the whole build. The image is written as a `docker save` tarball to
// Spec.OutputsDir/executor.BuildOutput.
//
// The engine's builder is never used: its RUN containers would not be
// sandboxed as tasks are. The Dockerfile is interpreted here
// (dockerfile.go): each RUN is a container with a task's sandbox (no
// network unless the operator allows one, WithBuildNetwork; all
// capabilities dropped, no-new-privileges, pids, memory and
// CPU limits, never root, the same runtime) except for a writable root
// filesystem, committed as the next layer once it exits with status 0;
// COPY and ADD put the context's files into a created, never started
// container and commit it; the other instructions only change the image
// config. The image's size is checked after every step and measured
// while RUN writes; every container and image the build made is removed
// on every way out, success included (the result is the tarball).
//
// With WithBuildNetwork the RUN containers (and only they: COPY and ADD
// containers are never started and keep no network) join the operator's
// Docker network instead of having none; the rest of the sandbox is the
// same.
type Builder struct {
	e          *Executor
	maxImage   int64
	maxContext int64
	network    string // the Docker network RUN steps join; "" for none
}

// BuildOption configures a Builder.
type BuildOption func(*Builder) error

// WithMaxBuildImage bounds a built image's size (default
// DefaultMaxBuildImageBytes).
func WithMaxBuildImage(n int64) BuildOption {
	return func(b *Builder) error {
		if n <= 0 {
			return fmt.Errorf("docker build: max image bytes must be positive, got %d", n)
		}
		b.maxImage = n
		return nil
	}
}

// WithMaxContext bounds a build context's file bytes (default
// DefaultMaxContextBytes).
func WithMaxContext(n int64) BuildOption {
	return func(b *Builder) error {
		if n <= 0 {
			return fmt.Errorf("docker build: max context bytes must be positive, got %d", n)
		}
		b.maxContext = n
		return nil
	}
}

// WithBuildNetwork lets the RUN steps of builds join the Docker network
// called name (e.g. "bridge", or a network the operator created for
// builds) so that `RUN apt-get install ...` can download; the empty name
// keeps the default, no network. Everything else of the sandbox stays: all
// capabilities dropped, no-new-privileges, never root, the limits, gVisor
// when the step runs under it (gVisor is registered with --network=none,
// see DefaultGVisorRuntime, so a step under it still has no network).
// COPY and ADD containers never get a network.
//
// A step reaches whatever that network reaches: with "bridge", the
// outside world through the host's NAT and every address the host
// listens on from that bridge. An operator who allows it had better give
// builds a network of their own (see SECURITY.md).
//
// The name must be a Docker network's name: letters, digits, '_', '.',
// '-', starting with a letter or digit. Modes that share a namespace with
// the host or another container ("host", "container:ID", and any name
// with ':') are refused, as are "none" (leave the name empty) and
// "default" (name the network). That the network exists, and is not the
// host's, is checked by Available (a node checks it when it starts) and
// again before each build.
func WithBuildNetwork(name string) BuildOption {
	return func(b *Builder) error {
		if err := checkBuildNetworkName(name); err != nil {
			return fmt.Errorf("docker build: network %q: %w", name, err)
		}
		b.network = name
		return nil
	}
}

// maxNetworkName bounds a build network's name (it is also advertised as
// a label value).
const maxNetworkName = 128

// checkBuildNetworkName refuses a network name RUN steps may not join.
func checkBuildNetworkName(name string) error {
	switch {
	case name == "":
		return nil
	case name == "host":
		return errors.New("the host's network would give RUN steps the host's interfaces; create a network for builds (docker network create) and name it")
	case strings.Contains(name, ":"):
		return errors.New("a network mode such as container:ID or service:ID shares another namespace; name a Docker network")
	case name == "none":
		return errors.New("for no network leave the name empty")
	case name == "default":
		return errors.New(`name the network ("bridge" is the engine's default one)`)
	case len(name) > maxNetworkName:
		return fmt.Errorf("longer than %d bytes", maxNetworkName)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '_' || r == '.' || r == '-')
		if !ok {
			return errors.New("not a Docker network name (letters, digits, '_', '.', '-', starting with a letter or digit)")
		}
	}
	return nil
}

// NewBuilder returns a builder that runs its steps on e's engine and in
// e's sandbox. It does not contact the engine (see Available). A build
// network (WithBuildNetwork) is refused when e runs every task under
// gVisor (WithRequireGVisor): steps there have no network.
func NewBuilder(e *Executor, opts ...BuildOption) (*Builder, error) {
	b := &Builder{e: e, maxImage: DefaultMaxBuildImageBytes, maxContext: DefaultMaxContextBytes}
	for _, o := range opts {
		if err := o(b); err != nil {
			return nil, err
		}
	}
	if b.network != "" && e.cfg.requireGVisor {
		return nil, fmt.Errorf("docker build: network %q: every step runs under gVisor here, which has no network (%s is registered with --network=none); drop the build network or the gVisor requirement", b.network, DefaultGVisorRuntime)
	}
	return b, nil
}

// Name returns "build".
func (b *Builder) Name() string { return BuildName }

// Network is the Docker network RUN steps join ("" for none; see
// WithBuildNetwork).
func (b *Builder) Network() string { return b.network }

// Available pings the engine and, with a build network, checks that it
// is there (see checkNetwork).
func (b *Builder) Available(ctx context.Context) error {
	if err := b.e.Available(ctx); err != nil {
		return err
	}
	return b.checkNetwork(ctx)
}

// checkNetwork checks that the build network, if any, is a network on the
// engine, and not one that shares the host's namespace (driver "host") or
// gives none (driver "null"). The error wraps ErrBuildNetwork and
// executor.ErrUnavailable.
func (b *Builder) checkNetwork(ctx context.Context) error {
	if b.network == "" {
		return nil
	}
	n, ok, err := b.e.networkNamed(ctx, b.network)
	switch {
	case err != nil:
		return fmt.Errorf("docker build: network %q: %w", b.network, err)
	case !ok:
		return fmt.Errorf("docker build: network %q is not on the engine (create it with docker network create, or drop the build network): %w: %w",
			b.network, ErrBuildNetwork, executor.ErrUnavailable)
	case n.Driver == "host" || n.Driver == "null":
		return fmt.Errorf("docker build: network %q has driver %s: RUN steps may not join it: %w: %w",
			b.network, n.Driver, ErrBuildNetwork, executor.ErrUnavailable)
	}
	return nil
}

// Close releases the engine client when the builder's executor made it.
func (b *Builder) Close() error { return b.e.Close() }

// LoadImage loads a base image given by CID (see Executor.LoadImage).
func (b *Builder) LoadImage(ctx context.Context, tarPath string) (string, error) {
	return b.e.LoadImage(ctx, tarPath)
}

// HasImage reports whether the base ref is here; scratch always is.
func (b *Builder) HasImage(ctx context.Context, ref string) bool {
	return ref == "scratch" || b.e.HasImage(ctx, ref)
}

// GVisor reports whether build steps can run under gVisor here.
func (b *Builder) GVisor(ctx context.Context) bool { return b.e.GVisor(ctx) }

// RemoveTask removes the containers and images a build of taskID left
// (the provider restarted while it ran).
func (b *Builder) RemoveTask(ctx context.Context, taskID string) error {
	err := b.e.RemoveTask(ctx, taskID)
	imgs, lerr := b.e.cli.ImageList(ctx, client.ImageListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelTask+"="+taskID)})
	if lerr != nil {
		return errors.Join(err, fmt.Errorf("docker build: list images of %s: %w", taskID, lerr))
	}
	// Newest first: a child goes before its parent.
	sort.Slice(imgs.Items, func(i, j int) bool { return imgs.Items[i].Created > imgs.Items[j].Created })
	for _, im := range imgs.Items {
		if _, rerr := b.e.cli.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// imageConfig is the part of an image's config a Dockerfile sets.
type imageConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	Volumes      map[string]struct{} `json:"Volumes,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

func (c *imageConfig) getenv(k string) (string, bool) {
	for i := len(c.Env) - 1; i >= 0; i-- {
		if name, v, _ := strings.Cut(c.Env[i], "="); name == k {
			return v, true
		}
	}
	return "", false
}

func (c *imageConfig) setenv(k, v string) {
	for i, kv := range c.Env {
		if name, _, _ := strings.Cut(kv, "="); name == k {
			c.Env[i] = k + "=" + v
			return
		}
	}
	c.Env = append(c.Env, k+"="+v)
}

// build is the state of one build.
type build struct {
	b        *Builder
	spec     executor.Spec
	bc       *buildContext
	cfg      imageConfig
	args     map[string]string // ARGs declared after FROM
	image    string            // the current image's ID
	size     int64             // its size
	created  []string          // images made, oldest first
	deadline time.Time
	stdout   *executor.TailBuffer
	stderr   *executor.TailBuffer
	usage    executor.Usage
	exitCode int
}

// Run builds the image spec describes (see Builder). A Dockerfile or
// context the builder refuses gives ErrInvalidSpec and no Result; a step
// that fails, runs out of time or memory, or an image over the size limit
// gives the Result so far (the build's log in Stdout and Stderr) and an
// error that names the Dockerfile line.
func (b *Builder) Run(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
	invalid := func(err error) error {
		return fmt.Errorf("docker build %s: %w: %w", spec.TaskID, executor.ErrInvalidSpec, err)
	}
	var ctxTar string
	for _, m := range spec.Mounts {
		if m.Target == executor.BuildContextPath {
			ctxTar = m.Source
		}
	}
	switch {
	case ctxTar == "":
		return nil, invalid(fmt.Errorf("no build context mounted at %s", executor.BuildContextPath))
	case spec.OutputsDir == "":
		return nil, invalid(errors.New("no outputs dir for the image"))
	case len(spec.Cmd) > 1 || len(spec.Entrypoint) > 0:
		return nil, invalid(errors.New("a build's command is at most the Dockerfile's path"))
	case spec.Image == "":
		return nil, invalid(errors.New("no base image"))
	}
	dfName := "Dockerfile"
	if len(spec.Cmd) == 1 {
		dfName = spec.Cmd[0]
	}
	bc, err := readContext(ctxTar, b.maxContext)
	if err != nil {
		return nil, invalid(err)
	}
	dfPath, err := contextPath(dfName)
	if err != nil {
		return nil, invalid(fmt.Errorf("dockerfile: %w", err))
	}
	data, err := bc.readFile(dfPath, MaxDockerfileBytes)
	if err != nil {
		return nil, invalid(err)
	}
	df, err := ParseDockerfile(data)
	if err != nil {
		return nil, invalid(err)
	}
	if err := bc.checkCopies(df); err != nil {
		return nil, invalid(err)
	}

	if err := b.checkNetwork(ctx); err != nil {
		return nil, fmt.Errorf("docker build %s: %w", spec.TaskID, err)
	}

	timeout := spec.Timeout
	if timeout == 0 {
		timeout = executor.DefaultTimeout
	}
	outCap := spec.Limits.OutputCap
	st := &build{b: b, spec: spec, bc: bc, args: map[string]string{},
		stdout: executor.NewTailBuffer(outCap), stderr: executor.NewTailBuffer(outCap)}
	started := time.Now()
	st.deadline = started.Add(timeout)
	bctx, cancel := context.WithDeadline(ctx, st.deadline)
	defer cancel()
	defer st.cleanup()

	err = st.run(bctx, df)
	if err == nil {
		err = st.save(bctx, filepath.Join(spec.OutputsDir, executor.BuildOutput))
	}
	finished := time.Now()
	if err != nil && bctx.Err() != nil && ctx.Err() == nil && !errors.Is(err, executor.ErrTimeout) {
		err = fmt.Errorf("%w (the build's time limit is %v): %w", executor.ErrTimeout, timeout, err)
	}
	if err != nil && st.exitCode == 0 {
		st.exitCode = 1
	}
	if err != nil {
		st.logf("stderr", "build failed: %v\n", err)
		if errors.Is(err, ErrBadDockerfile) || errors.Is(err, ErrBadContext) {
			// Found only once variables were expanded: the requestor's
			// fault still, and no other provider would fare better.
			err = fmt.Errorf("%w: %w", executor.ErrInvalidSpec, err)
		}
		err = fmt.Errorf("docker build %s: %w", spec.TaskID, err)
	}
	st.usage.WallMS = finished.Sub(started).Milliseconds()
	return &executor.Result{
		ExitCode: st.exitCode, Stdout: st.stdout.Bytes(), Stderr: st.stderr.Bytes(),
		StdoutSize: st.stdout.Total(), StderrSize: st.stderr.Total(),
		StartedAt: started, FinishedAt: finished, Usage: st.usage,
	}, err
}

// checkCopies checks the COPY and ADD sources that hold no variable
// against the context, so that a requestor hears of a missing or escaping
// source before anything is built (and, when the context's .dockerignore
// left a source out, of the pattern that did).
func (bc *buildContext) checkCopies(df *Dockerfile) error {
	for _, in := range df.Steps {
		if in.Cmd != "COPY" && in.Cmd != "ADD" {
			continue
		}
		for _, src := range in.Args[:len(in.Args)-1] {
			if strings.Contains(src, "$") {
				continue
			}
			if !in.JSON {
				var err error
				if src, err = expand(src, func(string) (string, bool) { return "", false }); err != nil {
					return fmt.Errorf("line %d: %s: %w", in.Line, in.Cmd, err)
				}
			}
			if _, err := bc.plan([]string{src}, "/", true); err != nil {
				return fmt.Errorf("line %d: %s: %w", in.Line, in.Cmd, bc.whyMissing(err))
			}
		}
	}
	return nil
}

// CheckContext checks a build context tarball and its Dockerfile as a
// provider would before building, and returns the base image FROM names
// with args: the requestor's node runs it before it submits a build.
func CheckContext(tarPath, dockerfile string, args map[string]string, maxBytes int64) (base string, err error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxContextBytes
	}
	bc, err := readContext(tarPath, maxBytes)
	if err != nil {
		return "", err
	}
	p, err := contextPath(dockerfile)
	if err != nil {
		return "", fmt.Errorf("%w: dockerfile: %w", ErrBadContext, err)
	}
	data, err := bc.readFile(p, MaxDockerfileBytes)
	if err != nil {
		return "", err
	}
	df, err := ParseDockerfile(data)
	if err != nil {
		return "", err
	}
	if err := bc.checkCopies(df); err != nil {
		return "", err
	}
	return df.Base(args)
}

func (st *build) logf(stream, format string, args ...any) {
	p := []byte(fmt.Sprintf(format, args...))
	if stream == "stdout" {
		st.stdout.Write(p)
	} else {
		st.stderr.Write(p)
	}
	if st.spec.Log != nil {
		st.spec.Log(stream, p)
	}
}

// lookup resolves a variable for expansion: ENV first, then ARG.
func (st *build) lookup(k string) (string, bool) {
	if v, ok := st.cfg.getenv(k); ok {
		return v, true
	}
	v, ok := st.args[k]
	return v, ok
}

// run interprets df.
func (st *build) run(ctx context.Context, df *Dockerfile) error {
	if err := st.from(ctx, st.spec.Image); err != nil {
		return fmt.Errorf("line %d: FROM: %w", df.From.Line, err)
	}
	for i, in := range df.Steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("before line %d: %w", in.Line, executor.ErrTimeout)
		}
		st.logf("stdout", "step %d/%d: %s\n", i+1, len(df.Steps), truncate(in.Text))
		if err := st.step(ctx, in); err != nil {
			return fmt.Errorf("line %d: %s: %w", in.Line, in.Cmd, err)
		}
	}
	return nil
}

// from starts the build from the base image (an ID or a reference the
// engine has, or scratch).
func (st *build) from(ctx context.Context, base string) error {
	if base == "scratch" {
		// An empty layer stands for scratch: a container needs an image.
		res, err := st.b.e.cli.ImageImport(ctx, client.ImageImportSource{Source: emptyTar(), SourceName: "-"}, "",
			client.ImageImportOptions{Changes: []string{"LABEL " + LabelManaged + "=true " + LabelTask + "=" + strconv.Quote(st.spec.TaskID)}})
		if err != nil {
			return st.b.e.classify("import an empty base", err)
		}
		id, err := importedID(res)
		res.Close()
		if err != nil {
			return err
		}
		st.created = append(st.created, id)
		st.image = id
		return st.measure(ctx)
	}
	img, err := st.b.e.cli.ImageInspect(ctx, base)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("base image %q is not available here (offload never pulls): %w", base, executor.ErrImageNotFound)
		}
		return st.b.e.classify("inspect base "+base, err)
	}
	st.image = img.ID
	if c := img.Config; c != nil {
		st.cfg = imageConfig{User: c.User, Env: append([]string(nil), c.Env...), Entrypoint: c.Entrypoint, Cmd: c.Cmd,
			WorkingDir: c.WorkingDir, StopSignal: c.StopSignal, ExposedPorts: c.ExposedPorts, Volumes: c.Volumes}
		if len(c.Labels) > 0 {
			st.cfg.Labels = map[string]string{}
			for k, v := range c.Labels {
				if !strings.HasPrefix(k, "offload.") {
					st.cfg.Labels[k] = v
				}
			}
		}
	}
	return st.measure(ctx)
}

// importedID reads the image ID from an import's progress stream.
func importedID(r io.Reader) (string, error) {
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	var id string
	for {
		var msg struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("import: read engine answer: %w", err)
		}
		if msg.Error != "" {
			return "", fmt.Errorf("import: %s", msg.Error)
		}
		if strings.HasPrefix(msg.Status, "sha256:") {
			id = strings.TrimSpace(msg.Status)
		}
	}
	if id == "" {
		return "", errors.New("import: the engine named no image")
	}
	return id, nil
}

func emptyTar() io.Reader {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tar.NewWriter(pw).Close()) }()
	return pr
}

// step applies one instruction.
func (st *build) step(ctx context.Context, in Instruction) error {
	words := func() ([]string, error) {
		out := make([]string, len(in.Args))
		for i, w := range in.Args {
			v, err := expand(w, st.lookup)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadDockerfile, err)
			}
			out[i] = v
		}
		return out, nil
	}
	argv := func() []string {
		if in.JSON || len(in.Args) == 0 {
			return append([]string{}, in.Args...)
		}
		return []string{"/bin/sh", "-c", in.Args[0]}
	}
	switch in.Cmd {
	case "RUN":
		return st.runStep(ctx, argv())
	case "CMD":
		st.cfg.Cmd = argv()
	case "ENTRYPOINT":
		st.cfg.Entrypoint = argv()
		st.cfg.Cmd = nil // as docker: a new ENTRYPOINT drops the base's CMD
	case "ENV", "LABEL":
		for _, w := range in.Args {
			k, v, _ := strings.Cut(w, "=")
			var err error
			if k, err = expand(k, st.lookup); err == nil {
				v, err = expand(v, st.lookup)
			}
			if err != nil {
				return fmt.Errorf("%w: %v", ErrBadDockerfile, err)
			}
			if in.Cmd == "ENV" {
				st.cfg.setenv(k, v)
				continue
			}
			if strings.HasPrefix(k, "offload.") {
				return fmt.Errorf("%w: label %q: the offload. prefix is the provider's", ErrBadDockerfile, k)
			}
			if st.cfg.Labels == nil {
				st.cfg.Labels = map[string]string{}
			}
			st.cfg.Labels[k] = v
		}
	case "ARG":
		return declareArgs(in, st.spec.Env, st.args, st.cfg.getenv)
	case "EXPOSE":
		ws, err := words()
		if err != nil {
			return err
		}
		for _, w := range ws {
			p, err := parsePort(w)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrBadDockerfile, err)
			}
			if st.cfg.ExposedPorts == nil {
				st.cfg.ExposedPorts = map[string]struct{}{}
			}
			st.cfg.ExposedPorts[p] = struct{}{}
		}
	case "USER":
		ws, err := words()
		if err != nil {
			return err
		}
		if ws[0] == "" {
			return fmt.Errorf("%w: an empty user", ErrBadDockerfile)
		}
		st.cfg.User = ws[0]
	case "WORKDIR":
		ws, err := words()
		if err != nil {
			return err
		}
		dir := ws[0]
		if !path.IsAbs(dir) {
			dir = path.Join("/", st.cfg.WorkingDir, dir)
		}
		st.cfg.WorkingDir = path.Clean(dir)
		return st.copyStep(ctx, nil, st.cfg.WorkingDir)
	case "COPY", "ADD":
		ws := append([]string{}, in.Args...)
		if !in.JSON {
			var err error
			if ws, err = words(); err != nil {
				return err
			}
		}
		for _, src := range ws[:len(ws)-1] {
			if err := checkSource(in.Cmd, src); err != nil {
				return fmt.Errorf("%w: %v", ErrBadContext, err)
			}
		}
		dest := ws[len(ws)-1]
		destDir := strings.HasSuffix(dest, "/") || len(ws) > 2 || dest == "." || strings.HasSuffix(dest, "/.")
		if !path.IsAbs(dest) {
			dest = path.Join("/", st.cfg.WorkingDir, dest)
		}
		items, err := st.bc.plan(ws[:len(ws)-1], path.Clean(dest), destDir)
		if err != nil {
			return err
		}
		return st.copyStep(ctx, items, path.Clean(dest))
	default:
		return fmt.Errorf("%w: unsupported instruction", ErrBadDockerfile)
	}
	return nil
}

// stepEnv is the environment of a RUN: the image's ENV and the ARGs.
func (st *build) stepEnv() map[string]string {
	env := map[string]string{}
	for k, v := range st.args {
		env[k] = v
	}
	for _, kv := range st.cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}

// runStep runs argv in a sandboxed container of the current image and
// commits what it wrote.
func (st *build) runStep(ctx context.Context, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("%w: an empty command", ErrBadDockerfile)
	}
	left := time.Until(st.deadline)
	if left <= 0 {
		return executor.ErrTimeout
	}
	e := st.b.e
	spec := executor.Spec{
		TaskID: st.spec.TaskID, Image: st.image, Entrypoint: argv, Env: st.stepEnv(),
		WorkDir: st.cfg.WorkingDir, Limits: st.spec.Limits, Timeout: left, Isolation: st.spec.Isolation,
		Log: st.stepLog,
	}
	spec.Limits.GPUs, spec.Limits.GPUDevices = 0, nil
	var committed string
	res, err := e.run(ctx, spec, runHooks{
		writableRoot: true,
		user:         buildUser(st.cfg.User),
		network:      st.b.network,
		watch:        st.watchDisk,
		exited: func(ctx context.Context, id string) error {
			r, err := e.cli.ContainerCommit(ctx, id, client.ContainerCommitOptions{NoPause: true})
			if err != nil {
				return e.classify("commit", err)
			}
			committed = r.ID
			return nil
		},
	})
	if res != nil {
		st.usage.CPUMS += res.Usage.CPUMS
		st.usage.MaxRSSBytes = max(st.usage.MaxRSSBytes, res.Usage.MaxRSSBytes)
	}
	if err != nil {
		if res != nil && res.ExitCode > 0 {
			st.exitCode = res.ExitCode
		}
		return err
	}
	if res.ExitCode != 0 {
		st.exitCode = res.ExitCode
		return fmt.Errorf("%v returned exit code %d", argv, res.ExitCode)
	}
	return st.advance(ctx, committed)
}

// stepLog is a step's Log: its output goes to the build's log.
func (st *build) stepLog(stream string, p []byte) {
	if stream == "stdout" {
		st.stdout.Write(p)
	} else {
		st.stderr.Write(p)
	}
	if st.spec.Log != nil {
		st.spec.Log(stream, p)
	}
}

// watchDisk stops a RUN whose writes would take the image over the limit.
func (st *build) watchDisk(ctx context.Context, id string) error {
	t := time.NewTicker(diskWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ins, err := st.b.e.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{Size: true})
		if err != nil || ins.Container.SizeRw == nil {
			continue
		}
		if w := *ins.Container.SizeRw; st.size+w > st.b.maxImage {
			return fmt.Errorf("%w: the step wrote %d bytes onto an image of %d; the limit is %d bytes",
				ErrBuildTooLarge, w, st.size, st.b.maxImage)
		}
	}
}

// advance makes id (just committed) the current image, and checks its size.
func (st *build) advance(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("the engine committed no image")
	}
	st.created = append(st.created, id)
	st.image = id
	return st.measure(ctx)
}

// measure reads the current image's size and checks it.
func (st *build) measure(ctx context.Context) error {
	img, err := st.b.e.cli.ImageInspect(ctx, st.image)
	if err != nil {
		return st.b.e.classify("inspect "+shortID(st.image), err)
	}
	st.size = img.Size
	if img.Size > st.b.maxImage {
		return fmt.Errorf("%w: the image is %d bytes; the limit is %d bytes", ErrBuildTooLarge, img.Size, st.b.maxImage)
	}
	return nil
}

// buildUser is the uid:gid RUN runs as and COPY gives files to.
func buildUser(user string) string { return taskUser(user) }

// copyStep puts items (and the directories above dest that the image
// lacks) into a container of the current image, never started, and
// commits it. With no items it only makes the directory dest (WORKDIR),
// and commits nothing when dest exists.
func (st *build) copyStep(ctx context.Context, items []copyItem, dest string) error {
	e := st.b.e
	spec := executor.Spec{TaskID: st.spec.TaskID, Image: st.image, Entrypoint: []string{"/nonexistent"},
		Limits: st.spec.Limits, Isolation: st.spec.Isolation}
	spec.Limits.GPUs, spec.Limits.GPUDevices = 0, nil
	user := buildUser(st.cfg.User)
	cfg, hc := e.containerConfig(spec, user, "")
	hc.ReadonlyRootfs = false
	created, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc})
	if err != nil {
		return e.classify("create a container to copy into", err)
	}
	defer e.cleanup(e.log, created.ID, cgroupNone, "")

	// The deepest directory above the files that the image has.
	top := dest
	if len(items) > 0 && items[0].to == dest && items[0].from.typ != tar.TypeDir {
		top = path.Dir(dest)
	}
	base := top
	var missing []string
	for {
		s, err := e.cli.ContainerStatPath(ctx, created.ID, client.ContainerStatPathOptions{Path: base})
		if err == nil {
			if !s.Stat.Mode.IsDir() {
				return fmt.Errorf("%s is not a directory in the image", base)
			}
			break
		}
		if !cerrdefs.IsNotFound(err) {
			return e.classify("stat "+base, err)
		}
		missing = append(missing, base)
		base = path.Dir(base)
	}
	if len(items) == 0 && len(missing) == 0 {
		return nil // WORKDIR of a directory the image has
	}
	uid, gid := splitUser(user)
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pw.CloseWithError(st.writeCopyTar(pw, base, missing, items, uid, gid))
	}()
	_, err = e.cli.CopyToContainer(ctx, created.ID, client.CopyToContainerOptions{DestinationPath: base, Content: pr})
	pr.CloseWithError(errors.New("copy ended"))
	wg.Wait()
	if err != nil {
		return e.classify("copy into the image", err)
	}
	r, err := e.cli.ContainerCommit(ctx, created.ID, client.ContainerCommitOptions{NoPause: true})
	if err != nil {
		return e.classify("commit", err)
	}
	return st.advance(ctx, r.ID)
}

func splitUser(u string) (int, int) {
	a, b, _ := strings.Cut(u, ":")
	uid, _ := strconv.Atoi(a)
	gid, _ := strconv.Atoi(b)
	return uid, gid
}

// writeCopyTar writes the tar CopyToContainer extracts at base: the
// missing directories, then the copied directories, then symlinks and
// files as the context tarball holds them. Everything belongs to uid:gid;
// modes keep their permission bits only (no setuid, setgid or sticky).
func (st *build) writeCopyTar(w io.Writer, base string, missing []string, items []copyItem, uid, gid int) error {
	tw := tar.NewWriter(w)
	rel := func(p string) string {
		r := strings.TrimPrefix(strings.TrimPrefix(p, base), "/")
		return r
	}
	header := func(name string, typ byte, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode & 0o777, Uid: uid, Gid: gid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	}
	sort.Strings(missing)
	for _, d := range missing {
		if err := tw.WriteHeader(header(rel(d)+"/", tar.TypeDir, 0o755)); err != nil {
			return err
		}
	}
	files := map[string][]string{}
	for _, it := range items {
		r := rel(it.to)
		switch it.from.typ {
		case tar.TypeDir:
			if r == "" {
				continue // base itself exists
			}
			if err := tw.WriteHeader(header(r+"/", tar.TypeDir, it.from.mode|0o700)); err != nil {
				return err
			}
		default:
			files[it.from.name] = append(files[it.from.name], r)
		}
	}
	if len(files) > 0 {
		err := st.bc.each(func(h *tar.Header, r io.Reader) (bool, error) {
			name, _ := cleanEntryName(h.Name)
			dsts := files[name]
			if len(dsts) == 0 {
				return true, nil
			}
			var data []byte
			if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA {
				var err error
				if len(dsts) > 1 {
					if data, err = io.ReadAll(r); err != nil {
						return false, err
					}
				}
				for _, d := range dsts {
					hd := header(d, tar.TypeReg, h.Mode)
					hd.Size = h.Size
					if err := tw.WriteHeader(hd); err != nil {
						return false, err
					}
					src := r
					if data != nil {
						src = strings.NewReader(string(data))
					}
					if _, err := io.CopyN(tw, src, h.Size); err != nil {
						return false, err
					}
				}
			} else {
				for _, d := range dsts {
					hd := header(d, tar.TypeSymlink, 0o777)
					hd.Linkname = h.Linkname
					if err := tw.WriteHeader(hd); err != nil {
						return false, err
					}
				}
			}
			delete(files, name)
			return len(files) > 0, nil
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// save writes the built image to out as a `docker save` tarball whose
// config is the one the Dockerfile describes (imageConfig): the engine's
// config of the last commit would carry the last step's container
// (command, user, labels); its rootfs and history are kept.
func (st *build) save(ctx context.Context, out string) error {
	rc, err := st.b.e.cli.ImageSave(ctx, []string{st.image})
	if err != nil {
		return st.b.e.classify("save", err)
	}
	defer rc.Close()
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer f.Close()
	limit := st.b.maxImage + st.b.maxImage/8 + (16 << 20)
	if err := rewriteConfig(rc, &limitWriter{w: f, left: limit}, st.cfg); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	fi, err := os.Stat(out)
	if err == nil {
		st.logf("stdout", "built an image of %d bytes (tarball %d bytes)\n", st.size, fi.Size())
	}
	return nil
}

type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, fmt.Errorf("%w: the image tarball is over %d bytes", ErrBuildTooLarge, l.left)
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// Bounds on what rewriteConfig holds in memory.
const (
	maxHeldEntries = 4096
	maxHeldBytes   = 64 << 20
)

// rewriteConfig copies a `docker save` tarball from r to w with the
// image's config replaced by cfg. Small files (the config, manifest.json,
// an OCI layout's manifests, legacy layer metadata) are held back and the
// rest passes through; then the held files, a new config and a
// manifest.json naming it are written. Both layouts engines save are
// handled: the legacy one (<hex>.json) and the OCI one (blobs/sha256/<hex>,
// Docker 25 and later). The repositories file and an OCI index are
// dropped: the result loads by manifest.json.
func rewriteConfig(r io.Reader, w io.Writer, cfg imageConfig) error {
	type entry struct {
		h    *tar.Header
		body []byte
	}
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	var held []entry
	byName := map[string]int{}
	var heldBytes int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name, err := cleanEntryName(h.Name)
		if err != nil {
			return err
		}
		switch {
		case name == "repositories" || name == "index.json" || name == "oci-layout":
			continue
		case h.Typeflag == tar.TypeReg && h.Size <= maxImageMetaBytes && len(held) < maxHeldEntries && heldBytes+h.Size <= maxHeldBytes:
			body, err := io.ReadAll(io.LimitReader(tr, h.Size))
			if err != nil {
				return err
			}
			byName[name] = len(held)
			held = append(held, entry{h, body})
			heldBytes += h.Size
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	get := func(name string) ([]byte, bool) {
		i, ok := byName[name]
		if !ok {
			return nil, false
		}
		return held[i].body, true
	}
	mbody, _ := get("manifest.json")
	var manifest []map[string]json.RawMessage
	if err := json.Unmarshal(mbody, &manifest); err != nil || len(manifest) != 1 {
		return fmt.Errorf("the engine's tarball has no manifest of one image (%v)", err)
	}
	var cfgName string
	if err := json.Unmarshal(manifest[0]["Config"], &cfgName); err != nil {
		return fmt.Errorf("manifest config: %w", err)
	}
	cfgName, err := cleanEntryName(cfgName)
	if err != nil {
		return fmt.Errorf("manifest config: %w", err)
	}
	body, ok := get(cfgName)
	if !ok {
		return fmt.Errorf("the engine's tarball has no config %s among its small files", cfgName)
	}
	var conf map[string]json.RawMessage
	if err := json.Unmarshal(body, &conf); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	c, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	conf["config"] = c
	delete(conf, "container_config")
	delete(conf, "container")
	newConf, err := json.Marshal(conf)
	if err != nil {
		return err
	}
	sum := hex.EncodeToString(sha256Sum(newConf))
	newName := sum + ".json"
	if strings.HasPrefix(cfgName, "blobs/") {
		newName = "blobs/sha256/" + sum
	}
	cn, _ := json.Marshal(newName)
	manifest[0]["Config"] = cn
	delete(manifest[0], "RepoTags")
	newManifest, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	for _, e := range held {
		if n, _ := cleanEntryName(e.h.Name); n == cfgName || n == "manifest.json" || n == newName {
			continue
		}
		if err := tw.WriteHeader(e.h); err != nil {
			return err
		}
		if _, err := tw.Write(e.body); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		body []byte
	}{{newName, newConf}, {"manifest.json", newManifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.body); err != nil {
			return err
		}
	}
	return tw.Close()
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// cleanup removes every image the build made, newest first, on a context
// of its own.
func (st *build) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), st.b.e.cfg.cleanupTimeout)
	defer cancel()
	for i := len(st.created) - 1; i >= 0; i-- {
		_, err := st.b.e.cli.ImageRemove(ctx, st.created[i], client.ImageRemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			st.b.e.log.Warn("remove a build's image", "task", st.spec.TaskID, "image", shortID(st.created[i]), "err", err)
		}
	}
}
