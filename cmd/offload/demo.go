package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/cmd/offload/internal/demoassets"
	"github.com/offload-project/offload/internal/scratchimage"
	"github.com/offload-project/offload/node"
)

// demoImage is the image the demo builds FROM scratch and runs.
const demoImage = "offload-demo/hello:1"

func newDemoCmd(g *globals) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local swarm in one process (a requestor and two providers) and a task end to end",
		Long: `Start a requestor and two providers in this process on loopback, each with
its own temporary home, run a task through the whole market (announce, bids,
award, execution, result) and print what happens, then clean up.

It uses Docker when an engine answers (building a tiny image FROM scratch,
nothing is pulled) and WASM otherwise. The program it runs is carried in
this binary: neither the Go toolchain nor the source tree is needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), g, keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary homes")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, g *globals, keep bool) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	logLevel := slog.LevelWarn
	if g.logLevel == "debug" {
		logLevel = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	root, err := os.MkdirTemp("", "offload-demo-")
	if err != nil {
		return fmt.Errorf("demo: temp dir: %w", err)
	}
	if keep {
		say("homes kept under %s", root)
	} else {
		defer os.RemoveAll(root)
	}

	runtime := "docker"
	image := demoImage
	var wasmFile string
	if err := scratchimage.DockerAvailable(ctx); err != nil {
		runtime = "wasm"
		say("1. no Docker engine answers (%v): using the WASM runtime", err)
		module, err := demoassets.WASM()
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		wasmFile = filepath.Join(root, "hello.wasm")
		if err := os.WriteFile(wasmFile, module, 0o644); err != nil {
			return fmt.Errorf("demo: write the WASM module: %w", err)
		}
		say("   the demo program is a WASI module (GOOS=wasip1 GOARCH=wasm, %d KiB) carried in this binary", len(module)>>10)
	} else {
		say("1. building the demo image %s FROM scratch (a static Go binary carried in this binary; nothing is pulled)", demoImage)
		bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		arch, err := demoassets.BuildImage(bctx, demoImage)
		cancel()
		if err != nil {
			return fmt.Errorf("demo: build image: %w", err)
		}
		say("   built for linux/%s", arch)
	}

	loopback := []string{"/ip4/127.0.0.1/tcp/0"}
	start := func(name string, provider bool, price float64, boot []string) (*node.Node, error) {
		n, err := node.New(ctx, node.Config{
			Home: root + "/" + name, Listen: loopback, Bootstrap: boot, Provider: provider,
			Executors: []string{runtime}, Price: price, Logger: log.With("node", name),
			AllowImages: []string{demoImage},
		})
		if err != nil {
			return nil, fmt.Errorf("demo: start %s: %w", name, err)
		}
		return n, nil
	}
	say("2. starting a local swarm on loopback")
	p1, err := start("provider-1", true, 0.002, nil)
	if err != nil {
		return err
	}
	defer p1.Close()
	boot := p1.Identity().Addrs
	p2, err := start("provider-2", true, 0.001, boot)
	if err != nil {
		return err
	}
	defer p2.Close()
	req, err := start("requestor", false, 0, boot)
	if err != nil {
		return err
	}
	defer req.Close()
	say("   provider-1 %s (price 0.002 credits/cpu-s)", p1.ID())
	say("   provider-2 %s (price 0.001 credits/cpu-s)", p2.ID())
	say("   requestor  %s", req.ID())

	// Discovery: the requestor learns the providers' signed capability
	// records (gossip, or by asking them when it joins).
	joined := time.Now()
	var pool []client.Provider
	for len(pool) < 2 && time.Since(joined) < 10*time.Second {
		pool = req.Pool(client.PoolFilter{})
		if len(pool) < 2 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	say("   discovery: the requestor sees %d providers after %s:", len(pool), time.Since(joined).Round(time.Millisecond))
	for _, p := range pool {
		say("     %s  %s/%s, %d cpus, %d MiB free, executors %v, price %g", p.Peer, p.Hardware.OS, p.Hardware.Arch,
			p.Hardware.CPUs, p.Free.MemoryBytes>>20, p.Executors, p.Price)
	}

	if runtime == "wasm" {
		c, err := req.Add(ctx, wasmFile, node.AddOptions{CIDVersion: 1})
		if err != nil {
			return fmt.Errorf("demo: add module: %w", err)
		}
		image = c
		say("   the requestor added the module as content: %s", c)
	}
	spec := node.TaskSpec{
		Runtime: runtime, Image: image, Cmd: []string{demoassets.Program, "echo", "hello from the swarm"},
		TimeoutMS: 30_000,
	}
	say("3. submitting: %s %s", spec.Image, strings.Join(spec.Cmd, " "))
	began := time.Now()
	t, err := req.Submit(ctx, spec)
	if err != nil {
		return fmt.Errorf("demo: submit: %w", err)
	}
	last := ""
	err = req.Watch(ctx, t.ID, func(t *client.Task) error {
		if t.State == last {
			return nil
		}
		last = t.State
		line := fmt.Sprintf("   %6.0fms  %-9s %s", float64(time.Since(began).Microseconds())/1000, t.State, t.Reason)
		say("%s", strings.TrimRight(line, " "))
		return nil
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	t, err = req.Get(t.ID)
	if err != nil {
		return err
	}
	say("4. bids:")
	for _, b := range t.Bids {
		if b.Decline != "" {
			say("   %s declined: %s", b.Provider, b.Decline)
			continue
		}
		if b.Silent {
			say("   %s %s", b.Provider, b.Outcome)
			continue
		}
		say("   %s price %g: %s", b.Provider, b.Price, b.Outcome)
	}
	say("5. result from %s:", t.Provider)
	if t.ExitCode != nil {
		say("   exit code %d, stdout %q, wall %dms, cpu %dms, max rss %d bytes, cost %.6g credits",
			*t.ExitCode, t.Stdout, t.Usage.WallMS, t.Usage.CPUMS, t.Usage.MaxRSSBytes, t.Price)
	}
	say("   end to end: %s", time.Since(began).Round(time.Millisecond))
	if t.State != "completed" {
		return fmt.Errorf("demo: task %s: %s", t.State, t.Error)
	}
	say("done: the task crossed the swarm and came back.")
	return nil
}
