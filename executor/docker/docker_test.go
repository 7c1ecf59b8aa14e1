package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
)

const image = testimage.DefaultTag

// newExecutor builds the test image if needed and returns an executor that
// logs to the test.
func newExecutor(t *testing.T) *docker.Executor {
	t.Helper()
	testimage.Ensure(t, image)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := docker.New(docker.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.Available(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

func taskID(t *testing.T) string {
	var b [4]byte
	rand.Read(b[:])
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return "test-" + name + "-" + hex.EncodeToString(b[:])
}

// run runs spec (with image and a fresh task ID filled in when empty) and
// checks that no container of the task is left afterwards.
func run(t *testing.T, e *docker.Executor, spec executor.Spec) (*executor.Result, error) {
	t.Helper()
	if spec.Image == "" {
		spec.Image = image
	}
	if spec.TaskID == "" {
		spec.TaskID = taskID(t)
	}
	res, err := e.Run(t.Context(), spec)
	assertNoContainers(t, e, spec.TaskID)
	return res, err
}

func assertNoContainers(t *testing.T, e *docker.Executor, id string) {
	t.Helper()
	cs, err := e.FindRunning(context.Background())
	if err != nil {
		t.Fatalf("FindRunning: %v", err)
	}
	for _, c := range cs {
		if c.TaskID == id {
			t.Errorf("container %s of task %s left behind (state %s)", c.ID[:12], id, c.State)
		}
	}
}

func mustRun(t *testing.T, e *docker.Executor, spec executor.Spec) *executor.Result {
	t.Helper()
	res, err := run(t, e, spec)
	if err != nil {
		t.Fatalf("Run(%v): %v", spec.Cmd, err)
	}
	return res
}

func TestEcho(t *testing.T) {
	e := newExecutor(t)
	if e.Name() != "docker" {
		t.Errorf("Name() = %q", e.Name())
	}
	res := mustRun(t, e, executor.Spec{Cmd: []string{"echo", "hello", "world"}})
	if got := string(res.Stdout); got != "hello world\n" {
		t.Errorf("stdout = %q", got)
	}
	if res.ExitCode != 0 || len(res.Stderr) != 0 || res.StdoutSize != 12 {
		t.Errorf("exit %d stderr %q size %d", res.ExitCode, res.Stderr, res.StdoutSize)
	}
	if res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
		t.Errorf("times %v .. %v", res.StartedAt, res.FinishedAt)
	}
}

func TestStderrAndExitCode(t *testing.T) {
	e := newExecutor(t)
	res := mustRun(t, e, executor.Spec{Cmd: []string{"stderr", "boom", "now"}})
	if string(res.Stderr) != "boom now\n" || len(res.Stdout) != 0 || res.StderrSize != 9 {
		t.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	res = mustRun(t, e, executor.Spec{Cmd: []string{"exit", "3"}})
	if res.ExitCode != 3 {
		t.Errorf("exit code = %d, want 3", res.ExitCode)
	}
}

func TestEnvWorkdirEntrypoint(t *testing.T) {
	e := newExecutor(t)
	res := mustRun(t, e, executor.Spec{Cmd: []string{"env"}, Env: map[string]string{"FOO": "bar baz", "N": "1"}})
	for _, want := range []string{"FOO=bar baz", "N=1"} {
		if !strings.Contains(string(res.Stdout), want+"\n") {
			t.Errorf("env output %q lacks %q", res.Stdout, want)
		}
	}
	res = mustRun(t, e, executor.Spec{Cmd: []string{"pwd"}, WorkDir: "/work/dir"})
	if got := string(res.Stdout); got != "/work/dir\n" {
		t.Errorf("pwd = %q", got)
	}
	res = mustRun(t, e, executor.Spec{Entrypoint: []string{"/hello", "echo", "from"}, Cmd: []string{"entrypoint"}})
	if got := string(res.Stdout); got != "from entrypoint\n" {
		t.Errorf("entrypoint override: stdout = %q", got)
	}
}

func TestMissingImage(t *testing.T) {
	e := newExecutor(t)
	const missing = "offload-test/does-not-exist:v0"
	start := time.Now()
	res, err := run(t, e, executor.Spec{Image: missing, Cmd: []string{"echo"}})
	if d := time.Since(start); d > time.Second {
		t.Errorf("missing image took %v", d)
	}
	if !errors.Is(err, executor.ErrImageNotFound) || res != nil {
		t.Fatalf("got %v, %v; want ErrImageNotFound", res, err)
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name the image", err)
	}
}

func TestInvalidSpec(t *testing.T) {
	e := newExecutor(t)
	for name, spec := range map[string]executor.Spec{
		"negative memory": {Limits: executor.Limits{MemoryBytes: -1}},
		"relative mount":  {Mounts: []executor.Mount{{Source: "rel", Target: "/x"}}},
		"missing mount":   {Mounts: []executor.Mount{{Source: "/nonexistent/offload", Target: "/x"}}},
		"tiny memory":     {Limits: executor.Limits{MemoryBytes: 1 << 20}},
	} {
		t.Run(name, func(t *testing.T) {
			spec.Cmd = []string{"echo"}
			res, err := run(t, e, spec)
			if !errors.Is(err, executor.ErrInvalidSpec) || res != nil {
				t.Fatalf("got %v, %v; want ErrInvalidSpec", res, err)
			}
			t.Log(err)
		})
	}
}

func TestTimeout(t *testing.T) {
	e := newExecutor(t)
	start := time.Now()
	res, err := run(t, e, executor.Spec{Cmd: []string{"sleep", "30s"}, Timeout: time.Second})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
	if !errors.Is(err, executor.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "1s") {
		t.Errorf("error %q does not say the duration", err)
	}
	if res == nil || res.Usage.WallMS < 900 || res.ExitCode == 0 {
		t.Errorf("partial result = %+v", res)
	}
}

func TestOutOfMemory(t *testing.T) {
	e := newExecutor(t)
	res, err := run(t, e, executor.Spec{Cmd: []string{"alloc", "200"}, Limits: executor.Limits{MemoryBytes: 32 << 20}})
	if !errors.Is(err, executor.ErrOutOfMemory) {
		t.Fatalf("err = %v (result %+v), want ErrOutOfMemory", err, res)
	}
	if !strings.Contains(err.Error(), "33554432") || res == nil {
		t.Errorf("error %q does not name the limit (result %v)", err, res)
	}
	t.Log(err)
}

func TestOutputCap(t *testing.T) {
	e := newExecutor(t)
	res := mustRun(t, e, executor.Spec{Cmd: []string{"spam", "1000000"}, Limits: executor.Limits{OutputCap: 1000}})
	if res.StdoutSize != 1000000 || len(res.Stdout) != 1000 {
		t.Fatalf("size %d kept %d", res.StdoutSize, len(res.Stdout))
	}
	if !strings.HasSuffix(string(res.Stdout), strings.Repeat("x", 63)+"\n") {
		t.Errorf("tail = %q", res.Stdout[len(res.Stdout)-70:])
	}
}

// TestSandbox proves the sandbox from inside the container.
func TestSandbox(t *testing.T) {
	e := newExecutor(t)
	outputs := t.TempDir()
	base := executor.Spec{OutputsDir: outputs}
	with := func(cmd ...string) executor.Spec { s := base; s.Cmd = cmd; return s }

	t.Run("network", func(t *testing.T) {
		res := mustRun(t, e, with("net"))
		out := string(res.Stdout)
		if !strings.Contains(out, "nonlo 0\n") || !strings.Contains(out, "loopback ok\n") {
			t.Errorf("net report:\n%s", out)
		}
	})
	t.Run("read-only root", func(t *testing.T) {
		res := mustRun(t, e, with("write", "/evil", "x"))
		if res.ExitCode == 0 || !strings.Contains(string(res.Stderr), "read-only file system") {
			t.Errorf("write to / exit %d stderr %q", res.ExitCode, res.Stderr)
		}
	})
	t.Run("outputs and tmp writable", func(t *testing.T) {
		res := mustRun(t, e, with("write", "/outputs/result.txt", "42"))
		if res.ExitCode != 0 {
			t.Fatalf("write /outputs: %q", res.Stderr)
		}
		b, err := os.ReadFile(filepath.Join(outputs, "result.txt"))
		if err != nil || string(b) != "42" {
			t.Errorf("outputs file = %q, %v", b, err)
		}
		res = mustRun(t, e, with("write", "/tmp/scratch", "x"))
		if res.ExitCode != 0 {
			t.Errorf("write /tmp: %q", res.Stderr)
		}
	})
	t.Run("capabilities", func(t *testing.T) {
		res := mustRun(t, e, with("caps"))
		out := string(res.Stdout)
		for _, want := range []string{"CapEff=0000000000000000", "CapBnd=0000000000000000", "NoNewPrivs=1"} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("caps report lacks %s:\n%s", want, out)
			}
		}
	})
	t.Run("pids limit", func(t *testing.T) {
		s := with("fork", "40")
		s.Limits.PIDs = 10
		res := mustRun(t, e, s)
		if !strings.Contains(string(res.Stdout), "fork error") {
			t.Errorf("40 forks under a pids limit of 10 all succeeded: %q %q", res.Stdout, res.Stderr)
		}
	})
}

func TestReadOnlyInputMount(t *testing.T) {
	e := newExecutor(t)
	in := t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "data.txt"), []byte("input!"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := []executor.Mount{{Source: in, Target: "/inputs", ReadOnly: true}}
	res := mustRun(t, e, executor.Spec{Cmd: []string{"cat", "/inputs/data.txt"}, Mounts: mounts})
	if string(res.Stdout) != "input!" {
		t.Errorf("cat = %q %q", res.Stdout, res.Stderr)
	}
	res = mustRun(t, e, executor.Spec{Cmd: []string{"write", "/inputs/data.txt", "changed"}, Mounts: mounts})
	if res.ExitCode == 0 {
		t.Error("wrote into a read-only mount")
	}
	if b, _ := os.ReadFile(filepath.Join(in, "data.txt")); string(b) != "input!" {
		t.Errorf("input changed to %q", b)
	}
}

func TestUsage(t *testing.T) {
	e := newExecutor(t)
	res := mustRun(t, e, executor.Spec{Cmd: []string{"spin", "700ms"}})
	u := res.Usage
	t.Logf("usage of a 700ms busy loop: %+v", u)
	if u.WallMS < 700 {
		t.Errorf("wall_ms %d < 700", u.WallMS)
	}
	// A busy loop's CPU time depends on what else the machine runs; it
	// must be measured (not zero) and cannot exceed its wall time.
	if u.CPUMS < 50 || u.CPUMS > u.WallMS+100 {
		t.Errorf("cpu_ms %d for a %dms busy loop", u.CPUMS, u.WallMS)
	}
	if u.MaxRSSBytes <= 0 {
		t.Errorf("max_rss_bytes %d", u.MaxRSSBytes)
	}
	res = mustRun(t, e, executor.Spec{Cmd: []string{"alloc", "64"}, Limits: executor.Limits{MemoryBytes: 256 << 20}})
	t.Logf("usage of alloc 64 MiB: %+v", res.Usage)
	if res.Usage.MaxRSSBytes < 64<<20 {
		t.Errorf("max_rss_bytes %d after touching 64 MiB", res.Usage.MaxRSSBytes)
	}
}

// runningWithin reports whether FindRunning lists the task's container as
// running within d.
func runningWithin(t *testing.T, e *docker.Executor, id string, d time.Duration) bool {
	t.Helper()
	return testwait.Until(t.Context(), d, 20*time.Millisecond, func() bool {
		cs, err := e.FindRunning(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.TaskID == id && c.State == string(container.StateRunning) {
				return true
			}
		}
		return false
	})
}

// TestContextCancelRemovesContainer cancels a run once its container runs.
func TestContextCancelRemovesContainer(t *testing.T) {
	e := newExecutor(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	id := taskID(t)
	type ran struct {
		res *executor.Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := e.Run(ctx, executor.Spec{TaskID: id, Image: image, Cmd: []string{"sleep", "30s"}})
		done <- ran{res, err}
	}()
	if !runningWithin(t, e, id, 10*time.Second) {
		t.Fatal("FindRunning never showed the task's container")
	}
	start := time.Now()
	cancel()
	var r ran
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the cancel")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if !errors.Is(r.err, context.Canceled) || r.res == nil {
		t.Fatalf("got %v, %v; want partial result and context.Canceled", r.res, r.err)
	}
	assertNoContainers(t, e, id)
}

func TestFindRunningAndRemoveTask(t *testing.T) {
	e := newExecutor(t)
	id := taskID(t)
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(t.Context(), executor.Spec{TaskID: id, Image: image, Cmd: []string{"sleep", "30s"}})
		done <- err
	}()
	if !runningWithin(t, e, id, 10*time.Second) {
		t.Fatal("FindRunning never showed the task's container")
	}
	if err := e.RemoveTask(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, docker.ErrContainerGone) {
			t.Errorf("Run after RemoveTask: %v, want ErrContainerGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after RemoveTask")
	}
	assertNoContainers(t, e, id)
	if err := e.RemoveTask(t.Context(), id); err != nil {
		t.Errorf("second RemoveTask: %v", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	e := newExecutor(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			res, err := run(t, e, executor.Spec{Cmd: []string{"echo", strings.Repeat("y", i+1)}})
			if err != nil || string(res.Stdout) != strings.Repeat("y", i+1)+"\n" {
				t.Errorf("run %d: %v %v", i, res, err)
			}
		})
	}
	wg.Wait()
}

// TestOverhead compares a trivial task through the executor with the bare
// engine calls of `docker run --rm` (create, start, wait, remove).
func TestOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	e := newExecutor(t)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := t.Context()
	raw := func(hc container.HostConfig, netDisabled bool) func() {
		return func() {
			c, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
				Config:     &container.Config{Image: image, Cmd: []string{"echo", "hi"}, NetworkDisabled: netDisabled},
				HostConfig: &hc,
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
				t.Fatal(err)
			}
			w := cli.ContainerWait(ctx, c.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
			select {
			case <-w.Result:
			case err := <-w.Error:
				t.Fatal(err)
			}
			if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ours := func() { mustRun(t, e, executor.Spec{TaskID: "overhead", Cmd: []string{"echo", "hi"}}) }
	median := func(f func()) time.Duration {
		f() // warm up
		var ds []time.Duration
		for range 7 {
			s := time.Now()
			f()
			ds = append(ds, time.Since(s))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	plain := median(raw(container.HostConfig{NetworkMode: "none"}, false))
	bare := median(raw(container.HostConfig{NetworkMode: "none", LogConfig: container.LogConfig{Type: "none"}}, true))
	o := median(ours)
	t.Logf("trivial task, median of 7: raw API (like docker run --rm --network none) %v; "+
		"raw API without network sandbox or log driver %v; executor.Run (attach, sandbox, accounting) %v (%.2fx of the latter)",
		plain, bare, o, float64(o)/float64(bare))
}

// A task runs as an unprivileged uid, not root, and can still write
// /outputs and /tmp.
func TestRunsUnprivileged(t *testing.T) {
	e := newExecutor(t)
	outputs := t.TempDir() // 0700, owned by root: Run opens it to the task
	res := mustRun(t, e, executor.Spec{OutputsDir: outputs, Cmd: []string{"whoami"}})
	if !strings.Contains(string(res.Stdout), "uid=65534\n") {
		t.Fatalf("task identity:\n%s", res.Stdout)
	}
	res = mustRun(t, e, executor.Spec{OutputsDir: outputs, Cmd: []string{"write", "/outputs/x", "42"}})
	if res.ExitCode != 0 {
		t.Fatalf("an unprivileged task cannot write /outputs: %s", res.Stderr)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(outputs, "x"), &st); err != nil || st.Uid != 65534 {
		t.Fatalf("outputs file owner %d, %v", st.Uid, err)
	}
}

// Loading a requestor's tarball never adds or moves a tag: the tags it
// carries are stripped and the image runs by its ID.
func TestLoadImageAppliesNoTag(t *testing.T) {
	e := newExecutor(t)
	ctx := t.Context()
	rc, err := e.SaveImage(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the tarball as a hostile requestor would: claim tags that
	// belong to other images (one that exists, one that does not yet).
	victim := "offload-test/victim-" + hex.EncodeToString([]byte(t.Name()))[:8] + ":latest"
	hostile := testimage.RetagImageTar(t, saved, []string{victim, image})
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(tarPath, hostile, 0o600); err != nil {
		t.Fatal(err)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	before, err := cli.ImageInspect(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.LoadImage(ctx, tarPath)
	if err != nil {
		t.Fatalf("LoadImage: %v", err)
	}
	if id != before.ID {
		t.Errorf("loaded ID %s, want %s", id, before.ID)
	}
	if _, err := cli.ImageInspect(ctx, victim); err == nil {
		cli.ImageRemove(ctx, victim, client.ImageRemoveOptions{})
		t.Fatalf("the tarball's tag %s was applied", victim)
	}
	res := mustRun(t, e, executor.Spec{Image: id, Cmd: []string{"echo", "by id"}})
	if string(res.Stdout) != "by id\n" {
		t.Fatalf("run by ID: %q", res.Stdout)
	}

	bad := filepath.Join(t.TempDir(), "bad.tar")
	os.WriteFile(bad, []byte("not a tarball"), 0o600)
	if _, err := e.LoadImage(ctx, bad); !errors.Is(err, docker.ErrBadImageTar) {
		t.Fatalf("a junk file: %v, want ErrBadImageTar", err)
	}
}

// A task that asks for gVisor runs under gVisor's kernel, unprivileged, and
// can write its outputs; a service cannot ask for it.
func TestGVisorIsolation(t *testing.T) {
	e := newExecutor(t)
	if !e.GVisor(t.Context()) {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI registers runsc with the engine (scripts/ensure-docker.sh), but the engine lacks it")
		}
		t.Skip("the engine has no runsc runtime")
	}
	outputs := t.TempDir()
	res := mustRun(t, e, executor.Spec{Isolation: docker.IsolationGVisor, OutputsDir: outputs, Cmd: []string{"cat", "/proc/version"}})
	if res.ExitCode != 0 || !strings.Contains(string(res.Stdout), "Linux version 4.4.0") {
		t.Fatalf("not gVisor's kernel: exit %d %q %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	res = mustRun(t, e, executor.Spec{Isolation: docker.IsolationGVisor, OutputsDir: outputs, Cmd: []string{"whoami"}})
	if !strings.Contains(string(res.Stdout), "uid=65534\n") {
		t.Fatalf("gVisor task identity: %s", res.Stdout)
	}
	res = mustRun(t, e, executor.Spec{Isolation: docker.IsolationGVisor, OutputsDir: outputs, Cmd: []string{"write", "/outputs/g", "1"}})
	if b, err := os.ReadFile(filepath.Join(outputs, "g")); res.ExitCode != 0 || string(b) != "1" {
		t.Fatalf("gVisor task outputs: exit %d %q, file %q %v", res.ExitCode, res.Stderr, b, err)
	}
	_, err := e.StartService(t.Context(), executor.ServiceSpec{Spec: executor.Spec{TaskID: taskID(t), Image: image,
		Isolation: docker.IsolationGVisor, Cmd: []string{"serve", "8080"}}, Network: "offload-test-gvisor"})
	if !errors.Is(err, executor.ErrInvalidSpec) {
		t.Fatalf("a gVisor service: %v, want ErrInvalidSpec", err)
	}
}
