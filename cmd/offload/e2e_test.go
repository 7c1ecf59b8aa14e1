package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
)

// bin is the offload binary built once for these tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "offload-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "offload")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build offload: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// offload runs one CLI command and returns stdout, stderr and the exit code.
func offload(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("offload %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// nodeProc is a running `offload node` process.
type nodeProc struct {
	home string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	// exited is closed once the process has ended and been waited for.
	exited chan struct{}
}

func startNodeProc(t *testing.T, home string, args ...string) *nodeProc {
	t.Helper()
	if _, _, code := offload(t, "init", "--home", home); code != 0 {
		t.Fatalf("init %s failed", home)
	}
	os.Remove(filepath.Join(home, client.APIFile))
	all := append([]string{"node", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"}, args...)
	if slices.Contains(args, "--provider") {
		// The tests' own images run by name; nothing else does.
		all = append(all, "--allow-image", "offload-test/*")
	}
	cmd := exec.Command(bin, all...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &nodeProc{home: home, cmd: cmd, log: &log, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	if slices.Contains(args, "--provider") {
		t.Cleanup(func() { removeLoadedImages(t, home) }) // after stop
	}
	t.Cleanup(func() { p.stop(t) })
	// Ready once it wrote its API file; an exit ends the wait at once.
	ready := testwait.Until(t.Context(), 30*time.Second, 20*time.Millisecond, func() bool {
		if p.ended() {
			return true
		}
		_, err := os.Stat(filepath.Join(home, client.APIFile))
		return err == nil
	})
	if p.ended() {
		t.Fatalf("node %s exited before it was ready:\n%s", home, log.String())
	}
	if !ready {
		t.Fatalf("node %s did not start within 30s:\n%s", home, log.String())
	}
	return p
}

// ended reports whether the process has exited.
func (p *nodeProc) ended() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and returns once the process is gone.
func (p *nodeProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (p *nodeProc) stop(t *testing.T) {
	if p.ended() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.kill()
		t.Errorf("node %s did not stop on SIGTERM:\n%s", p.home, p.log.String())
	}
}

func (p *nodeProc) id(t *testing.T) client.Identity {
	t.Helper()
	out, stderr, code := offload(t, "id", "--json", "--home", p.home)
	if code != 0 {
		t.Fatalf("id: %s", stderr)
	}
	var id client.Identity
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		t.Fatalf("id --json: %v: %s", err, out)
	}
	return id
}

func TestEndToEndTwoNodeProcesses(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	dir := t.TempDir()
	a := startNodeProc(t, filepath.Join(dir, "A"), "--provider", "--price", "0.25")
	aid := a.id(t)
	if len(aid.Addrs) == 0 || !strings.HasSuffix(aid.Addrs[0], "/p2p/"+aid.ID) {
		t.Fatalf("id --json addrs: %+v", aid)
	}
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", aid.Addrs[0])

	out, stderr, code := offload(t, "run", "--home", b.home, "--wait", "--json", "--image", testimage.DefaultTag, "--", "/hello", "echo", "hi")
	if code != 0 {
		t.Fatalf("run exited %d\nstdout: %s\nstderr: %s\nnode A:\n%s", code, out, stderr, a.log)
	}
	var task map[string]any
	if err := json.Unmarshal([]byte(out), &task); err != nil {
		t.Fatalf("run --json output: %v\n%s", err, out)
	}
	for _, key := range []string{"id", "state", "provider", "exit_code", "stdout", "stderr", "error", "outputs", "usage", "price", "bids", "executions", "stages", "started_at", "finished_at"} {
		if _, ok := task[key]; !ok {
			t.Errorf("run --json has no %q", key)
		}
	}
	if task["state"] != "completed" || task["stdout"] != "hi\n" || task["provider"] != aid.ID || task["exit_code"] != 0.0 {
		t.Errorf("task = %v", task)
	}
	usage, _ := task["usage"].(map[string]any)
	if usage["wall_ms"] == nil || usage["cpu_ms"] == nil || usage["max_rss_bytes"] == nil {
		t.Errorf("usage = %v", usage)
	}

	// A failing task: non-zero exit status of the CLI, the reason in JSON.
	out, _, code = offload(t, "run", "--home", b.home, "--wait", "--json", "--image", testimage.DefaultTag, "--", "/hello", "exit", "4")
	if code == 0 {
		t.Errorf("a task exiting 4 must make run exit non-zero: %s", out)
	}

	// run without --wait prints the id at once; status reads it back.
	out, _, code = offload(t, "run", "--home", b.home, "--json", "--image", testimage.DefaultTag, "--", "/hello", "echo", "later")
	var idOnly map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &idOnly) != nil || idOnly["id"] == "" {
		t.Fatalf("run without --wait: %d %s", code, out)
	}

	out, _, code = offload(t, "peers", "--json", "--home", b.home)
	if code != 0 || !strings.Contains(out, aid.ID) {
		t.Errorf("peers --json does not list A: %s", out)
	}

	// Restart the requestor: the tasks are still listed with their states.
	b.stop(t)
	b = startNodeProc(t, b.home, "--bootstrap", aid.Addrs[0])
	out, _, code = offload(t, "list", "--json", "--home", b.home)
	var list []client.Task
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("list: %d %s", code, out)
	}
	if len(list) != 3 {
		t.Fatalf("list after restart has %d tasks, want 3: %s", len(list), out)
	}
	states := map[string]int{}
	for _, task := range list {
		states[task.State]++
	}
	if states["failed"] != 1 || states["completed"]+states["running"]+states["awarded"]+states["bidding"] != 2 {
		t.Errorf("states after restart: %v: %s", states, out)
	}
	out, _, code = offload(t, "status", idOnly["id"], "--json", "--home", b.home)
	if code != 0 || !strings.Contains(out, idOnly["id"]) {
		t.Errorf("status: %d %s", code, out)
	}
}

func TestClientWithoutNodeSaysHowToStartOne(t *testing.T) {
	home := t.TempDir()
	_, stderr, code := offload(t, "list", "--home", home)
	if code == 0 || !strings.Contains(stderr, "offload node --home") {
		t.Fatalf("want a hint to start a node, got %d: %s", code, stderr)
	}
}

func TestRunRefusesBadFlagsBeforeSubmitting(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{"--memory", "lots"}, {"--timeout", "soon"}, {"--timeout", "-5s"}, {"--cpus", "-2"}, {"--env", "NOEQUALS"},
	} {
		all := append([]string{"run", "--home", home, "--image", "x:1"}, args...)
		_, stderr, code := offload(t, all...)
		if code == 0 || strings.Contains(stderr, "no offload node") {
			t.Errorf("%v: want a flag error before contacting a node, got %d: %s", args, code, stderr)
		}
	}
}

func TestSwarmKeyCommand(t *testing.T) {
	out, _, code := offload(t, "swarm-key")
	if code != 0 || !strings.HasPrefix(out, "/key/swarm/psk/1.0.0/\n/base16/\n") {
		t.Fatalf("swarm-key: %d %q", code, out)
	}
}
