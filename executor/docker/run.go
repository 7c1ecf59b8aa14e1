package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
)

// OutputsPath is where Spec.OutputsDir appears inside the container.
const OutputsPath = "/outputs"

// ErrContainerGone: the container was removed by someone else (RemoveTask,
// an operator) while the task ran.
var ErrContainerGone = errors.New("container removed while running")

// drainTimeout bounds how long Run waits for the attach stream to deliver
// the last output after the container has exited.
const drainTimeout = 5 * time.Second

// Run runs spec in a fresh sandboxed container and removes it before
// returning. See executor.Executor for the contract and the package doc for
// the sandbox and the accounting.
func (e *Executor) Run(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
	return e.run(ctx, spec, runHooks{})
}

// runHooks change how run treats one container; a task's Run has none. A
// build step (build.go) runs in the task's sandbox but with a writable
// root filesystem (its writes are the step's layer), as the Dockerfile's
// user, watched while it runs (its disk use) and committed after it
// exited, before the container is removed.
type runHooks struct {
	// writableRoot drops the read-only root filesystem.
	writableRoot bool
	// user, when set, is the USER the container runs as (through
	// taskUser, so never root) instead of the image's.
	user string
	// watch runs while the container runs; an error from it kills the
	// container and is returned.
	watch func(ctx context.Context, id string) error
	// exited runs once the container exited on its own with status 0,
	// before it is removed; its error is returned.
	exited func(ctx context.Context, id string) error
	// network, when set, is the Docker network the container joins
	// (joinNetwork) instead of having none: a build step on a provider
	// that allows builds a network (WithBuildNetwork).
	network string
}

// run is Run with hooks.
func (e *Executor) run(ctx context.Context, spec executor.Spec, h runHooks) (*executor.Result, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	img, err := e.cli.ImageInspect(ctx, spec.Image)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("docker run %s: image %q is not available locally (offload never pulls; load it first): %w",
				spec.TaskID, spec.Image, executor.ErrImageNotFound)
		}
		return nil, e.classify(fmt.Sprintf("docker run %s: inspect image %q", spec.TaskID, spec.Image), err)
	}

	if spec.OutputsDir != "" {
		// The task runs unprivileged: let it write its outputs.
		if err := os.Chmod(spec.OutputsDir, 0o777); err != nil {
			return nil, fmt.Errorf("docker run %s: open outputs dir to the task: %w", spec.TaskID, err)
		}
	}
	mode := e.accountingMode(ctx)
	var cg string
	if mode != cgroupNone {
		cg = e.newRunCgroup()
	}
	user := imageUser(img)
	if h.user != "" {
		user = h.user
	}
	cfg, hc := e.containerConfig(spec, user, cg)
	if h.writableRoot {
		hc.ReadonlyRootfs = false
	}
	opts := client.ContainerCreateOptions{Config: cfg, HostConfig: hc}
	if h.network != "" {
		opts.NetworkingConfig = joinNetwork(cfg, hc, h.network, nil)
	}
	created, err := e.cli.ContainerCreate(ctx, opts)
	if err != nil {
		if mode != cgroupNone {
			e.removeRunCgroup(mode, cg)
		}
		return nil, e.classify(fmt.Sprintf("docker run %s: create container from %q", spec.TaskID, spec.Image), err)
	}
	id := created.ID
	log := e.log.With("task", spec.TaskID, "container", shortID(id))
	defer e.cleanup(log, id, mode, cg)

	// Attach before start so that no output is missed; the stream ends when
	// the container exits.
	att, err := e.cli.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return nil, e.classify(fmt.Sprintf("docker run %s: attach", spec.TaskID), err)
	}
	defer att.Close()
	outCap := spec.Limits.OutputCap
	stdout, stderr := executor.NewTailBuffer(outCap), executor.NewTailBuffer(outCap)
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(executor.Tee(stdout, "stdout", spec.Log), executor.Tee(stderr, "stderr", spec.Log), att.Reader)
		copied <- err
	}()

	timeout := spec.Timeout
	if timeout == 0 {
		timeout = executor.DefaultTimeout
	}
	started := time.Now()
	if _, err := e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return nil, e.classify(fmt.Sprintf("docker run %s: start container", spec.TaskID), err)
	}
	// The timeout counts from the start: a slow engine does not eat into
	// the task's own time.
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var (
		exitCode int64
		stopErr  error
	)
	wait := e.cli.ContainerWait(runCtx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	watchErr := make(chan error, 1)
	if h.watch != nil {
		wctx, wcancel := context.WithCancel(runCtx)
		defer wcancel()
		go func() {
			if err := h.watch(wctx, id); err != nil && wctx.Err() == nil {
				watchErr <- err
			}
		}()
	}
	select {
	case err := <-watchErr:
		stopErr = err
		exitCode = e.kill(log, id)
	case r := <-wait.Result:
		exitCode = r.StatusCode
		if r.Error != nil && r.Error.Message != "" {
			log.Debug("wait reported an error", "err", r.Error.Message)
		}
	case werr := <-wait.Error:
		switch {
		case ctx.Err() != nil:
			stopErr = fmt.Errorf("docker run %s: stopped: %w", spec.TaskID, context.Cause(ctx))
		case runCtx.Err() != nil:
			stopErr = fmt.Errorf("docker run %s: killed after %v: %w", spec.TaskID, timeout, executor.ErrTimeout)
		default:
			stopErr = e.classify(fmt.Sprintf("docker run %s: wait", spec.TaskID), werr)
		}
		exitCode = e.kill(log, id)
	}
	finished := time.Now()

	// The stream ends with the container; bound the wait in case the engine
	// keeps the connection open.
	select {
	case <-copied:
	case <-time.After(drainTimeout):
		att.Close()
		<-copied
		log.Debug("attach stream did not end after exit; closed it")
	}

	res := &executor.Result{
		ExitCode:   int(exitCode),
		Stdout:     stdout.Bytes(),
		Stderr:     stderr.Bytes(),
		StdoutSize: stdout.Total(),
		StderrSize: stderr.Total(),
		StartedAt:  started,
		FinishedAt: finished,
		Usage:      executor.Usage{WallMS: finished.Sub(started).Milliseconds()},
	}
	oom := false
	if mode != cgroupNone {
		cpu, peak, err := e.readUsage(mode, cg)
		if err != nil {
			log.Debug("read usage", "err", err)
		}
		res.Usage.CPUMS, res.Usage.MaxRSSBytes = cpu, peak
		oom = exitCode != 0 && e.oomKilled(mode, cg, exitCode, peak, memoryLimit(spec))
	}
	if stopErr != nil {
		return res, stopErr
	}
	if oom {
		return res, fmt.Errorf("docker run %s: killed at memory limit %d bytes (%d MiB): %w",
			spec.TaskID, memoryLimit(spec), memoryLimit(spec)>>20, executor.ErrOutOfMemory)
	}
	if exitCode != 0 {
		// Only a failed run can be an OOM kill; spare the inspect otherwise.
		ictx, icancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.cleanupTimeout)
		ins, err := e.cli.ContainerInspect(ictx, id, client.ContainerInspectOptions{})
		icancel()
		switch {
		case cerrdefs.IsNotFound(err) || (err == nil && ins.Container.State != nil && ins.Container.State.Status == container.StateRemoving):
			return res, fmt.Errorf("docker run %s: exit code %d: %w", spec.TaskID, exitCode, ErrContainerGone)
		case err != nil:
			log.Debug("inspect after exit", "err", err)
		case ins.Container.State != nil && ins.Container.State.OOMKilled:
			return res, fmt.Errorf("docker run %s: killed at memory limit %d bytes (%d MiB): %w",
				spec.TaskID, memoryLimit(spec), memoryLimit(spec)>>20, executor.ErrOutOfMemory)
		}
	}
	if h.exited != nil && exitCode == 0 {
		if err := h.exited(ctx, id); err != nil {
			return res, err
		}
	}
	return res, nil
}

// kill stops the container with SIGKILL on a detached context and returns its
// exit code once it is down (-1 when that cannot be learned).
func (e *Executor) kill(log *slog.Logger, id string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.cleanupTimeout)
	defer cancel()
	if _, err := e.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil && !cerrdefs.IsConflict(err) {
		log.Debug("kill container", "err", err)
	}
	wait := e.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-wait.Result:
		return r.StatusCode
	case err := <-wait.Error:
		log.Debug("wait after kill", "err", err)
		return -1
	}
}

// cleanup force-removes the container and the run's cgroup on a context of
// its own, since the caller's may be done.
func (e *Executor) cleanup(log *slog.Logger, id string, mode cgroupMode, cg string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.cleanupTimeout)
	defer cancel()
	_, err := e.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
	case cerrdefs.IsConflict(err):
		// Someone else (RemoveTask) is removing it already.
		log.Debug("remove container", "err", err)
	default:
		e.log.Warn("remove container", "container", shortID(id), "err", err)
	}
	if mode != cgroupNone {
		e.removeRunCgroup(mode, cg)
	}
}

// containerConfig turns spec into the sandboxed container configuration.
//
// The container runs as taskUser(user), user being the image's USER: never
// as root.
func (e *Executor) containerConfig(spec executor.Spec, user, cgroupParent string) (*container.Config, *container.HostConfig) {
	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)

	mem := memoryLimit(spec)
	cpus := spec.Limits.CPUs
	if cpus == 0 {
		cpus = executor.DefaultCPUs
	}
	pids := spec.Limits.PIDs
	if pids == 0 {
		pids = executor.DefaultPIDs
	}

	cfg := &container.Config{
		Image:      spec.Image,
		User:       taskUser(user),
		Env:        env,
		WorkingDir: spec.WorkDir,
		Labels: map[string]string{
			LabelManaged: "true",
			LabelTask:    spec.TaskID,
		},
		AttachStdout:    true,
		AttachStderr:    true,
		NetworkDisabled: true,
	}
	if len(spec.Entrypoint) > 0 {
		cfg.Entrypoint = spec.Entrypoint
	}
	if len(spec.Cmd) > 0 {
		cfg.Cmd = spec.Cmd
	}

	var mounts []mount.Mount
	for _, m := range spec.Mounts {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	if spec.OutputsDir != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: spec.OutputsDir, Target: OutputsPath})
	}

	hc := &container.HostConfig{
		NetworkMode:    "none",
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		// Output goes over the attach stream; keep nothing on the engine's disk.
		LogConfig: container.LogConfig{Type: "none"},
		// tmpfs pages are charged to the memory cgroup, so the memory limit
		// bounds /tmp too; size= makes that explicit.
		Tmpfs:   map[string]string{"/tmp": "rw,nosuid,nodev,size=" + strconv.FormatInt(mem, 10)},
		Mounts:  mounts,
		Runtime: e.runtimeFor(spec),
		Resources: container.Resources{
			Memory:       mem,
			MemorySwap:   mem, // memory+swap == memory: no swap
			NanoCPUs:     int64(cpus * 1e9),
			PidsLimit:    &pids,
			CgroupParent: cgroupParent,
		},
	}
	switch {
	case len(spec.Limits.GPUDevices) > 0:
		// The provider gave the task these devices, and no other task has
		// them.
		hc.DeviceRequests = []container.DeviceRequest{{
			Driver:       "nvidia",
			DeviceIDs:    spec.Limits.GPUDevices,
			Capabilities: [][]string{{"gpu"}},
		}}
	case spec.Limits.GPUs > 0:
		hc.DeviceRequests = []container.DeviceRequest{{
			Driver:       "nvidia",
			Count:        spec.Limits.GPUs,
			Capabilities: [][]string{{"gpu"}},
		}}
	}
	return cfg, hc
}

// UnprivilegedUser is the uid:gid a task runs as when its image names no
// numeric, non-root USER (the conventional "nobody").
const UnprivilegedUser = "65534:65534"

// imageUser is the USER of an inspected image ("" when it has none).
func imageUser(img client.ImageInspectResult) string {
	if img.Config == nil {
		return ""
	}
	return img.Config.User
}

// taskUser turns an image's USER into the uid:gid a task runs as. Only a
// numeric, non-zero uid (with an optional numeric, non-zero gid; the gid
// defaults to the uid) is kept as it is. Everything else — no USER, root,
// uid 0, gid 0, or a user name, which the image's own /etc/passwd (written
// by the requestor) could map to uid 0 — becomes UnprivilegedUser.
func taskUser(user string) string {
	uid, gid, hasGID := strings.Cut(user, ":")
	if !hasGID {
		gid = uid
	}
	if !positiveID(uid) || !positiveID(gid) {
		return UnprivilegedUser
	}
	return uid + ":" + gid
}

// positiveID reports whether s is a decimal id in [1, 2^31).
func positiveID(s string) bool {
	n, err := strconv.ParseUint(s, 10, 31)
	return err == nil && n > 0
}

// runtimeFor is the OCI runtime of spec's container: gVisor when the spec
// asks for it or the provider requires it, else the configured runtime
// (the engine's default when empty).
func (e *Executor) runtimeFor(spec executor.Spec) string {
	if spec.Isolation == IsolationGVisor || e.cfg.requireGVisor {
		return e.cfg.gvisorRuntime
	}
	return e.cfg.runtime
}

// IsolationGVisor is the Spec.Isolation value that asks for gVisor.
const IsolationGVisor = "gvisor"

func memoryLimit(spec executor.Spec) int64 {
	if spec.Limits.MemoryBytes > 0 {
		return spec.Limits.MemoryBytes
	}
	return executor.DefaultMemoryBytes
}

// validate rejects specs the engine would refuse or misread, before any
// engine call.
func validate(spec executor.Spec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("docker run %s: %s: %w", spec.TaskID, fmt.Sprintf(format, args...), executor.ErrInvalidSpec)
	}
	l := spec.Limits
	switch {
	case spec.Image == "":
		return bad("no image")
	case l.CPUs < 0 || l.MemoryBytes < 0 || l.PIDs < 0 || l.GPUs < 0 || l.OutputCap < 0:
		return bad("negative limit in %+v", l)
	case spec.Timeout < 0:
		return bad("negative timeout %v", spec.Timeout)
	case spec.WorkDir != "" && !path.IsAbs(spec.WorkDir):
		return bad("workdir %q is not absolute", spec.WorkDir)
	case spec.Isolation != "" && spec.Isolation != IsolationGVisor:
		return bad("unknown isolation %q", spec.Isolation)
	}
	for _, m := range spec.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) || path.Clean(m.Target) == "/" {
			return bad("mount %q -> %q: paths must be absolute and the target not /", m.Source, m.Target)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return bad("mount source: %v", err)
		}
	}
	if spec.OutputsDir != "" {
		if !path.IsAbs(spec.OutputsDir) {
			return bad("outputs dir %q is not absolute", spec.OutputsDir)
		}
		if fi, err := os.Stat(spec.OutputsDir); err != nil || !fi.IsDir() {
			return bad("outputs dir %q is not a directory", spec.OutputsDir)
		}
	}
	return nil
}

// classify wraps an engine error with op and the executor sentinel callers
// branch on.
func (e *Executor) classify(op string, err error) error {
	switch {
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: %w: %w", op, executor.ErrUnavailable, err)
	case cerrdefs.IsInvalidArgument(err):
		return fmt.Errorf("%s: %w: %w", op, executor.ErrInvalidSpec, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
