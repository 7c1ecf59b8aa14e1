// Package clitest drives real `offload` processes for the examples' tests:
// it builds the CLI once per test binary, runs client commands and starts
// `offload node` processes on loopback with their own homes, the way a
// user follows an example's README by hand.
package clitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
)

// Binary is the path of the offload CLI built by Main.
var Binary string

// Main builds the offload CLI into a temporary directory, runs the tests
// and removes it; call it from TestMain.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "offload-example-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	Binary = filepath.Join(dir, "offload")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", Binary, "github.com/offload-project/offload/cmd/offload")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build offload: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// Offload runs one CLI command and returns its stdout, stderr and exit code.
func Offload(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("offload %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// MustJSON runs a CLI command that must succeed and decodes its stdout
// into v.
func MustJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out, stderr, code := Offload(t, args...)
	if code != 0 {
		t.Fatalf("offload %v exited %d\nstdout: %s\nstderr: %s", args, code, out, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("offload %v: decode output: %v\n%s", args, err, out)
	}
}

// Node is a running `offload node` process.
type Node struct {
	// Home is the node's home directory (pass it as --home).
	Home string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// StartNode runs `offload init --home HOME INITARGS...` and then `offload
// node --home HOME --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0
// NODEARGS...`, and returns once the node's API answers. The node is
// stopped (SIGTERM) when the test ends.
func StartNode(t testing.TB, home string, initArgs, nodeArgs []string) *Node {
	t.Helper()
	if _, stderr, code := Offload(t, append([]string{"init", "--home", home}, initArgs...)...); code != 0 {
		t.Fatalf("offload init --home %s: %s", home, stderr)
	}
	args := append([]string{"node", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"}, nodeArgs...)
	if slices.Contains(nodeArgs, "--provider") {
		// The examples' own images run by name; nothing else does.
		args = append(args, "--allow-image", "offload-example/*", "--allow-image", "offload-test/*")
	}
	return startProcess(t, home, args)
}

// Restart starts the node again from its home with the same arguments
// (after Stop or Kill; a provider restarted after Kill removes what its
// killed process left: containers, task directories). The new process is
// stopped when the test ends.
func (n *Node) Restart(t testing.TB) *Node {
	t.Helper()
	return startProcess(t, n.Home, n.cmd.Args[1:])
}

func startProcess(t testing.TB, home string, args []string) *Node {
	t.Helper()
	os.Remove(filepath.Join(home, client.APIFile))
	cmd := exec.Command(Binary, args...)
	n := &Node{Home: home, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	go func() { cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		if !n.Stop() {
			t.Errorf("node %s did not stop on SIGTERM within 15s:\n%s", home, n.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(home, client.APIFile)); err == nil {
			return n
		}
		select {
		case <-n.done:
			t.Fatalf("node %s exited:\n%s", home, n.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not start in 30s:\n%s", home, n.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the node with SIGTERM, or SIGKILL after 15 s; it reports
// whether SIGTERM was enough.
func (n *Node) Stop() bool {
	select {
	case <-n.done:
		return true
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		return true
	case <-time.After(15 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
		return false
	}
}

// Kill ends the node with SIGKILL at once, as a crash or a pulled plug
// would, and waits for the process to be gone.
func (n *Node) Kill() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Kill()
	<-n.done
}

// Log returns what the node printed so far.
func (n *Node) Log() string { return n.log.String() }

// ID returns `offload id --json` of the node.
func (n *Node) ID(t testing.TB) client.Identity {
	t.Helper()
	var id client.Identity
	MustJSON(t, &id, "id", "--json", "--home", n.Home)
	if len(id.Addrs) == 0 {
		t.Fatalf("node %s has no addresses", n.Home)
	}
	return id
}

// WaitPeers waits until `offload peers --json` lists at least want peers.
func (n *Node) WaitPeers(t testing.TB, want int) []client.Peer {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var peers []client.Peer
		MustJSON(t, &peers, "peers", "--json", "--home", n.Home)
		if len(peers) >= want {
			return peers
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s has %d peers after 15s, want %d", n.Home, len(peers), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
