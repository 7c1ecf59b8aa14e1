package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
)

func newImageBuildCmd(g *globals) *cobra.Command {
	var (
		dockerfile, timeout, memory, tag string
		buildArgs, labels                []string
		asJSON, network                  bool
	)
	cmd := &cobra.Command{
		Use:   "build CONTEXT [-f Dockerfile] [--timeout D] [--memory SIZE] [--build-arg K=V]... [--network] [--label K[=V]]... [--json]",
		Short: "Build an image from a Dockerfile and context on a provider; print its CID",
		Long: `Build an image from a Dockerfile and the context directory CONTEXT on a
provider that builds (one started with 'offload node --provider --build'),
with no Docker here. The context is sent as private content; the provider
builds it step by step in its task sandbox (no network unless --network
asks for a provider that allows it, bounded in time, memory and size) and returns the image, whose CID this command prints and
which runs as 'offload run --image CID'.

Supported instructions: FROM (an image the provider has, a CID, or scratch;
one stage), COPY and ADD from the context, RUN, ENV, ARG, WORKDIR, USER,
CMD, ENTRYPOINT, LABEL, EXPOSE. RUN steps never run as root.

-f names the Dockerfile: a path relative to the current directory (as
docker reads it) or to CONTEXT, which must lie inside CONTEXT (default
CONTEXT/Dockerfile).

A .dockerignore at CONTEXT's root is honoured as docker honours it: what
it excludes (.git, .env, keys, node_modules...) never leaves this machine,
which matters since the provider is a stranger. The Dockerfile and the
.dockerignore are always sent.`,
		Example: `  offload image build ./app
  offload run --image "$(offload image build ./app)" --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := absPath(args[0])
			if err != nil {
				return err
			}
			req := client.BuildRequest{Context: dir, Tag: tag, Network: network}
			if req.Labels, err = labelFlags(labels); err != nil {
				return err
			}
			if req.Dockerfile, err = dockerfileIn(dir, dockerfile); err != nil {
				return err
			}
			if timeout != "" {
				d, err := time.ParseDuration(timeout)
				if err != nil || d <= 0 {
					return fmt.Errorf("--timeout %q: want a positive duration such as 5m", timeout)
				}
				req.TimeoutMS = d.Milliseconds()
			}
			if memory != "" {
				m, err := units.RAMInBytes(memory)
				if err != nil || m <= 0 {
					return fmt.Errorf("--memory %q: want a size such as 512m or 2g", memory)
				}
				req.Memory = m
			}
			for _, kv := range buildArgs { // values may hold commas
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--build-arg %q: want K=V", kv)
				}
				if req.BuildArgs == nil {
					req.BuildArgs = map[string]string{}
				}
				req.BuildArgs[k] = v
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.BuildImage(cmd.Context(), req)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			last := ""
			t, err = c.Watch(cmd.Context(), t.ID, func(t *client.Task) error {
				if t.State != last {
					line := t.State
					if t.Reason != "" {
						line += ": " + t.Reason
					}
					fmt.Fprintf(stderr, "[%s] %s\n", t.ID, line)
					last = t.State
				}
				return nil
			})
			if err != nil {
				return err
			}
			if t.State != "completed" || t.Image == "" {
				// The build's log says which step failed and how.
				fmt.Fprint(stderr, t.Stdout, t.Stderr)
				why := t.Error
				if why == "" {
					why = "the provider returned no image"
				}
				if asJSON {
					_ = printJSON(cmd.OutOrStdout(), map[string]string{"task": t.ID, "state": t.State, "error": why})
				}
				fmt.Fprintf(stderr, "image build %s %s: %s\n", t.ID, t.State, why)
				return &exitError{code: 1}
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]string{"cid": t.Image, "task": t.ID})
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Image)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&dockerfile, "file", "f", "", "the Dockerfile (default CONTEXT/Dockerfile); it must lie inside CONTEXT")
	f.StringVar(&timeout, "timeout", "", "time limit of the whole build, e.g. 10m (default: the provider's, 10m)")
	f.StringVar(&memory, "memory", "", "memory of each RUN step, e.g. 1g (default: the provider's, 512m)")
	f.StringArrayVar(&buildArgs, "build-arg", nil, "a value of one of the Dockerfile's ARGs, K=V (repeatable)")
	f.StringVar(&tag, "tag", "", "a name for the build task")
	f.BoolVar(&network, "network", false, "build on a provider whose RUN steps may use a network (started with --build-network); by default RUN steps have none")
	f.StringArrayVar(&labels, "label", nil, "only providers with this label: KEY=VALUE, or KEY for any value (repeatable)")
	f.BoolVar(&asJSON, "json", false, `print {"cid": ..., "task": ...}`)
	return cmd
}

// dockerfileIn turns -f into the Dockerfile's path inside the context dir:
// a path relative to the current directory (as docker reads -f), else to
// the context; either way it must lie inside the context.
func dockerfileIn(dir, f string) (string, error) {
	if f == "" {
		return "Dockerfile", nil
	}
	abs, err := filepath.Abs(f)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) && !filepath.IsAbs(f) {
		abs = filepath.Join(dir, f)
	}
	rel, err := filepath.Rel(dir, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("-f %s: the Dockerfile must lie inside the context %s", f, dir)
	}
	return filepath.ToSlash(rel), nil
}
