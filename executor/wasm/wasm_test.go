package wasm_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/internal/testimage"
)

// sharedCache is one compilation cache for the package's tests, so the Go
// test module compiles once rather than once per test (seconds each on 2
// cores). TestWarmStart uses its own executor without it.
var sharedCache = sync.OnceValue(func() string {
	dir, err := os.MkdirTemp("", "offload-wasm-test-cache-")
	if err != nil {
		panic(err)
	}
	return dir
})

func newExecutor(t *testing.T, opts ...wasm.Option) (*wasm.Executor, string) {
	t.Helper()
	mod := testimage.BuildWASM(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	if len(opts) == 0 {
		opts = []wasm.Option{wasm.WithCacheDir(sharedCache())}
	}
	e, err := wasm.New(append(opts, wasm.WithLogger(logger))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if e.Name() != "wasm" {
		t.Errorf("Name() = %q", e.Name())
	}
	if err := e.Available(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e, mod
}

func mustRun(t *testing.T, e *wasm.Executor, spec executor.Spec) *executor.Result {
	t.Helper()
	res, err := e.Run(t.Context(), spec)
	if err != nil {
		t.Fatalf("Run(%v): %v", spec.Cmd, err)
	}
	return res
}

func TestEchoExitEnv(t *testing.T) {
	e, mod := newExecutor(t)
	res := mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"echo", "hello", "wasm"}})
	if string(res.Stdout) != "hello wasm\n" || res.ExitCode != 0 || res.StdoutSize != 11 {
		t.Errorf("echo: %+v", res)
	}
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"exit", "7"}})
	if res.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", res.ExitCode)
	}
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"stderr", "oops"}})
	if string(res.Stderr) != "oops\n" {
		t.Errorf("stderr %q", res.Stderr)
	}
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"env"}, Env: map[string]string{"FOO": "bar", "X": "y z"}})
	for _, want := range []string{"FOO=bar\n", "X=y z\n"} {
		if !strings.Contains(string(res.Stdout), want) {
			t.Errorf("env %q lacks %q", res.Stdout, want)
		}
	}
}

func TestMissingAndInvalidModule(t *testing.T) {
	e, _ := newExecutor(t)
	missing := filepath.Join(t.TempDir(), "nope.wasm")
	res, err := e.Run(t.Context(), executor.Spec{Image: missing})
	if !errors.Is(err, executor.ErrImageNotFound) || res != nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing module: %v, %v", res, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644)
	res, err = e.Run(t.Context(), executor.Spec{Image: bad})
	if !errors.Is(err, executor.ErrInvalidSpec) || res != nil {
		t.Errorf("invalid module: %v, %v", res, err)
	}
	t.Log(err)
}

func TestMounts(t *testing.T) {
	e, mod := newExecutor(t)
	in, out := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(in, "data.txt"), []byte("input!"), 0o644)
	spec := func(cmd ...string) executor.Spec {
		return executor.Spec{
			Image: mod, Cmd: cmd, OutputsDir: out,
			Mounts: []executor.Mount{{Source: in, Target: "/inputs", ReadOnly: true}},
		}
	}
	res := mustRun(t, e, spec("cat", "/inputs/data.txt"))
	if string(res.Stdout) != "input!" {
		t.Errorf("cat: %q %q", res.Stdout, res.Stderr)
	}
	res = mustRun(t, e, spec("write", "/inputs/data.txt", "changed"))
	if res.ExitCode == 0 {
		t.Error("wrote into a read-only mount")
	}
	res = mustRun(t, e, spec("write", "/outputs/result.txt", "42"))
	if b, err := os.ReadFile(filepath.Join(out, "result.txt")); res.ExitCode != 0 || string(b) != "42" {
		t.Errorf("outputs: exit %d %q, file %q %v", res.ExitCode, res.Stderr, b, err)
	}
	res = mustRun(t, e, spec("write", "/tmp/x", "1"))
	if res.ExitCode != 0 {
		t.Errorf("write /tmp: %q", res.Stderr)
	}
	res = mustRun(t, e, spec("ls", "/"))
	t.Logf("ls /: %q %q", res.Stdout, res.Stderr)
	res = mustRun(t, e, spec("cat", "/etc/passwd"))
	if res.ExitCode == 0 {
		t.Errorf("read a host file outside the mounts: %q", res.Stdout)
	}
}

// TestOutputsMadeOnFirstUse: an outputs directory that does not exist yet
// is made when the task first writes to /outputs (with what it wrote) and
// never made for a task that does not use /outputs.
func TestOutputsMadeOnFirstUse(t *testing.T) {
	e, mod := newExecutor(t)
	if !e.MakesOutputsDir() {
		t.Fatal("the WASM executor says it does not make /outputs")
	}
	root := t.TempDir()
	quiet, writes := filepath.Join(root, "quiet"), filepath.Join(root, "writes")
	res := mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"echo", "hi"}, OutputsDir: quiet})
	if res.ExitCode != 0 {
		t.Fatalf("echo: %+v", res)
	}
	if _, err := os.Lstat(quiet); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a task that never used /outputs left %s: %v", quiet, err)
	}
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"write", "/outputs/result.txt", "42"}, OutputsDir: writes})
	if b, err := os.ReadFile(filepath.Join(writes, "result.txt")); res.ExitCode != 0 || string(b) != "42" {
		t.Errorf("outputs made on first use: exit %d %q, file %q %v", res.ExitCode, res.Stderr, b, err)
	}
	// A missing parent is an error the task sees, not a directory made
	// somewhere else.
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"write", "/outputs/x", "1"}, OutputsDir: filepath.Join(root, "no", "such")})
	if res.ExitCode == 0 {
		t.Error("wrote to /outputs whose host directory's parent is missing")
	}
}

func TestTimeout(t *testing.T) {
	e, mod := newExecutor(t)
	// Compile first: the timeout covers the run, not loading the module.
	mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"exit", "0"}})
	for _, cmd := range [][]string{{"sleep", "30s"}, {"spin", "30s"}} {
		start := time.Now()
		res, err := e.Run(t.Context(), executor.Spec{Image: mod, Cmd: cmd, Timeout: 500 * time.Millisecond})
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%v: timeout took %v", cmd, d)
		}
		if !errors.Is(err, executor.ErrTimeout) || res == nil || !strings.Contains(err.Error(), "500ms") {
			t.Errorf("%v: got %v, %v; want partial result and ErrTimeout naming 500ms", cmd, res, err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := e.Run(ctx, executor.Spec{Image: mod, Cmd: []string{"sleep", "30s"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}
}

func TestMemoryCap(t *testing.T) {
	e, mod := newExecutor(t)
	res, err := e.Run(t.Context(), executor.Spec{Image: mod, Cmd: []string{"alloc", "256"}, Limits: executor.Limits{MemoryBytes: 64 << 20}})
	if !errors.Is(err, executor.ErrOutOfMemory) || res == nil {
		t.Fatalf("got %+v, %v; want ErrOutOfMemory", res, err)
	}
	if res.Usage.MaxRSSBytes > 64<<20 {
		t.Errorf("linear memory peak %d above the cap", res.Usage.MaxRSSBytes)
	}
	t.Logf("%v (peak %d)", err, res.Usage.MaxRSSBytes)
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"alloc", "32"}, Limits: executor.Limits{MemoryBytes: 256 << 20}})
	if string(res.Stdout) != "ok\n" || res.Usage.MaxRSSBytes < 32<<20 {
		t.Errorf("alloc under the cap: %q %q peak %d", res.Stdout, res.Stderr, res.Usage.MaxRSSBytes)
	}
	res, err = e.Run(t.Context(), executor.Spec{Image: mod, Cmd: []string{"echo"}, Limits: executor.Limits{MemoryBytes: 64 << 10}})
	if !errors.Is(err, executor.ErrOutOfMemory) {
		t.Errorf("cap below the module's initial memory: %v, %v", res, err)
	}
}

func TestUsageAndOutputCap(t *testing.T) {
	e, mod := newExecutor(t)
	res := mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"spin", "300ms"}})
	t.Logf("usage of a 300ms busy loop: %+v", res.Usage)
	if res.Usage.WallMS < 300 || res.Usage.CPUMS < 10 || res.Usage.CPUMS > res.Usage.WallMS+100 || res.Usage.MaxRSSBytes <= 0 {
		t.Errorf("usage %+v", res.Usage)
	}
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"spam", "100000"}, Limits: executor.Limits{OutputCap: 100}})
	if res.StdoutSize != 100000 || len(res.Stdout) != 100 || !strings.HasSuffix(string(res.Stdout), "x\n") {
		t.Errorf("output cap: size %d kept %d", res.StdoutSize, len(res.Stdout))
	}
}

func TestConcurrentRuns(t *testing.T) {
	e, mod := newExecutor(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			want := strings.Repeat("z", i+1)
			res, err := e.Run(t.Context(), executor.Spec{Image: mod, Cmd: []string{"echo", want}})
			if err != nil || string(res.Stdout) != want+"\n" {
				t.Errorf("run %d: %v %v", i, res, err)
			}
		})
	}
	wg.Wait()
}

// TestWarmStart checks that the compiled module is reused: a warm run must be
// much faster than the first (cold) one.
func TestWarmStart(t *testing.T) {
	e, mod := newExecutor(t, wasm.WithCacheDir(t.TempDir())) // a cold cache
	spec := executor.Spec{Image: mod, Cmd: []string{"exit", "0"}}
	start := time.Now()
	mustRun(t, e, spec)
	cold := time.Since(start)
	var warm time.Duration
	for range 5 {
		s := time.Now()
		mustRun(t, e, spec)
		if d := time.Since(s); warm == 0 || d < warm {
			warm = d
		}
	}
	t.Logf("hello.wasm (Go, %s): cold run %v, warm run %v (best of 5)", sizeOf(mod), cold, warm)
	if warm*5 > cold {
		t.Errorf("warm run %v is not much faster than cold %v", warm, cold)
	}
}

func sizeOf(p string) string {
	fi, err := os.Stat(p)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20))
}

// trivialModule is the smallest WASI command: an empty _start and one page
// of exported memory.
var trivialModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
	0x03, 0x02, 0x01, 0x00, // function 0 has type 0
	0x05, 0x03, 0x01, 0x00, 0x01, // memory: min 1 page
	0x07, 0x13, 0x02, // exports: 2
	0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00,
	0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
	0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: empty body
}

func TestWarmStartTrivialModule(t *testing.T) {
	e, _ := newExecutor(t)
	p := filepath.Join(t.TempDir(), "trivial.wasm")
	if err := os.WriteFile(p, trivialModule, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := executor.Spec{Image: p}
	start := time.Now()
	mustRun(t, e, spec)
	cold := time.Since(start)
	warm := time.Hour
	for range 20 {
		s := time.Now()
		mustRun(t, e, spec)
		warm = min(warm, time.Since(s))
	}
	t.Logf("trivial module: cold run %v, warm run %v (best of 20)", cold, warm)
	if warm > 5*time.Millisecond {
		t.Errorf("warm start of a trivial module took %v, target 5ms", warm)
	}
}

// TestTmpMadeOnFirstUse: a run's /tmp directory is made only when the guest
// uses /tmp: with a temp root that does not exist, a run that never touches
// /tmp succeeds, while a write to /tmp fails in the guest. With a temp root
// that exists, a write to /tmp succeeds and nothing is left behind.
func TestTmpMadeOnFirstUse(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tmp")
	e, mod := newExecutor(t, wasm.WithCacheDir(sharedCache()), wasm.WithTempRoot(root))
	res := mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"echo", "hi"}})
	if res.ExitCode != 0 || string(res.Stdout) != "hi\n" {
		t.Fatalf("echo without a temp root: exit %d %q %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"write", "/tmp/x", "1"}})
	if res.ExitCode == 0 {
		t.Fatal("wrote to /tmp although its directory could not be made")
	}
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	res = mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"write", "/tmp/x", "1"}})
	if res.ExitCode != 0 {
		t.Fatalf("write /tmp: exit %d %q", res.ExitCode, res.Stderr)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("the run's /tmp was left behind: %v", ents)
	}
}
