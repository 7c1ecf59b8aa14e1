package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
)

// Labels of services and their networks.
const (
	// LabelService marks a container started by StartService ("true").
	LabelService = "offload.service"
	// LabelNetwork marks a network created for services ("true").
	LabelNetwork = "offload.network"
)

// serviceStopGrace is how long a service gets between SIGTERM and SIGKILL
// when it is stopped, so that it can flush what it writes to its volumes.
const serviceStopGrace = 2

// netMu serializes creating and removing service networks, and creating
// and starting the containers that join them, within this process: the
// engine (20.10) accepts two networks with the same name, and removes a
// network with no running endpoint even while a container that is about
// to join it is being created.
var netMu sync.Mutex

var _ executor.Service = (*Executor)(nil)

// StartService runs spec as a long-lived container on an internal network
// (a bridge network created with Internal: true and named spec.Network,
// created on first use and removed when its last service stops): the
// container gets an address on it, the provider reaches its ports there,
// and it has no route to any outside network. Every other sandbox default
// of Run holds. The network carries the labels offload.managed=true and
// offload.network=true; the container offload.service=true besides
// offload.task.
func (e *Executor) StartService(ctx context.Context, spec executor.ServiceSpec) (executor.ServiceHandle, error) {
	if err := validate(spec.Spec); err != nil {
		return nil, err
	}
	if spec.Isolation == IsolationGVisor || e.cfg.requireGVisor {
		return nil, fmt.Errorf("docker service %s: gVisor isolation runs batch tasks without network, not services: %w",
			spec.TaskID, executor.ErrInvalidSpec)
	}
	if spec.Network == "" {
		return nil, fmt.Errorf("docker service %s: no network: %w", spec.TaskID, executor.ErrInvalidSpec)
	}
	for _, p := range spec.Ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("docker service %s: port %d out of range: %w", spec.TaskID, p, executor.ErrInvalidSpec)
		}
	}
	img, err := e.cli.ImageInspect(ctx, spec.Image)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("docker service %s: image %q is not available locally (offload never pulls; load it first): %w",
				spec.TaskID, spec.Image, executor.ErrImageNotFound)
		}
		return nil, e.classify(fmt.Sprintf("docker service %s: inspect image %q", spec.TaskID, spec.Image), err)
	}
	mode := e.accountingMode(ctx)
	var cg string
	if mode != cgroupNone {
		cg = e.newRunCgroup()
	}
	cfg, hc := e.containerConfig(spec.Spec, imageUser(img), cg)
	cfg.Labels[LabelService] = "true"
	netCfg := joinNetwork(cfg, hc, spec.Network, spec.Aliases)

	s := &service{e: e, spec: spec, mode: mode, cg: cg, done: make(chan struct{}), copied: make(chan error, 1),
		stdout: executor.NewTailBuffer(spec.Limits.OutputCap), stderr: executor.NewTailBuffer(spec.Limits.OutputCap)}
	s.execCtx, s.execCancel = context.WithCancel(context.Background())
	fail := func(err error) (executor.ServiceHandle, error) {
		s.execCancel()
		if s.id != "" {
			e.cleanup(s.log(), s.id, mode, cg)
		} else if mode != cgroupNone {
			e.removeRunCgroup(mode, cg)
		}
		e.removeNetworkIfUnused(spec.Network)
		return nil, err
	}

	netMu.Lock()
	if err := e.ensureNetwork(ctx, spec.Network); err != nil {
		netMu.Unlock()
		return fail(err)
	}
	created, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, NetworkingConfig: netCfg})
	if err != nil {
		netMu.Unlock()
		return fail(e.classify(fmt.Sprintf("docker service %s: create container from %q", spec.TaskID, spec.Image), err))
	}
	s.id = created.ID
	att, err := e.cli.ContainerAttach(ctx, s.id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		netMu.Unlock()
		return fail(e.classify(fmt.Sprintf("docker service %s: attach", spec.TaskID), err))
	}
	s.att = att
	go func() {
		_, err := stdcopy.StdCopy(s.stdout, s.stderr, att.Reader)
		s.copied <- err
	}()
	s.started = time.Now()
	_, err = e.cli.ContainerStart(ctx, s.id, client.ContainerStartOptions{})
	netMu.Unlock()
	if err != nil {
		att.Close()
		<-s.copied
		return fail(e.classify(fmt.Sprintf("docker service %s: start container", spec.TaskID), err))
	}
	// The waiter is owned by the handle: it ends when the container stops,
	// which Stop guarantees.
	waitCtx, waitCancel := context.WithCancel(context.Background())
	s.waitCancel = waitCancel
	wait := e.cli.ContainerWait(waitCtx, s.id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	go func() {
		defer close(s.done)
		select {
		case r := <-wait.Result:
			s.exitCode = r.StatusCode
		case err := <-wait.Error:
			s.waitErr = err
			s.exitCode = -1
		}
		s.finished = time.Now()
	}()
	s.log().Debug("service started", "network", spec.Network, "ports", spec.Ports)
	return s, nil
}

// ensureNetwork creates the internal network name unless it exists. The
// caller holds netMu.
func (e *Executor) ensureNetwork(ctx context.Context, name string) error {
	// The host's firewall goes up before the network exists and stays
	// while it does: no container of it ever reaches a host address.
	if err := fenceHost(bridgeName(name)); err != nil {
		return fmt.Errorf("docker service: network %s: %w", name, err)
	}
	if _, ok, err := e.findNetwork(ctx, name); err != nil || ok {
		return err
	}
	_, err := e.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver:   "bridge",
		Internal: true, // no route out, no NAT: only the host and its peers on it
		Labels:   map[string]string{LabelManaged: "true", LabelNetwork: "true"},
		Options:  map[string]string{"com.docker.network.bridge.name": bridgeName(name)},
	})
	if err != nil {
		return e.classify("docker service: create network "+name, err)
	}
	return nil
}

// joinNetwork turns the sandboxed configuration of containerConfig (no
// network) into one whose container joins the network called name, with
// aliases on it, and returns the networking config ContainerCreate takes.
// Nothing else of the sandbox changes.
func joinNetwork(cfg *container.Config, hc *container.HostConfig, name string, aliases []string) *network.NetworkingConfig {
	cfg.NetworkDisabled = false
	hc.NetworkMode = container.NetworkMode(name)
	return &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		name: {Aliases: aliases},
	}}
}

// findNetwork returns the ID of the network called exactly name (the
// engine's name filter matches substrings).
func (e *Executor) findNetwork(ctx context.Context, name string) (string, bool, error) {
	n, ok, err := e.networkNamed(ctx, name)
	return n.ID, ok, err
}

// networkNamed returns the network called exactly name.
func (e *Executor) networkNamed(ctx context.Context, name string) (network.Summary, bool, error) {
	res, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("name", name)})
	if err != nil {
		return network.Summary{}, false, e.classify("docker: list networks", err)
	}
	for _, n := range res.Items {
		if n.Name == name {
			return n, true, nil
		}
	}
	return network.Summary{}, false, nil
}

// removeNetworkIfUnused removes the network when no container is attached
// to it any more; the engine refuses while one is.
func (e *Executor) removeNetworkIfUnused(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.cleanupTimeout)
	defer cancel()
	netMu.Lock()
	defer netMu.Unlock()
	id, ok, err := e.findNetwork(ctx, name)
	if err != nil || !ok {
		return
	}
	ins, err := e.cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	if err != nil || len(ins.Network.Containers) > 0 {
		return
	}
	if _, err := e.cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		e.log.Debug("remove service network", "network", name, "err", err)
		return
	}
	if err := unfenceHost(bridgeName(name)); err != nil {
		e.log.Warn("remove host firewall rules of a service network", "network", name, "err", err)
	}
}

// NetworkInternal reports whether the network called name exists and is
// internal (for tests and diagnostics).
func (e *Executor) NetworkInternal(ctx context.Context, name string) (exists, internal bool, err error) {
	id, ok, err := e.findNetwork(ctx, name)
	if err != nil || !ok {
		return false, false, err
	}
	ins, err := e.cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	if err != nil {
		return false, false, e.classify("docker inspect network "+name, err)
	}
	return true, ins.Network.Internal, nil
}

// service is one running service container.
type service struct {
	e    *Executor
	spec executor.ServiceSpec
	id   string
	mode cgroupMode
	cg   string
	att  client.ContainerAttachResult

	stdout, stderr *executor.TailBuffer
	copied         chan error

	// execCtx bounds every Exec; Stop cancels it.
	execCtx    context.Context
	execCancel context.CancelFunc
	waitCancel context.CancelFunc

	started time.Time
	// done is closed by the waiter once exitCode, waitErr and finished are
	// set.
	done     chan struct{}
	exitCode int64
	waitErr  error
	finished time.Time

	stopOnce sync.Once
	res      *executor.Result
	err      error
}

func (s *service) log() *slog.Logger {
	return s.e.log.With("task", s.spec.TaskID, "container", shortID(s.id))
}

// Done is closed when the main process exited.
func (s *service) Done() <-chan struct{} { return s.done }

// Addr returns the container's address on its internal network.
func (s *service) Addr(ctx context.Context, port int) (string, error) {
	if !slices.Contains(s.spec.Ports, port) {
		return "", fmt.Errorf("service %s: port %d is not one of its ports %v: %w", s.spec.TaskID, port, s.spec.Ports, executor.ErrServiceNotFound)
	}
	select {
	case <-s.done:
		return "", fmt.Errorf("service %s: stopped: %w", s.spec.TaskID, executor.ErrServiceNotFound)
	default:
	}
	ins, err := s.e.cli.ContainerInspect(ctx, s.id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("service %s: container gone: %w", s.spec.TaskID, executor.ErrServiceNotFound)
		}
		return "", s.e.classify("docker service "+s.spec.TaskID+": inspect", err)
	}
	if ins.Container.NetworkSettings == nil || ins.Container.NetworkSettings.Networks[s.spec.Network] == nil ||
		!ins.Container.NetworkSettings.Networks[s.spec.Network].IPAddress.IsValid() {
		return "", fmt.Errorf("service %s: no address on network %s: %w", s.spec.TaskID, s.spec.Network, executor.ErrServiceNotFound)
	}
	ip := ins.Container.NetworkSettings.Networks[s.spec.Network].IPAddress
	return net.JoinHostPort(ip.String(), strconv.Itoa(port)), nil
}

// Exec runs cmd in the container through the Engine's exec API.
func (s *service) Exec(ctx context.Context, cmd []string, stdout, stderr io.Writer) (int, error) {
	if len(cmd) == 0 {
		return -1, fmt.Errorf("exec in %s: empty command: %w", s.spec.TaskID, executor.ErrInvalidSpec)
	}
	select {
	case <-s.done:
		return -1, fmt.Errorf("exec in %s: service stopped: %w", s.spec.TaskID, executor.ErrServiceNotFound)
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.execCtx, cancel)
	defer stop()
	op := "docker exec " + s.spec.TaskID
	created, err := s.e.cli.ExecCreate(ctx, s.id, client.ExecCreateOptions{AttachStdout: true, AttachStderr: true, Cmd: cmd})
	if err != nil {
		if cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) {
			return -1, fmt.Errorf("%s: %w: %v", op, executor.ErrServiceNotFound, err)
		}
		return -1, s.e.classify(op+": create", err)
	}
	att, err := s.e.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return -1, s.e.classify(op+": attach", err)
	}
	closeOnDone := context.AfterFunc(ctx, att.Close)
	_, cerr := stdcopy.StdCopy(stdout, stderr, att.Reader)
	closeOnDone()
	att.Close()
	if ctx.Err() != nil {
		// The engine cannot kill an exec'd process; it dies with the
		// container at the latest.
		return -1, fmt.Errorf("%s: %w", op, context.Cause(ctx))
	}
	if cerr != nil {
		return -1, fmt.Errorf("%s: read output: %w", op, cerr)
	}
	ictx, icancel := context.WithTimeout(context.WithoutCancel(ctx), s.e.cfg.cleanupTimeout)
	defer icancel()
	ins, err := s.e.cli.ExecInspect(ictx, created.ID, client.ExecInspectOptions{})
	if err != nil {
		return -1, s.e.classify(op+": inspect", err)
	}
	return ins.ExitCode, nil
}

// Stop stops the container (SIGTERM, SIGKILL after serviceStopGrace
// seconds), collects its result and removes it and, when it was the last
// one, its network.
func (s *service) Stop() (*executor.Result, error) {
	s.stopOnce.Do(func() { s.res, s.err = s.stop() })
	return s.res, s.err
}

func (s *service) stop() (*executor.Result, error) {
	log := s.log()
	s.execCancel()
	ctx, cancel := context.WithTimeout(context.Background(), s.e.cfg.cleanupTimeout)
	defer cancel()
	select {
	case <-s.done:
	default:
		grace := serviceStopGrace
		if _, err := s.e.cli.ContainerStop(ctx, s.id, client.ContainerStopOptions{Timeout: &grace}); err != nil && !cerrdefs.IsNotFound(err) {
			log.Debug("stop service", "err", err)
		}
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		s.waitCancel()
		<-s.done
	}
	s.waitCancel()
	select {
	case <-s.copied:
	case <-time.After(drainTimeout):
		s.att.Close()
		<-s.copied
	}
	s.att.Close()
	res := &executor.Result{
		ExitCode: int(s.exitCode), Stdout: s.stdout.Bytes(), Stderr: s.stderr.Bytes(),
		StdoutSize: s.stdout.Total(), StderrSize: s.stderr.Total(),
		StartedAt: s.started, FinishedAt: s.finished,
		Usage: executor.Usage{WallMS: s.finished.Sub(s.started).Milliseconds()},
	}
	if s.mode != cgroupNone {
		cpu, peak, err := s.e.readUsage(s.mode, s.cg)
		if err != nil {
			log.Debug("read usage", "err", err)
		}
		res.Usage.CPUMS, res.Usage.MaxRSSBytes = cpu, peak
	}
	s.e.cleanup(log, s.id, s.mode, s.cg)
	s.e.removeNetworkIfUnused(s.spec.Network)
	if s.waitErr != nil && !errors.Is(s.waitErr, context.Canceled) {
		return res, s.e.classify("docker service "+s.spec.TaskID+": wait", s.waitErr)
	}
	return res, nil
}

// RemoveNetwork removes the service network called name when no container
// uses it any more (a provider cleaning up after a crash). It is not an
// error when there is no such network.
func (e *Executor) RemoveNetwork(ctx context.Context, name string) error {
	e.removeNetworkIfUnused(name)
	return nil
}
