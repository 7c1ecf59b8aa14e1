package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
)

// TestEndToEndServiceTunnelExecVolume drives a service from the CLI
// against real node processes: run --service pinned to a provider, tunnel
// (a long-running CLI process), exec, cancel; then a volume.
func TestEndToEndServiceTunnelExecVolume(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	dir := t.TempDir()
	a := startNodeProc(t, filepath.Join(dir, "A"), "--provider")
	aid := a.id(t)
	other := startNodeProc(t, filepath.Join(dir, "O"), "--provider", "--bootstrap", aid.Addrs[0])
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", aid.Addrs[0], "--bootstrap", other.id(t).Addrs[0])

	out, stderr, code := offload(t, "run", "--home", b.home, "--json", "--service", "--port", "8080", "--timeout", "2m",
		"--provider", aid.ID, "--name", "web", "--image", testimage.DefaultTag, "--", "/hello", "serve", "8080", "e2e-body")
	var idOnly map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &idOnly) != nil || idOnly["id"] == "" {
		t.Fatalf("run --service: %d %s %s", code, out, stderr)
	}
	id := idOnly["id"]
	c, err := client.FromHome(b.home)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	errRunning := errors.New("running")
	last, err := c.Watch(ctx, id, func(task *client.Task) error {
		if task.State == "running" {
			return errRunning
		}
		return nil
	})
	if !errors.Is(err, errRunning) {
		t.Fatalf("service never ran: %v %+v\nnode A:\n%s", err, last, a.log)
	}
	if last.Provider != aid.ID {
		t.Fatalf("pinned to %s, ran on %s", aid.ID, last.Provider)
	}

	// offload tunnel keeps running and prints the local address first.
	tun := exec.Command(bin, "tunnel", id, "8080", "--home", b.home, "--local", "127.0.0.1:0")
	stdout, err := tun.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tun.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if tun.ProcessState == nil {
			_ = tun.Process.Kill()
			_ = tun.Wait()
		}
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("tunnel printed no address: %v", err)
	}
	addr = strings.TrimSpace(addr)
	body := ""
	var getErr error
	if !testwait.Until(t.Context(), 15*time.Second, 100*time.Millisecond, func() bool {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
		if getErr = err; err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return true
	}) {
		t.Fatalf("GET through the tunnel at %s: %v\nnode B:\n%s", addr, getErr, b.log)
	}
	if body != "e2e-body" {
		t.Errorf("through the tunnel: %q", body)
	}

	// offload exec, with and without --json.
	out, stderr, code = offload(t, "exec", id, "--home", b.home, "--json", "--", "/hello", "echo", "from exec")
	var ex struct {
		Stdout   string `json:"stdout"`
		Stderr   string `json:"stderr"`
		ExitCode int    `json:"exit_code"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &ex) != nil || ex.Stdout != "from exec\n" || ex.ExitCode != 0 {
		t.Errorf("exec --json: %d %s %s", code, out, stderr)
	}
	out, _, code = offload(t, "exec", id, "--home", b.home, "--", "/hello", "exit", "5")
	if code != 5 {
		t.Errorf("exec exit 5: the CLI exited %d (%s)", code, out)
	}

	// Interrupting offload tunnel closes the tunnel on the node.
	_ = tun.Process.Signal(syscall.SIGINT)
	if err := tun.Wait(); err != nil {
		t.Errorf("tunnel exit: %v", err)
	}
	if ts, err := c.Tunnels(t.Context()); err != nil || len(ts) != 0 {
		t.Errorf("tunnels after interrupt: %+v %v", ts, err)
	}

	if _, stderr, code := offload(t, "cancel", id, "--home", b.home); code != 0 {
		t.Fatalf("cancel: %s", stderr)
	}
	if _, _, code := offload(t, "exec", id, "--home", b.home, "--", "/hello", "echo"); code == 0 {
		t.Error("exec in a canceled service succeeded")
	}

	// A volume written by one task, listed by name and CID.
	out, stderr, code = offload(t, "run", "--home", b.home, "--wait", "--json", "--volume", "notes:/notes",
		"--image", testimage.DefaultTag, "--", "/hello", "write", "/notes/a.txt", "kept")
	if code != 0 {
		t.Fatalf("run --volume: %d %s %s", code, out, stderr)
	}
	out, _, code = offload(t, "volume", "ls", "--json", "--home", b.home)
	var vols []client.Volume
	if code != 0 || json.Unmarshal([]byte(out), &vols) != nil || len(vols) != 1 || vols[0].Name != "notes" || vols[0].CID == "" || vols[0].Size != 4 {
		t.Fatalf("volume ls --json: %d %s", code, out)
	}
	if _, _, code := offload(t, "volume", "rm", "notes", "--home", b.home); code != 0 {
		t.Error("volume rm failed")
	}
}
