package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

// testLogger sends node logs to the test log when -v is given.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

type opt func(*node.Config)

func startNode(t *testing.T, home string, provider bool, boot []string, opts ...opt) *node.Node {
	t.Helper()
	cfg := node.Config{
		Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: boot,
		APIAddr: "127.0.0.1:0", Provider: provider, Logger: testLogger(t),
		ProviderWait: 5 * time.Second,
	}
	if provider {
		cfg.Executors = []string{"docker"}
		cfg.AllowImages = []string{"offload-test/*"}
	}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func waitFor(t *testing.T, n *node.Node, id string, d time.Duration) *node.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	task, err := n.Wait(ctx, id)
	if err != nil {
		cur, _ := n.Get(id)
		t.Fatalf("wait for %s: %v (now %+v)", id, err, cur)
	}
	return task
}

func helloSpec(args ...string) node.TaskSpec {
	return node.TaskSpec{Image: testimage.DefaultTag, Cmd: args, TimeoutMS: 60_000, Retries: wire.Retries(2)}
}

func TestTaskCrossesTwoNodes(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil, func(c *node.Config) { c.Price = 0.5 })
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)

	sub, err := req.Submit(t.Context(), helloSpec("echo", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.ExitCode == nil || *got.ExitCode != 0 {
		t.Fatalf("want completed with exit 0, got %s (%s)", got.State, got.Error)
	}
	if got.Stdout != "hi\n" {
		t.Errorf("stdout = %q, want %q", got.Stdout, "hi\n")
	}
	if got.Provider != prov.ID().String() {
		t.Errorf("provider = %s, want %s", got.Provider, prov.ID())
	}
	if got.Usage.WallMS <= 0 || got.StartedAt == nil || got.FinishedAt == nil {
		t.Errorf("usage and timings missing: %+v", got)
	}
	if len(got.Bids) != 1 || got.Bids[0].Price != 0.5 || !strings.HasPrefix(got.Bids[0].Outcome, "won") {
		t.Errorf("bids = %+v", got.Bids)
	}
	if len(got.Executions) != 1 || got.Executions[0].State != "completed" {
		t.Errorf("executions = %+v", got.Executions)
	}

	// A non-zero exit fails the task with the code and stderr.
	sub, err = req.Submit(t.Context(), helloSpec("stderr", "bad", "thing"))
	if err != nil {
		t.Fatal(err)
	}
	sub2, err := req.Submit(t.Context(), helloSpec("exit", "3"))
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, req, sub2.ID, time.Minute); got.State != "failed" || *got.ExitCode != 3 || !strings.Contains(got.Error, "exit code 3") {
		t.Errorf("exit 3: got %s code %v error %q", got.State, got.ExitCode, got.Error)
	}
	if got := waitFor(t, req, sub.ID, time.Minute); !strings.Contains(got.Stderr, "bad thing") {
		t.Errorf("stderr = %q", got.Stderr)
	}
}

func TestMissingImageFailsFastNamingIt(t *testing.T) {
	testimage.RequireDocker(t)
	prov := startNode(t, t.TempDir(), true, nil)
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	start := time.Now()
	sub, err := req.Submit(t.Context(), node.TaskSpec{Image: "offload-test/does-not-exist:7", Cmd: []string{"x"}, Retries: wire.Retries(2)})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, 30*time.Second)
	if got.State != "failed" || !strings.Contains(got.Error, "offload-test/does-not-exist:7") {
		t.Fatalf("want failed naming the image, got %s: %q", got.State, got.Error)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to fail", d)
	}
}

func TestNoProviderSaysWhy(t *testing.T) {
	req := startNode(t, t.TempDir(), false, nil, func(c *node.Config) { c.ProviderWait = 300 * time.Millisecond })
	sub, err := req.Submit(t.Context(), node.TaskSpec{Image: "x:1"})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, 10*time.Second)
	if got.State != "failed" || !strings.Contains(got.Error, "no provider is reachable") {
		t.Fatalf("got %s: %q", got.State, got.Error)
	}
}

func TestBusyProviderQueuesInsteadOfFailing(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil, func(c *node.Config) {
		c.Capacity = &market.Capacity{CPUs: 1, MemoryBytes: 1 << 30}
	})
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	var ids []string
	for range 3 {
		sub, err := req.Submit(t.Context(), helloSpec("sleep", "300ms"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sub.ID)
	}
	sawQueued := false
	for _, id := range ids {
		got := waitFor(t, req, id, time.Minute)
		if got.State != "completed" {
			t.Fatalf("task %s: %s (%s)", id, got.State, got.Error)
		}
		for _, b := range got.Bids {
			sawQueued = sawQueued || (b.Decline == "" && b.StartMS > 0)
		}
	}
	if !sawQueued {
		t.Error("three 1-cpu tasks on a 1-cpu provider: expected a queued bid (a later start) rather than declines")
	}
}

func TestRequestorRestartResumesAndKeepsHistory(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil)
	home := t.TempDir()
	boot := prov.Identity().Addrs
	req := startNode(t, home, false, boot)

	done, err := req.Submit(t.Context(), helloSpec("echo", "first"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, req, done.ID, time.Minute)

	inflight, err := req.Submit(t.Context(), helloSpec("sleep", "1500ms"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = req.Watch(ctx, inflight.ID, func(t *node.Task) error {
		if t.State == "running" {
			return io.EOF
		}
		return nil
	})
	if err != io.EOF {
		t.Fatalf("task never ran: %v", err)
	}
	// Kill the requestor while the provider runs the task; the result waits
	// in the provider's outbox.
	if err := req.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, client.APIFile)); !os.IsNotExist(err) {
		t.Errorf("api file left behind after close: %v", err)
	}
	// Let the task finish while the requestor is down: wait until the
	// provider ran it to the end (its result then waits in the outbox).
	if !testwait.Until(t.Context(), 30*time.Second, 20*time.Millisecond, func() bool { return executionsFinished(t, prov) == 2 }) {
		t.Fatalf("the provider finished %d executions, want 2", executionsFinished(t, prov))
	}

	req2 := startNode(t, home, false, boot)
	list, err := req2.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list after restart: %v, %d tasks", err, len(list))
	}
	if list[1].ID != done.ID || list[1].State != "completed" {
		t.Errorf("first task after restart: %+v", list[1])
	}
	got := waitFor(t, req2, inflight.ID, time.Minute)
	if got.State != "completed" || got.Provider != prov.ID().String() {
		t.Fatalf("in-flight task after restart: %s (%s)", got.State, got.Error)
	}
}

func TestAPIAuthAndErrors(t *testing.T) {
	home := t.TempDir()
	startNode(t, home, false, nil)
	c, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(home, client.TokenFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", err, info.Mode())
	}
	do := func(method, path, token string, body []byte) int {
		req, _ := http.NewRequest(method, c.BaseURL+path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e client.Error
		if resp.StatusCode >= 400 {
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
				t.Errorf("%s %s: error body without message", method, path)
			}
		}
		return resp.StatusCode
	}
	cases := []struct {
		method, path, token string
		body                []byte
		want                int
	}{
		{"GET", "/api/v1/tasks", "", nil, 401},
		{"GET", "/api/v1/tasks", "wrong", nil, 401},
		{"GET", "/api/v1/tasks", c.Token, nil, 200},
		{"GET", "/api/v1/id", c.Token, nil, 200},
		{"GET", "/api/v1/tasks/nope", c.Token, nil, 404},
		{"POST", "/api/v1/tasks", c.Token, []byte("{not json"), 400},
		{"POST", "/api/v1/tasks", c.Token, []byte(`{"image":""}`), 400},
		{"POST", "/api/v1/tasks", c.Token, []byte(`{"image":"a","resources":{"cpus":-1}}`), 400},
		{"POST", "/api/v1/tasks", c.Token, bytes.Repeat([]byte(" "), 2<<20), 413},
	}
	for _, tc := range cases {
		if got := do(tc.method, tc.path, tc.token, tc.body); got != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
	ts, err := c.List(t.Context())
	if err != nil || len(ts) != 0 {
		t.Errorf("bad requests created tasks: %v %d", err, len(ts))
	}
}

func TestFailoverWhenProviderVanishes(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	cheap := startNode(t, t.TempDir(), true, nil, func(c *node.Config) { c.Price = 0.1 })
	dear := startNode(t, t.TempDir(), true, cheap.Identity().Addrs, func(c *node.Config) { c.Price = 0.2 })
	req := startNode(t, t.TempDir(), false, cheap.Identity().Addrs)
	// Both providers must be in the requestor's pool (its candidates)
	// before the task is submitted.
	waitPeers(t, req, 2)
	waitPool(t, req, []*node.Node{cheap, dear}, 15*time.Second)

	sub, err := req.Submit(t.Context(), helloSpec("sleep", "3s"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = req.Watch(ctx, sub.ID, func(t *node.Task) error {
		if t.State == "running" {
			return io.EOF
		}
		return nil
	})
	if err != io.EOF {
		t.Fatalf("task never ran: %v", err)
	}
	if cur, _ := req.Get(sub.ID); cur.Provider != cheap.ID().String() {
		t.Fatalf("the cheaper provider should have won, got %s", cur.Provider)
	}
	start := time.Now()
	cheap.Close() // the provider vanishes mid-run
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.Provider != dear.ID().String() {
		t.Fatalf("after failover: %s on %s (%s)", got.State, got.Provider, got.Error)
	}
	if len(got.Executions) != 2 || got.Executions[0].State != "failed" {
		t.Errorf("executions: %+v", got.Executions)
	}
	t.Logf("failover completed %s after the provider vanished", time.Since(start).Round(time.Millisecond))
	if v := metricValue(t, req, "offload_failovers_total"); v != 1 {
		t.Errorf("offload_failovers_total = %v, want 1", v)
	}
}

func TestCancelStopsTheContainer(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil)
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	sub, err := req.Submit(t.Context(), helloSpec("sleep", "60s"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_ = req.Watch(ctx, sub.ID, func(t *node.Task) error {
		if t.State == "running" {
			return io.EOF
		}
		return nil
	})
	start := time.Now()
	got, err := req.Cancel(t.Context(), sub.ID)
	if err != nil || got.State != "canceled" {
		t.Fatalf("cancel: %v %+v", err, got)
	}
	// The provider frees the capacity once the container is gone: a new
	// task that needs all of it runs.
	all := helloSpec("echo", "after")
	all.Resources.CPUs = float64(runtime.NumCPU())
	sub2, err := req.Submit(t.Context(), all)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, req, sub2.ID, 30*time.Second); got.State != "completed" {
		t.Fatalf("task after cancel: %s %s", got.State, got.Error)
	}
	t.Logf("capacity free again %s after cancel", time.Since(start).Round(time.Millisecond))
}

func waitPeers(t *testing.T, n *node.Node, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(n.Peers()) < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d peers after 10s", len(n.Peers()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// executionsFinished counts the runs the node's provider finished (the
// offload_execution_duration_seconds histogram).
func executionsFinished(t *testing.T, n *node.Node) uint64 {
	t.Helper()
	fams, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var count uint64
	for _, f := range fams {
		if f.GetName() != node.MetricsNamespace+"_execution_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			count += m.GetHistogram().GetSampleCount()
		}
	}
	return count
}
