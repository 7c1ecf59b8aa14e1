// Package cluster starts real `offload node` processes on this machine for
// the benchmark harness (bench/cmd/harness) and the chaos suite
// (bench/chaos_test.go): each node gets its own home under one directory,
// listens on loopback with free ports (`--listen /ip4/127.0.0.1/tcp/0 --api
// 127.0.0.1:0`), and is ready once it has written $home/api. Nodes and CLI
// calls go through the offload binary exactly as a user runs it; nothing
// here changes how a node behaves.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/offload-project/offload/client"
)

// StartTimeout bounds how long a node may take to write $home/api.
const StartTimeout = 60 * time.Second

// Cluster is a set of node processes sharing one binary and one directory.
// Its methods are safe for concurrent use.
type Cluster struct {
	// Bin is the offload binary.
	Bin string
	// Dir holds one home per node.
	Dir string

	mu    sync.Mutex
	nodes []*Node
}

// New returns a cluster running bin with homes under dir (created).
func New(bin, dir string) (*Cluster, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("offload binary: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	return &Cluster{Bin: bin, Dir: dir}, nil
}

// Node is one `offload node` process.
type Node struct {
	// Name is the node's directory name under the cluster's Dir.
	Name string
	// Home is the node's --home.
	Home string
	// Args are the node's extra arguments, kept for Restart.
	Args []string
	// Started is when the process was started.
	Started time.Time

	c       *Cluster
	prefix  []string // command run before the binary (e.g. ip netns exec NS)
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	logFile *os.File
}

// Start initialises home Dir/name (once) and starts `offload node` there
// with args added to the loopback listen and API flags, waiting until the
// node is ready.
func (c *Cluster) Start(ctx context.Context, name string, args ...string) (*Node, error) {
	return c.StartWrapped(ctx, nil, name, args...)
}

// StartWrapped is Start with the node's command line prefixed by wrap (for
// example `ip netns exec NS`); listen addresses in args replace the
// loopback default when any --listen is given.
func (c *Cluster) StartWrapped(ctx context.Context, wrap []string, name string, args ...string) (*Node, error) {
	n := &Node{Name: name, Home: filepath.Join(c.Dir, name), Args: args, c: c, prefix: wrap}
	if _, err := os.Stat(filepath.Join(n.Home, "identity.key")); err != nil {
		if _, err := c.CLI(ctx, n.Home, "init"); err != nil {
			return nil, fmt.Errorf("init %s: %w", name, err)
		}
	}
	if err := n.start(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
}

func (n *Node) start(ctx context.Context) error {
	os.Remove(filepath.Join(n.Home, client.APIFile))
	args := []string{"node", "--home", n.Home, "--api", "127.0.0.1:0"}
	hasListen := false
	for _, a := range n.Args {
		if a == "--listen" {
			hasListen = true
		}
	}
	if !hasListen {
		args = append(args, "--listen", "/ip4/127.0.0.1/tcp/0")
	}
	args = append(args, n.Args...)
	full := append(append([]string{}, n.prefix...), n.c.Bin)
	full = append(full, args...)
	lf, err := os.OpenFile(filepath.Join(n.c.Dir, n.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node log: %w", err)
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	n.Started = time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start node %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done, n.logFile = cmd, done, lf
	n.mu.Unlock()
	deadline := time.NewTimer(StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(filepath.Join(n.Home, client.APIFile)); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("node %s exited before it was ready: %s", n.Name, n.LogTail(2000))
		case <-deadline.C:
			n.Kill()
			return fmt.Errorf("node %s not ready after %s: %s", n.Name, StartTimeout, n.LogTail(2000))
		case <-ctx.Done():
			n.Kill()
			return fmt.Errorf("start node %s: %w", n.Name, ctx.Err())
		case <-tick.C:
		}
	}
}

// PID is the node's process id (of the wrapper when one was given).
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// Running reports whether the process has not exited.
func (n *Node) Running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (n *Node) Kill() {
	n.signal(syscall.SIGKILL, 0)
}

// Stop sends SIGTERM, waits up to 15 s, then kills.
func (n *Node) Stop() {
	n.signal(syscall.SIGTERM, 15*time.Second)
}

func (n *Node) signal(sig syscall.Signal, grace time.Duration) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// Restart starts the process again with the same home and arguments.
func (n *Node) Restart(ctx context.Context) error {
	if n.Running() {
		return fmt.Errorf("restart %s: still running", n.Name)
	}
	return n.start(ctx)
}

// LogTail returns up to max bytes from the end of the node's log.
func (n *Node) LogTail(max int) string {
	b, err := os.ReadFile(filepath.Join(n.c.Dir, n.Name+".log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Client returns an API client for the node.
func (n *Node) Client() (*client.Client, error) {
	c, err := client.FromHome(n.Home)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", n.Name, err)
	}
	return c, nil
}

// Identity runs `offload id --json` for the node.
func (n *Node) Identity(ctx context.Context) (client.Identity, error) {
	var id client.Identity
	out, err := n.c.CLI(ctx, n.Home, "id", "--json")
	if err != nil {
		return id, err
	}
	if err := json.Unmarshal(out, &id); err != nil {
		return id, fmt.Errorf("id --json: %w: %s", err, out)
	}
	if len(id.Addrs) == 0 {
		return id, fmt.Errorf("node %s has no addresses", n.Name)
	}
	return id, nil
}

// RSS returns the process's VmRSS in bytes.
func (n *Node) RSS() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.PID()))
	if err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// CLI runs `offload ARGS --home HOME` and returns its stdout; a non-zero
// exit is an error carrying stderr.
func (c *Cluster) CLI(ctx context.Context, home string, args ...string) ([]byte, error) {
	all := append([]string{}, args...)
	// Flags go before a "--" that separates a task's command.
	at := len(all)
	for i, a := range all {
		if a == "--" {
			at = i
			break
		}
	}
	all = append(all[:at], append([]string{"--home", home}, all[at:]...)...)
	cmd := exec.CommandContext(ctx, c.Bin, all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("offload %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Close kills every node still running (SIGTERM first, bounded).
func (c *Cluster) Close() {
	c.mu.Lock()
	nodes := append([]*Node{}, c.nodes...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Stop()
		}()
	}
	wg.Wait()
}

// Build compiles ./cmd/offload of the module rooted at root into out.
func Build(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/offload")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build offload: %w: %s", err, b)
	}
	return nil
}

// CPUTime returns the user plus system CPU time the process has used.
func (n *Node) CPUTime() (time.Duration, error) { return ProcessCPU(n.PID()) }

// ProcessCPU returns the user plus system CPU time process pid has used.
func ProcessCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat: %w", err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the line, in clock ticks (100 per second).
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}
