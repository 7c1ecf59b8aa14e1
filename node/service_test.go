package node_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

// waitState waits until the task reaches state (or fails the test when it
// ends in another).
func waitState(t *testing.T, n *node.Node, id, state string, d time.Duration) *node.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var got *node.Task
	err := n.Watch(ctx, id, func(task *node.Task) error {
		got = task
		if task.State == state {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("task %s did not reach %s: %v (now %s: %s)", id, state, err, got.State, got.Reason)
	}
	return got
}

var errStop = errors.New("stop")

// httpGetRetry GETs url until it answers: the server inside the service
// needs a moment to listen after the task is running.
func httpGetRetry(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// containersOf lists the engine's containers of a task.
func containersOf(t *testing.T, id string) int {
	t.Helper()
	e, err := docker.New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cs, err := e.FindRunning(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Containers are labelled with the execution's name: up to 16 letters
	// and digits of the task ID, a dash, and a hash of requestor, task and
	// attempt.
	prefix := id[:min(16, len(id))] + "-"
	n := 0
	for _, c := range cs {
		if strings.HasPrefix(c.TaskID, prefix) {
			n++
		}
	}
	return n
}

func serviceSpec(prov *node.Node, name string, args ...string) node.TaskSpec {
	return node.TaskSpec{
		Image: testimage.DefaultTag, Cmd: args, TimeoutMS: 120_000, Service: true, Ports: []int{8080},
		Provider: prov.ID().String(), Namespace: "ns1", Name: name,
	}
}

func TestServiceTunnelExecNamespaceAndStrangers(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil)
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	stranger := startNode(t, t.TempDir(), false, prov.Identity().Addrs)

	sub, err := req.Submit(t.Context(), serviceSpec(prov, "alpha", "serve", "8080", "hello through the tunnel"))
	if err != nil {
		t.Fatal(err)
	}
	running := waitState(t, req, sub.ID, "running", time.Minute)

	// Tunnel: a local listener on the requestor reaches the service.
	tun, err := req.OpenTunnel(t.Context(), sub.ID, 8080, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if got := httpGetRetry(t, "http://"+tun.Addr()+"/"); got != "hello through the tunnel" {
		t.Errorf("through the tunnel: %q", got)
	}
	if _, err := req.OpenTunnel(t.Context(), sub.ID, 9090, ""); !errors.Is(err, market.ErrNotLive) {
		t.Errorf("tunnel to an undeclared port: %v", err)
	}
	if _, err := req.OpenTunnel(t.Context(), sub.ID, 8080, "0.0.0.0:0"); err == nil {
		t.Error("a tunnel listening beyond loopback was opened")
	}

	// Exec: output and exit code.
	var out, errOut bytes.Buffer
	code, err := req.Exec(t.Context(), sub.ID, []string{"/hello", "echo", "inside"}, &out, &errOut)
	if err != nil || code != 0 || out.String() != "inside\n" {
		t.Errorf("exec: %d %v %q %q", code, err, out.String(), errOut.String())
	}
	code, err = req.Exec(t.Context(), sub.ID, []string{"/hello", "exit", "7"}, io.Discard, io.Discard)
	if err != nil || code != 7 {
		t.Errorf("exec exit 7: %d %v", code, err)
	}

	// Namespace: a second service of the same namespace reaches the first
	// by its name; nothing outside.
	beta, err := req.Submit(t.Context(), serviceSpec(prov, "beta", "sleep", "120s"))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, req, beta.ID, "running", time.Minute)
	out.Reset()
	code, err = req.Exec(t.Context(), beta.ID, []string{"/hello", "get", "http://alpha:8080/"}, &out, &out)
	if err != nil || code != 0 || out.String() != "hello through the tunnel" {
		t.Errorf("beta -> alpha by name: %d %v %q", code, err, out.String())
	}
	out.Reset()
	if code, _ = req.Exec(t.Context(), beta.ID, []string{"/hello", "get", "http://1.1.1.1/"}, &out, &out); code == 0 {
		t.Errorf("a service reached the outside: %q", out.String())
	}

	// A third peer is refused, for tunnels and for exec, even knowing the
	// task id and attempt.
	_, _, err = market.DialTunnel(t.Context(), stranger.Host(), prov.ID(), wire.TunnelRequest{TaskID: sub.ID, Attempt: running.Attempt, Port: 8080})
	if !errors.Is(err, market.ErrRefused) {
		t.Errorf("stranger's tunnel: %v, want refused", err)
	}
	_, err = market.ExecOn(t.Context(), stranger.Host(), prov.ID(), wire.ExecRequest{TaskID: sub.ID, Attempt: running.Attempt, Cmd: []string{"/hello", "echo", "x"}}, io.Discard, io.Discard)
	if !errors.Is(err, market.ErrRefused) {
		t.Errorf("stranger's exec: %v, want refused", err)
	}
	if _, err := stranger.OpenTunnel(t.Context(), sub.ID, 8080, ""); !errors.Is(err, market.ErrTaskNotFound) {
		t.Errorf("stranger's node tunnel: %v", err)
	}

	// Cancel: the service and its tunnel go.
	if _, err := req.Cancel(t.Context(), sub.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for containersOf(t, sub.ID) > 0 || len(req.Tunnels()) > 0 && req.Tunnels()[0].Task == sub.ID {
		if time.Now().After(deadline) {
			t.Fatalf("after cancel: %d containers, tunnels %v", containersOf(t, sub.ID), req.Tunnels())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := req.Exec(t.Context(), sub.ID, []string{"/hello", "echo"}, io.Discard, io.Discard); !errors.Is(err, market.ErrNotLive) {
		t.Errorf("exec after cancel: %v", err)
	}

	// Provider shutdown stops what still runs.
	prov.Close()
	if n := containersOf(t, beta.ID); n != 0 {
		t.Errorf("%d containers of a service left after its provider closed", n)
	}
}

func TestServiceEndsAtItsTimeout(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil)
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	spec := serviceSpec(prov, "", "serve", "8080")
	spec.TimeoutMS, spec.Namespace = 3000, ""
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.ExitCode == nil || *got.ExitCode != 0 || got.StartedAt == nil || got.FinishedAt == nil {
		t.Fatalf("service at its timeout: %s %v %s", got.State, got.ExitCode, got.Error)
	}
	if d := got.FinishedAt.Sub(*got.StartedAt); d < 3*time.Second || d > 20*time.Second {
		t.Errorf("service lived %s, timeout 3s", d)
	}
	if !strings.Contains(got.Stdout, "serving on :8080") {
		t.Errorf("stdout %q", got.Stdout)
	}
	if n := containersOf(t, sub.ID); n != 0 {
		t.Errorf("%d containers left", n)
	}
}

func TestVolumeFollowsTheRequestor(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	p1 := startNode(t, t.TempDir(), true, nil)
	p2 := startNode(t, t.TempDir(), true, p1.Identity().Addrs)
	req := startNode(t, t.TempDir(), false, append(p1.Identity().Addrs, p2.Identity().Addrs...))
	waitPeers(t, req, 2)
	vol := []wire.Volume{{Name: "data", Path: "/data"}}
	run := func(on *node.Node, args ...string) *node.Task {
		t.Helper()
		spec := helloSpec(args...)
		spec.Volumes, spec.Provider = vol, on.ID().String()
		sub, err := req.Submit(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		return waitFor(t, req, sub.ID, time.Minute)
	}
	if got := run(p1, "write", "/data/x.txt", "written on p1"); got.State != "completed" {
		t.Fatalf("write on p1: %s %s", got.State, got.Error)
	}
	vs, err := req.Volumes()
	if err != nil || len(vs) != 1 || vs[0].Name != "data" || vs[0].CID == "" || vs[0].Size != int64(len("written on p1")) {
		t.Fatalf("volumes after the first run: %+v %v", vs, err)
	}
	first := vs[0].CID
	got := run(p2, "cat", "/data/x.txt")
	if got.State != "completed" || got.Stdout != "written on p1" || got.Provider != p2.ID().String() {
		t.Fatalf("read on p2: %s %q on %s (%s)", got.State, got.Stdout, got.Provider, got.Error)
	}
	// A failed run leaves the volume as it was.
	if got := run(p2, "exit", "3"); got.State != "failed" {
		t.Fatalf("exit 3: %s", got.State)
	}
	if vs, _ := req.Volumes(); vs[0].CID != first {
		t.Errorf("a failed run changed the volume: %s -> %s", first, vs[0].CID)
	}
	if got := run(p2, "write", "/data/y.txt", "more"); got.State != "completed" {
		t.Fatalf("second write: %s", got.Error)
	}
	vs, _ = req.Volumes()
	if vs[0].CID == first || vs[0].Size != int64(len("written on p1")+len("more")) {
		t.Errorf("after a second write: %+v", vs[0])
	}
	if _, err := req.RemoveVolume(t.Context(), "data"); err != nil {
		t.Fatal(err)
	}
	if vs, _ := req.Volumes(); len(vs) != 0 {
		t.Errorf("volumes after rm: %+v", vs)
	}
}

func TestScheduledStartSurvivesRestart(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil)
	home := t.TempDir()
	req := startNode(t, home, false, prov.Identity().Addrs)
	at := time.Now().Add(4 * time.Second).Truncate(time.Millisecond)
	spec := helloSpec("echo", "on time")
	spec.NotBefore = at.UnixMilli()
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the point: nothing may start before its time
	cur, _ := req.Get(sub.ID)
	if cur.State != "pending" || !strings.HasPrefix(cur.Reason, "scheduled for ") {
		t.Fatalf("before its time: %s %q", cur.State, cur.Reason)
	}
	req.Close()
	req = startNode(t, home, false, prov.Identity().Addrs)
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.Stdout != "on time\n" {
		t.Fatalf("scheduled task: %s %q %s", got.State, got.Stdout, got.Error)
	}
	if got.StartedAt == nil || got.StartedAt.Before(at) {
		t.Errorf("started at %v, scheduled for %v", got.StartedAt, at)
	}
}
