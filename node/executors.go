package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/diskquota"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// wasmCacheDir is where compiled WASM modules are cached: the user's cache
// directory, shared by every node of the user (compiled code is keyed by
// the module's content and wazero's version, so sharing is safe), so that a
// new home does not compile the same module again; under the home when
// there is no user cache directory.
func wasmCacheDir(cfg Config) string {
	if cfg.WASMCacheDir != "" {
		return cfg.WASMCacheDir
	}
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "offload", "wasm")
	}
	return filepath.Join(cfg.Home, "wasm-cache")
}

// wasmOptions are the options of a WASM executor of this node: its
// logger and its bounded compilation cache.
func wasmOptions(cfg Config, l *slog.Logger) []wasm.Option {
	opts := []wasm.Option{wasm.WithLogger(l), wasm.WithCacheDir(wasmCacheDir(cfg))}
	if cfg.WASMCacheBytes > 0 {
		opts = append(opts, wasm.WithCacheBytes(cfg.WASMCacheBytes))
	}
	return opts
}

// buildExecutors constructs the executors a provider offers. With no names
// configured it offers docker when an engine answers, and wasm.
func buildExecutors(ctx context.Context, cfg Config) ([]executor.Executor, error) {
	if len(cfg.ExecutorImpls) > 0 {
		return cfg.ExecutorImpls, nil
	}
	names := cfg.Executors
	explicit := len(names) > 0
	if !explicit {
		names = []string{"docker", "wasm"}
	}
	if cfg.Build && !slices.Contains(names, docker.BuildName) {
		names = append(slices.Clip(names), docker.BuildName)
	}
	var out []executor.Executor
	for _, name := range names {
		var ex executor.Executor
		var err error
		switch name {
		case "docker":
			ex, err = docker.New(dockerOptions(cfg)...)
		case docker.BuildName:
			// Its steps run in the sandbox of docker tasks (gVisor too,
			// when required); the image is bounded by the outputs quota.
			var d *docker.Executor
			if d, err = docker.New(dockerOptions(cfg)...); err == nil {
				var opts []docker.BuildOption
				if cfg.OutputsQuota > 0 {
					opts = append(opts, docker.WithMaxBuildImage(cfg.OutputsQuota))
				}
				if cfg.BuildNetwork != "" {
					// Available (below) checks that the engine has it.
					opts = append(opts, docker.WithBuildNetwork(cfg.BuildNetwork))
				}
				if ex, err = docker.NewBuilder(d, opts...); err != nil {
					d.Close()
				}
			}
		case "wasm":
			opts := wasmOptions(cfg, cfg.Logger)
			if cfg.OutputsQuota > 0 {
				// A guest's writes to all its writable mounts together.
				opts = append(opts, wasm.WithDiskQuota(cfg.OutputsQuota))
			}
			ex, err = wasm.New(opts...)
		default:
			return nil, fmt.Errorf("unknown executor %q (want docker, wasm or build)", name)
		}
		explicit := explicit || (name == docker.BuildName && cfg.Build)
		if err != nil {
			if explicit {
				return nil, fmt.Errorf("executor %s: %w", name, err)
			}
			cfg.Logger.Info("executor not offered", "executor", name, "err", err)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err = ex.Available(actx)
		cancel()
		if err != nil {
			if c, ok := ex.(interface{ Close() error }); ok {
				c.Close()
			}
			if explicit {
				return nil, fmt.Errorf("executor %s: %w", name, err)
			}
			cfg.Logger.Info("executor not offered", "executor", name, "err", err)
			continue
		}
		out = append(out, ex)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no executor available (tried %v)", names)
	}
	return out, nil
}

// LabelBuildNetwork is the hardware label of a provider whose builds'
// RUN steps join a Docker network: build-network=NAME, NAME being the
// network (Config.BuildNetwork). Requestors whose builds need a network
// require it (any value); it is the wire's name for it.
const LabelBuildNetwork = wire.LabelBuildNetwork

// checkBuildNetwork refuses a BuildNetwork no builder of this node would
// use, and an operator's build-network label that contradicts it.
func checkBuildNetwork(cfg Config) error {
	if cfg.BuildNetwork != "" {
		switch {
		case len(cfg.ExecutorImpls) > 0:
			return fmt.Errorf("build network %q: the node makes no builder when ExecutorImpls is set (give yours docker.WithBuildNetwork)", cfg.BuildNetwork)
		case !cfg.Provider || !(cfg.Build || slices.Contains(cfg.Executors, docker.BuildName)):
			return fmt.Errorf("build network %q: this node offers no image builds (a provider with Build)", cfg.BuildNetwork)
		}
	}
	if v, ok := cfg.Labels[LabelBuildNetwork]; ok && len(cfg.ExecutorImpls) == 0 && v != cfg.BuildNetwork {
		return fmt.Errorf("label %s=%s: the node sets it from the build network (%q)", LabelBuildNetwork, v, cfg.BuildNetwork)
	}
	return nil
}

// networkBuilder is implemented by builders whose RUN steps may join a
// network (executor/docker's Builder).
type networkBuilder interface {
	Network() string
}

// providerLabels are the labels a provider advertises: the operator's,
// and build-network=NAME when one of its builders lets RUN steps join the
// network NAME. An operator's own build-network label must say the same.
func providerLabels(labels map[string]string, exs []executor.Executor) (map[string]string, error) {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	var network string
	for _, ex := range exs {
		if b, ok := ex.(networkBuilder); ok && ex.Name() == docker.BuildName && b.Network() != "" {
			network = b.Network()
		}
	}
	if v, ok := labels[LabelBuildNetwork]; ok && v != network {
		return nil, fmt.Errorf("label %s=%s: the node's builds use network %q", LabelBuildNetwork, v, network)
	}
	if network != "" {
		out[LabelBuildNetwork] = network
	}
	return out, nil
}

// dockerOptions are the options of the node's Docker executors.
func dockerOptions(cfg Config) []docker.Option {
	opts := []docker.Option{docker.WithLogger(cfg.Logger)}
	if cfg.RequireGVisor {
		opts = append(opts, docker.WithRequireGVisor())
	}
	return opts
}

// gvisorExecutor is implemented by executors that can run tasks under
// gVisor (executor/docker).
type gvisorExecutor interface {
	GVisor(ctx context.Context) bool
}

// isolationOf lists the stronger sandboxes the executors offer, and fails
// when cfg.RequireGVisor asks for one that is not there.
func isolationOf(ctx context.Context, cfg Config, exs []executor.Executor) ([]string, error) {
	for _, ex := range exs {
		if g, ok := ex.(gvisorExecutor); ok {
			gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			has := g.GVisor(gctx)
			cancel()
			if has {
				return []string{wire.IsolationGVisor}, nil
			}
		}
	}
	if cfg.RequireGVisor {
		return nil, fmt.Errorf("gVisor is required but no docker engine here has the %q runtime registered (see SECURITY.md)", docker.DefaultGVisorRuntime)
	}
	return nil, nil
}

// quotaMounter adapts executor/diskquota to market.QuotaMounter.
type quotaMounter struct{}

func (quotaMounter) MountQuota(ctx context.Context, dir string, bytes int64) (io.Closer, error) {
	return diskquota.Mount(ctx, dir, max(bytes, diskquota.MinBytes))
}

func (quotaMounter) ReleaseQuota(dir string) error { return diskquota.Release(dir) }

// diskQuota returns the provider's quota mounter, or nil (logged) where
// this process cannot mount quota filesystems.
func diskQuota(log *slog.Logger) market.QuotaMounter {
	if err := diskquota.Supported(); err != nil {
		log.Warn("tasks' disk is bounded only when collected, not while Docker tasks write (see SECURITY.md)", "err", err)
		return nil
	}
	return quotaMounter{}
}
