// Command subtasks fans one task out into pieces and verifies every piece
// in Go before accepting it: the sum of 1..N is split into ranges, each
// range is summed by a WASM task on one of two providers, a Go callback
// (node.SubmitVerified) checks each partial sum against the closed form
// and the requestor adds up the accepted pieces. A rejected piece runs
// again on another provider.
//
//	go run ./examples/subtasks            # two honest providers
//	go run ./examples/subtasks -faulty    # the cheaper provider returns wrong sums
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

// N is the last number summed; Pieces is how many ranges the sum is split into.
const (
	N      = 1_000_000
	Pieces = 4
)

func main() {
	faulty := flag.Bool("faulty", false, "make the cheaper provider return wrong sums")
	flag.Parse()
	if _, err := run(context.Background(), os.Stdout, *faulty); err != nil {
		fmt.Fprintln(os.Stderr, "subtasks:", err)
		os.Exit(1)
	}
}

// Report is what one run found.
type Report struct {
	Total    int64
	Rejected int            // pieces the verify callback refused
	Accepted map[int]string // piece → provider whose result was accepted
	Parent   *node.Task     // the parent task when it finished
	ranges   [][2]int64
}

// run starts two providers and a requestor in this process, submits the
// fanned-out task and prints each piece's verdict and the total.
func run(ctx context.Context, out io.Writer, faulty bool) (*Report, error) {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	root, err := os.MkdirTemp("", "offload-subtasks-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(root)

	module := filepath.Join(root, "sumrange.wasm")
	bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err = testimage.CompileGo(bctx, sourceDir("sumrange"), "wasip1", "wasm", module)
	cancel()
	if err != nil {
		return nil, err
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	loopback := []string{"/ip4/127.0.0.1/tcp/0"}
	var provs []*node.Node
	var boot []string
	// Compiled modules are cached under the user cache dir: wazero
	// compiles a module once (seconds), later runs load it.
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cache = filepath.Join(cache, "offload-examples", "wasm")
	for i, price := range []float64{0.001, 0.002} {
		ex, err := wasm.New(wasm.WithCacheDir(cache))
		if err != nil {
			return nil, fmt.Errorf("wasm executor: %w", err)
		}
		var exe executor.Executor = ex
		if faulty && i == 0 {
			exe = offByOne{ex}
		}
		p, err := node.New(ctx, node.Config{
			Home: filepath.Join(root, fmt.Sprintf("provider-%d", i+1)), Listen: loopback, Bootstrap: boot,
			Provider: true, ExecutorImpls: []executor.Executor{exe}, Price: price,
			Logger: log.With("node", fmt.Sprintf("provider-%d", i+1)),
		})
		if err != nil {
			ex.Close()
			return nil, fmt.Errorf("start provider %d: %w", i+1, err)
		}
		defer ex.Close()
		defer p.Close()
		provs = append(provs, p)
		boot = provs[0].Identity().Addrs
	}
	req, err := node.New(ctx, node.Config{Home: filepath.Join(root, "requestor"), Listen: loopback,
		Bootstrap: boot, Logger: log.With("node", "requestor")})
	if err != nil {
		return nil, fmt.Errorf("start requestor: %w", err)
	}
	defer req.Close()
	// Both providers must be known before the pieces are announced, or
	// the first pieces go to whichever provider answered first.
	if err := waitPeers(ctx, req, len(provs)); err != nil {
		return nil, err
	}
	names := map[string]string{}
	for i, p := range provs {
		names[p.ID().String()] = fmt.Sprintf("provider-%d", i+1)
	}
	if faulty {
		say("provider-1 is faulty: it reports every sum off by one")
	}

	mod, err := req.Add(ctx, module, node.AddOptions{CIDVersion: 1})
	if err != nil {
		return nil, fmt.Errorf("add module: %w", err)
	}

	rep := &Report{Accepted: map[int]string{}}
	spec := node.TaskSpec{Name: "sum", Runtime: "wasm", Image: mod, TimeoutMS: 30_000, Retries: wire.Retries(2)}
	step := int64(N / Pieces)
	for i := range int64(Pieces) {
		from, to := i*step+1, (i+1)*step
		if i == Pieces-1 {
			to = N
		}
		rep.ranges = append(rep.ranges, [2]int64{from, to})
		spec.Subtasks = append(spec.Subtasks, wire.Subtask{
			Name: fmt.Sprintf("%d..%d", from, to),
			Cmd:  []string{strconv.FormatInt(from, 10), strconv.FormatInt(to, 10)},
		})
	}

	// The verify callback runs in this process for every finished piece:
	// nil accepts the piece, an error rejects it and it runs elsewhere.
	var mu sync.Mutex
	verify := func(ctx context.Context, piece int, child *node.MarketTask) error {
		r := rep.ranges[piece]
		want := (r[1] - r[0] + 1) * (r[0] + r[1]) / 2
		got, err := strconv.ParseInt(strings.TrimSpace(child.Result.Stdout), 10, 64)
		mu.Lock()
		defer mu.Unlock()
		who := names[child.Provider]
		if err != nil || got != want {
			rep.Rejected++
			say("piece %d (%d..%d) from %s: %s, want %d: rejected", piece, r[0], r[1], who, strings.TrimSpace(child.Result.Stdout), want)
			return fmt.Errorf("partial sum %q, want %d", strings.TrimSpace(child.Result.Stdout), want)
		}
		rep.Accepted[piece] = who
		say("piece %d (%d..%d) from %s: %d: accepted", piece, r[0], r[1], who, got)
		return nil
	}
	t, err := req.SubmitVerified(ctx, spec, verify)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	parent, err := req.Wait(wctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("wait for %s: %w", t.ID, err)
	}
	rep.Parent = parent
	if parent.State != "completed" {
		return rep, fmt.Errorf("task %s %s: %s", parent.ID, parent.State, parent.Error)
	}
	// The parent's stdout is the accepted pieces' stdout, in piece order.
	for _, line := range strings.Fields(parent.Stdout) {
		v, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return rep, fmt.Errorf("parent stdout %q: %w", parent.Stdout, err)
		}
		rep.Total += v
	}
	want := int64(N) * (N + 1) / 2
	say("sum of 1..%d = %d (closed form %d): %d pieces, %d child tasks, %d rejected", N, rep.Total, want, Pieces, len(parent.Children), rep.Rejected)
	if rep.Total != want {
		return rep, fmt.Errorf("total %d, want %d", rep.Total, want)
	}
	return rep, nil
}

// offByOne is a faulty executor: it runs the module and then reports a
// sum one too high.
type offByOne struct{ executor.Executor }

// Run runs the task and corrupts its stdout.
func (o offByOne) Run(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
	res, err := o.Executor.Run(ctx, spec)
	if res != nil {
		if v, perr := strconv.ParseInt(strings.TrimSpace(string(res.Stdout)), 10, 64); perr == nil {
			res.Stdout = []byte(strconv.FormatInt(v+1, 10) + "\n")
		}
	}
	return res, err
}

// waitPeers waits until n is connected to want peers.
func waitPeers(ctx context.Context, n *node.Node, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(n.Peers()) < want {
		select {
		case <-ctx.Done():
			return errors.New("providers did not connect within 10s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// sourceDir is a directory next to this file.
func sourceDir(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), name)
}
