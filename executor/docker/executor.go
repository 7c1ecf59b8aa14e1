package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
)

// Name is the runtime name of this executor in specs and adverts.
const Name = "docker"

// Labels put on every container this executor creates.
const (
	// LabelManaged marks containers created by offload ("true").
	LabelManaged = "offload.managed"
	// LabelTask holds the Spec.TaskID of the container.
	LabelTask = "offload.task"
)

// Defaults of the options.
const (
	// DefaultCleanupTimeout bounds killing and removing a container after
	// the run, on a context detached from the caller's.
	DefaultCleanupTimeout = 30 * time.Second
	// DefaultCgroupRoot is where the host's cgroup filesystem is mounted.
	DefaultCgroupRoot = "/sys/fs/cgroup"
	// DefaultCgroupParent is the cgroup (relative to the cgroup root) under
	// which each run gets its own parent cgroup for usage accounting.
	DefaultCgroupParent = "offload"
)

var _ executor.Executor = (*Executor)(nil)

// Executor runs tasks as Docker containers. It is safe for concurrent use.
type Executor struct {
	cli       *client.Client
	ownClient bool
	log       *slog.Logger
	cfg       config

	// cgroup accounting mode, detected once from the engine's Info.
	cgMu      sync.Mutex
	cgChecked bool
	cgMode    cgroupMode
}

type config struct {
	client         *client.Client
	logger         *slog.Logger
	runtime        string
	gvisorRuntime  string
	requireGVisor  bool
	maxImageBytes  int64
	cleanupTimeout time.Duration
	cgroupRoot     string
	cgroupParent   string
	noAccounting   bool
}

// Option configures an Executor.
type Option func(*config) error

// WithClient uses cli instead of a client built from the environment. The
// Executor does not close it.
func WithClient(cli *client.Client) Option {
	return func(c *config) error {
		if cli == nil {
			return errors.New("docker: nil client")
		}
		c.client = cli
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("docker: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithRuntime selects the OCI runtime of the containers (e.g. "runsc" for
// gVisor) instead of the engine's default.
func WithRuntime(name string) Option {
	return func(c *config) error {
		c.runtime = name
		return nil
	}
}

// DefaultGVisorRuntime is the engine runtime name under which gVisor's
// runsc is registered (in /etc/docker/daemon.json, with the runtime
// argument --network=none: gVisor runs only tasks without network).
const DefaultGVisorRuntime = "runsc"

// WithGVisorRuntime names the engine runtime that runs tasks asking for
// gVisor isolation (default DefaultGVisorRuntime).
func WithGVisorRuntime(name string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("docker: empty gVisor runtime name")
		}
		c.gvisorRuntime = name
		return nil
	}
}

// WithRequireGVisor runs every task under gVisor, whatever it asks;
// services (which need a network gVisor is not given) are refused.
func WithRequireGVisor() Option {
	return func(c *config) error {
		c.requireGVisor = true
		return nil
	}
}

// WithMaxImageBytes bounds the size of an image tarball LoadImage accepts
// (default DefaultMaxImageBytes).
func WithMaxImageBytes(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("docker: max image bytes must be positive, got %d", n)
		}
		c.maxImageBytes = n
		return nil
	}
}

// WithCleanupTimeout bounds the kill and removal of a container after a run.
func WithCleanupTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("docker: cleanup timeout must be positive, got %v", d)
		}
		c.cleanupTimeout = d
		return nil
	}
}

// WithCgroupRoot sets where the engine's cgroup filesystem is visible to
// this process, for CPU and memory accounting.
func WithCgroupRoot(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New("docker: empty cgroup root")
		}
		c.cgroupRoot = path
		return nil
	}
}

// WithoutAccounting turns off the per-run parent cgroup: CPUMS and
// MaxRSSBytes are then reported as 0.
func WithoutAccounting() Option {
	return func(c *config) error {
		c.noAccounting = true
		return nil
	}
}

// New returns a Docker executor. Without WithClient it connects with
// client.FromEnv (DOCKER_HOST etc.) and negotiates the API version with the
// engine on first use. New does not contact the engine; use Available.
//
// Defaults: logger slog.Default(), the engine's default runtime, cleanup
// timeout DefaultCleanupTimeout, cgroup root DefaultCgroupRoot, accounting on.
func New(opts ...Option) (*Executor, error) {
	var cfg config
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.cleanupTimeout == 0 {
		cfg.cleanupTimeout = DefaultCleanupTimeout
	}
	if cfg.cgroupRoot == "" {
		cfg.cgroupRoot = DefaultCgroupRoot
	}
	if cfg.gvisorRuntime == "" {
		cfg.gvisorRuntime = DefaultGVisorRuntime
	}
	cfg.cgroupParent = DefaultCgroupParent
	e := &Executor{cfg: cfg, log: cfg.logger.With("executor", Name)}
	if cfg.client != nil {
		e.cli = cfg.client
	} else {
		cli, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
		e.cli, e.ownClient = cli, true
	}
	return e, nil
}

// Close releases the client when New created it.
func (e *Executor) Close() error {
	if e.ownClient {
		return e.cli.Close()
	}
	return nil
}

// Name returns "docker".
func (e *Executor) Name() string { return Name }

// GVisor reports whether the engine has the gVisor runtime registered, so
// that tasks can ask for gVisor isolation here.
func (e *Executor) GVisor(ctx context.Context) bool {
	info, err := e.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return false
	}
	_, ok := info.Info.Runtimes[e.cfg.gvisorRuntime]
	return ok
}

// GVisorRequired reports whether every task runs under gVisor
// (WithRequireGVisor).
func (e *Executor) GVisorRequired() bool { return e.cfg.requireGVisor }

// Available pings the engine; the error wraps executor.ErrUnavailable.
func (e *Executor) Available(ctx context.Context) error {
	if _, err := e.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("%w: docker engine at %s: %v", executor.ErrUnavailable, e.cli.DaemonHost(), err)
	}
	return nil
}
