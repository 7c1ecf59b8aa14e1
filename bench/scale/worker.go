package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A swarm's providers live in worker processes (this binary run as
// `scale worker`), perProc at most in each, so that every process has its
// own open-file limit, heap and collector, as nodes of a real swarm do; the
// requestor and the discovery runs live in the harness's own process. The
// harness speaks to each worker over its stdin and stdout, one JSON object
// per line: first a workerConfig, answered by a workerReply with the
// providers' addresses once they are all up; then workerCommands, each
// answered by one workerReply. A worker whose stdin ends (the harness is
// gone) closes its nodes and exits.

// workerConfig is what a worker builds.
type workerConfig struct {
	// Count is how many providers it runs; Swarm the providers of the
	// whole swarm (for the peer cap's upper bound).
	Count int `json:"count"`
	Swarm int `json:"swarm"`
	// Boot is addresses (with /p2p/ID) of providers already up in other
	// processes; each new provider bootstraps to bootPeers drawn from
	// them and from this worker's providers already up.
	Boot []string `json:"boot"`
	// Requestors are the swarm's requestors, whom every provider accepts
	// beyond its peer cap.
	Requestors []peer.ID `json:"requestors"`
	Verbose    bool      `json:"verbose"`
}

// workerCommand is one request of the harness: "status", "heap" (status
// plus the live heap and goroutines), "profile" (start a CPU profile into
// Path, ending the one running),
// "profile-stop", or "quit" (close every node and exit).
type workerCommand struct {
	Op   string `json:"op"`
	Path string `json:"path,omitempty"`
}

// workerReply is a worker's answer.
type workerReply struct {
	// Addrs is each provider's addresses (the first reply only).
	Addrs [][]string `json:"addrs,omitempty"`
	// PeerCap is the bound the worker's providers keep (first reply).
	PeerCap int `json:"peer_cap,omitempty"`
	// Counters are the worker's stream and gossip counts so far.
	Counters snapshot `json:"counters"`
	// Adverts is how many capability adverts its providers published.
	Adverts uint64 `json:"adverts"`
	// HeapDelta is the live heap (liveHeap) less what it was before the
	// nodes were built ("heap" only); Goroutines likewise.
	HeapDelta  int64  `json:"heap_delta,omitempty"`
	Goroutines int    `json:"goroutines,omitempty"`
	Err        string `json:"err,omitempty"`
}

// runWorker is `scale worker`: it reads a workerConfig from in, builds the
// providers, answers commands until "quit" or the end of in, and closes
// them.
func runWorker(ctx context.Context, in io.Reader, out io.Writer, stderr io.Writer) error {
	harnessGC()
	heap0, cycles0 := heapBaseline()
	g0 := runtime.NumGoroutine()
	// The harness has said already when the limit could not be raised
	// (every worker runs where it does); the cap follows what is in force.
	fdLimit, _ := raiseFileLimit()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	enc := json.NewEncoder(out)
	var cfg workerConfig
	if !sc.Scan() {
		return fmt.Errorf("no configuration on stdin: %v", sc.Err())
	}
	if err := json.Unmarshal(sc.Bytes(), &cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.Verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := newCounters()
	dir, err := os.MkdirTemp("", "offload-scale-worker-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	reqs := &requestorSet{peerCap: peerCap(cfg.Count, cfg.Swarm, fdLimit)}
	for _, id := range cfg.Requestors {
		reqs.add(id)
	}
	provs, addrs, err := buildProviders(ctx, c, cfg, reqs, dir, log)
	defer closeNodes(provs)
	if err != nil {
		_ = enc.Encode(workerReply{Err: err.Error()})
		return err
	}
	status := func() workerReply {
		r := workerReply{Counters: c.snapshot()}
		for _, p := range provs {
			r.Adverts += p.adv.Adverts()
		}
		return r
	}
	first := status()
	first.Addrs, first.PeerCap = addrs, reqs.peerCap
	if err := enc.Encode(first); err != nil {
		return err
	}
	stopProfile := func() {}
	defer func() { stopProfile() }()
	// Commands come on their own goroutine so that a cancelled context
	// (SIGINT reaches the whole process group) ends the worker too.
	cmds := make(chan workerCommand)
	go func() {
		defer close(cmds)
		for sc.Scan() {
			var cmd workerCommand
			if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
				cmd = workerCommand{Op: "bad: " + err.Error()}
			}
			select {
			case cmds <- cmd:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var cmd workerCommand
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case cmd, ok = <-cmds:
		}
		if !ok {
			return nil
		}
		r := status()
		switch cmd.Op {
		case "status":
		case "heap":
			r.HeapDelta = heapSince(heap0, cycles0)
			r.Goroutines = runtime.NumGoroutine() - g0
		case "profile":
			stopProfile()
			stop, err := startProfileFile(cmd.Path)
			if err != nil {
				r.Err = err.Error()
				stop = func() {}
			}
			stopProfile = stop
		case "profile-stop":
			stopProfile()
			stopProfile = func() {}
		case "quit":
			stopProfile()
			stopProfile = func() {}
			closeNodes(provs)
			provs = nil
			return enc.Encode(r)
		default:
			r.Err = fmt.Sprintf("unknown command %q", cmd.Op)
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
}

// buildProviders starts cfg.Count providers, buildParallel at a time, each
// bootstrapped to bootPeers addresses drawn at random from cfg.Boot and
// this worker's providers already up (the first from cfg.Boot alone; with
// no Boot, the first bootstraps to nobody and is everyone's way in). It
// returns the providers built (also on error, to be closed) and the
// addresses of each.
func buildProviders(ctx context.Context, c *counters, cfg workerConfig, reqs *requestorSet, dir string, log *slog.Logger) ([]*node, [][]string, error) {
	var (
		mu    sync.Mutex
		boot  = append([]string(nil), cfg.Boot...)
		nodes []*node
		addrs [][]string
		errs  []error
	)
	mk := func(i int, bootFrom []string) {
		wd := filepath.Join(dir, fmt.Sprintf("p%d", i))
		var n *node
		err := os.MkdirAll(wd, 0o700)
		if err == nil {
			n, err = newNode(ctx, c, nodeConfig{provider: true, bootstrap: bootFrom, workDir: wd, log: log, requestors: reqs})
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("provider %d: %w", i, err))
			return
		}
		nodes = append(nodes, n)
		a := n.h.FullAddrs()[:1]
		addrs = append(addrs, a)
		boot = append(boot, a...)
	}
	pick := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, i := range mrand.Perm(len(boot))[:min(bootPeers, len(boot))] {
			out = append(out, boot[i])
		}
		return out
	}
	start := 0
	if len(cfg.Boot) == 0 && cfg.Count > 0 {
		mk(0, nil) // the swarm's first node: others find it
		start = 1
	}
	sem := make(chan struct{}, buildParallel)
	var wg sync.WaitGroup
	for i := start; i < cfg.Count; i++ {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			mk(i, pick())
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return nodes, addrs, errors.Join(errs...)
}

// closeNodes stops nodes, buildParallel at a time.
func closeNodes(nodes []*node) {
	sem := make(chan struct{}, buildParallel)
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n.close()
		}()
	}
	wg.Wait()
}

// startProfileFile starts a CPU profile into path.
func startProfileFile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// worker is the harness's side of one worker process.
type worker struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	mu   sync.Mutex
	done chan struct{} // closed when the process has been waited for
	// addrs are its providers' addresses; peerCap their bound.
	addrs   [][]string
	peerCap int
}

// startWorker runs this binary as a worker of cfg and waits until its
// providers are up (or ctx ends: the process is then killed).
func startWorker(ctx context.Context, cfg workerConfig, stderr io.Writer) (*worker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	cmd := exec.Command(exe, "worker")
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &worker{cmd: cmd, in: in, out: json.NewDecoder(bufio.NewReader(outR)), done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	b, err := json.Marshal(cfg)
	if err != nil {
		w.kill()
		return nil, err
	}
	if _, err := in.Write(append(b, '\n')); err != nil {
		w.kill()
		return nil, fmt.Errorf("configure worker: %w", err)
	}
	var r workerReply
	if err := w.out.Decode(&r); err != nil {
		w.kill()
		return nil, fmt.Errorf("worker of %d providers did not come up: %w", cfg.Count, err)
	}
	if r.Err != "" {
		w.kill()
		return nil, fmt.Errorf("worker of %d providers: %s", cfg.Count, r.Err)
	}
	w.addrs, w.peerCap = r.Addrs, r.PeerCap
	return w, nil
}

// call sends one command and reads its reply.
func (w *worker) call(cmd workerCommand) (workerReply, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var r workerReply
	b, err := json.Marshal(cmd)
	if err != nil {
		return r, err
	}
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return r, fmt.Errorf("worker %d: %s: %w", w.cmd.Process.Pid, cmd.Op, err)
	}
	if err := w.out.Decode(&r); err != nil {
		return r, fmt.Errorf("worker %d: %s: %w", w.cmd.Process.Pid, cmd.Op, err)
	}
	if r.Err != "" {
		return r, fmt.Errorf("worker %d: %s: %s", w.cmd.Process.Pid, cmd.Op, r.Err)
	}
	return r, nil
}

// close asks the worker to close its nodes and exit, and kills it if it
// has not after a minute (a libp2p host's Close has been seen to hang).
func (w *worker) close() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = w.call(workerCommand{Op: "quit"})
		w.in.Close()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		w.kill()
	}
}

// cpu is the worker's user+system CPU so far, from /proc/PID/stat (at
// once, unlike a command, which a saturated worker answers seconds later).
func (w *worker) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100
	// on Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", w.cmd.Process.Pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", w.cmd.Process.Pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", w.cmd.Process.Pid, err)
	}
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// kill ends the process at once and waits for it.
func (w *worker) kill() {
	_ = w.cmd.Process.Kill()
	<-w.done
}
