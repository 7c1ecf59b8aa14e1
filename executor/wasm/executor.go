package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/offload-project/offload/executor"
)

// Name is the runtime name of this executor in specs and adverts.
const Name = "wasm"

// Paths inside the guest.
const (
	OutputsPath = "/outputs"
	TmpPath     = "/tmp"
)

// argv0 is the program name the guest sees.
const argv0 = "task"

// DefaultMaxMemoryBytes is the default ceiling of any run's linear memory
// (the wasm32 maximum, 4 GiB).
const DefaultMaxMemoryBytes = 1 << 32

const pageSize = 1 << 16

var _ executor.Executor = (*Executor)(nil)

// Executor runs WASI preview 1 modules. It is safe for concurrent use.
type Executor struct {
	cfg config
	log *slog.Logger

	// diskMu serializes trims of the cache directory.
	diskMu sync.Mutex

	mu       sync.Mutex
	files    map[string]fileKey   // module path -> what it was when hashed
	compiled map[string]*compiled // content hash -> compiled module
	tick     uint64               // counts uses, orders compiled by last use
	diskOver bool                 // the last trim left the cache directory over budget
	closed   bool
}

type fileKey struct {
	size    int64
	modTime time.Time
	hash    string
}

type config struct {
	logger      *slog.Logger
	cacheDir    string
	cacheBytes  int64
	maxCompiled int
	maxMem      int64
	tmpRoot     string
	diskQuota   int64
}

// Option configures an Executor.
type Option func(*config) error

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("wasm: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithCacheDir persists compiled machine code in dir, so that a new process
// skips compiling modules it has seen. The directory is bounded
// (WithCacheBytes) and may be shared by several executors and processes;
// see the package doc.
func WithCacheDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("wasm: empty cache dir")
		}
		c.cacheDir = dir
		return nil
	}
}

// WithCacheBytes bounds the bytes of compiled code kept under the cache
// directory (default DefaultCacheBytes); the least recently used entries no
// run uses are removed to make room.
func WithCacheBytes(bytes int64) Option {
	return func(c *config) error {
		if bytes <= 0 {
			return fmt.Errorf("wasm: cache bytes %d must be positive", bytes)
		}
		c.cacheBytes = bytes
		return nil
	}
}

// WithMaxCompiled bounds how many compiled modules are kept in memory for
// later runs (default DefaultMaxCompiled); modules that runs are using are
// kept beyond it until those runs end.
func WithMaxCompiled(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("wasm: max compiled %d must be positive", n)
		}
		c.maxCompiled = n
		return nil
	}
}

// WithMaxMemory sets the ceiling of every run's linear memory (the runtime's
// memory limit); Limits.MemoryBytes above it is refused as an invalid spec.
func WithMaxMemory(bytes int64) Option {
	return func(c *config) error {
		if bytes < pageSize || bytes > DefaultMaxMemoryBytes {
			return fmt.Errorf("wasm: max memory %d out of range [%d, %d]", bytes, pageSize, int64(DefaultMaxMemoryBytes))
		}
		c.maxMem = bytes
		return nil
	}
}

// WithTempRoot sets where each run's /tmp directory is created (default
// os.TempDir()).
func WithTempRoot(dir string) Option {
	return func(c *config) error {
		c.tmpRoot = dir
		return nil
	}
}

// WithDiskQuota sets how many bytes one run may add to its writable mounts
// (/tmp, /outputs and writable Spec.Mounts together); default
// DefaultDiskQuota. A write that would go past it fails in the guest with
// ENOSPC. See the package doc for what is counted.
func WithDiskQuota(bytes int64) Option {
	return func(c *config) error {
		if bytes <= 0 {
			return fmt.Errorf("wasm: disk quota %d must be positive", bytes)
		}
		c.diskQuota = bytes
		return nil
	}
}

// New returns a WASM executor. Each distinct module is compiled in a
// wazero runtime of its own (compiler where supported) with WASI preview 1
// instantiated.
//
// Defaults: logger slog.Default(), no cache directory (compiled code is
// kept in memory only), cache bytes DefaultCacheBytes, max compiled
// DefaultMaxCompiled, max memory DefaultMaxMemoryBytes, temp root
// os.TempDir(), disk quota DefaultDiskQuota. With a cache directory, New
// creates it and trims it to the budget before it returns.
func New(opts ...Option) (*Executor, error) {
	var cfg config
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.cacheBytes == 0 {
		cfg.cacheBytes = DefaultCacheBytes
	}
	if cfg.maxCompiled == 0 {
		cfg.maxCompiled = DefaultMaxCompiled
	}
	if cfg.maxMem == 0 {
		cfg.maxMem = DefaultMaxMemoryBytes
	}
	if cfg.diskQuota == 0 {
		cfg.diskQuota = DefaultDiskQuota
	}
	e := &Executor{
		cfg:      cfg,
		log:      cfg.logger.With("executor", Name),
		files:    map[string]fileKey{},
		compiled: map[string]*compiled{},
	}
	if cfg.cacheDir != "" {
		dir, err := filepath.Abs(cfg.cacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache %s: %w", cfg.cacheDir, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("wasm compilation cache: %w", err)
		}
		e.cfg.cacheDir = dir
		if err := e.trimDisk(); err != nil {
			return nil, err
		}
	}
	// Fail now rather than at the first run if WASI cannot be set up.
	rt, _, err := e.newRuntime(context.Background(), "")
	if err != nil {
		return nil, fmt.Errorf("wasm: %w", err)
	}
	closeRuntime(rt, nil)
	return e, nil
}

// Close releases every compiled module. Runs in progress are closed with
// them.
func (e *Executor) Close() error {
	e.mu.Lock()
	e.closed = true
	all := make([]*compiled, 0, len(e.compiled))
	for _, c := range e.compiled {
		all = append(all, c)
	}
	clear(e.compiled)
	clear(e.files)
	e.mu.Unlock()
	var errs []error
	for _, c := range all {
		// A module still compiling is closed by the run compiling it, which
		// finds the executor closed.
		if c.ready {
			errs = append(errs, closeRuntime(c.rt, c.cache))
		}
	}
	return errors.Join(errs...)
}

// Name returns "wasm".
func (e *Executor) Name() string { return Name }

// MakesOutputsDir reports that Spec.OutputsDir need not exist: the
// executor makes it (mode 0700) when the task first uses /outputs, and a
// task that never does leaves none.
func (e *Executor) MakesOutputsDir() bool { return true }

// Available reports nil unless the Executor is closed: the runtime is in
// process.
func (e *Executor) Available(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("%w: wasm executor closed", executor.ErrUnavailable)
	}
	return nil
}

// Run instantiates the module at spec.Image and runs its _start to the end.
// See executor.Executor for the contract and the package doc for what the
// guest sees and what is measured.
func (e *Executor) Run(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
	if err := e.validate(spec); err != nil {
		return nil, err
	}
	if err := e.Available(ctx); err != nil {
		return nil, err
	}
	c, err := e.module(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer e.release(c)
	mod := c.mod
	limit := spec.Limits.MemoryBytes
	if limit == 0 {
		limit = min(int64(executor.DefaultMemoryBytes), e.cfg.maxMem)
	}
	for name, m := range mod.ExportedMemories() {
		if need := int64(m.Min()) * pageSize; need > limit {
			return nil, fmt.Errorf("wasm run %s: memory %q needs %d bytes at start, limit %d: %w",
				spec.TaskID, name, need, limit, executor.ErrOutOfMemory)
		}
	}

	timeout := spec.Timeout
	if timeout == 0 {
		timeout = executor.DefaultTimeout
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	quota := newDiskQuota(e.cfg.diskQuota)
	// The run's /tmp directory is made when the guest first uses it.
	tmp := newLazyFS(e.cfg.tmpRoot, "offload-wasm-tmp-", TmpPath, quota)
	defer func() {
		if dir, err := tmp.close(); err != nil {
			e.log.Warn("remove temp dir", "task", spec.TaskID, "dir", dir, "err", err)
		}
	}()
	fsCfg, closeMounts, err := mounts(spec, tmp, quota)
	if err != nil {
		return nil, fmt.Errorf("wasm run %s: %w", spec.TaskID, err)
	}
	defer closeMounts()

	stdout := executor.NewTailBuffer(spec.Limits.OutputCap)
	stderr := executor.NewTailBuffer(spec.Limits.OutputCap)
	mem := &cappedMemory{limit: uint64(limit)}
	modCfg := e.moduleConfig(runCtx, spec, fsCfg, stdout, stderr)
	instCtx := withQuota(experimental.WithMemoryAllocator(runCtx, mem.allocator()), quota)

	// The guest runs on this goroutine; pin it to one thread so that the
	// thread's CPU clock measures the guest.
	runtime.LockOSThread()
	cpu0 := threadCPU()
	started := time.Now()
	inst, runErr := c.rt.InstantiateModule(instCtx, mod, modCfg)
	finished := time.Now()
	cpu1 := threadCPU()
	runtime.UnlockOSThread()
	if inst != nil {
		_ = inst.Close(context.Background())
	}
	// Closing (or a failed instantiation, which wazero closes itself)
	// frees the memory through Free; this makes sure the mapping is gone
	// whatever the path.
	mem.Free()

	res := &executor.Result{
		Stdout:     stdout.Bytes(),
		Stderr:     stderr.Bytes(),
		StdoutSize: stdout.Total(),
		StderrSize: stderr.Total(),
		StartedAt:  started,
		FinishedAt: finished,
		Usage: executor.Usage{
			WallMS:      finished.Sub(started).Milliseconds(),
			CPUMS:       (cpu1 - cpu0) / 1e6,
			MaxRSSBytes: int64(mem.peak.Load()),
		},
	}
	if quota.hit() {
		appendStderr(res, fmt.Sprintf("\noffload: disk quota of %d bytes reached (ENOSPC)\n", quota.limit))
	}
	if runErr == nil {
		return res, nil
	}
	var exit *sys.ExitError
	if errors.As(runErr, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeContextCanceled, sys.ExitCodeDeadlineExceeded:
			res.ExitCode = -1
			if ctx.Err() != nil {
				return res, fmt.Errorf("wasm run %s: stopped: %w", spec.TaskID, context.Cause(ctx))
			}
			return res, fmt.Errorf("wasm run %s: killed after %v: %w", spec.TaskID, timeout, executor.ErrTimeout)
		}
		res.ExitCode = int(exit.ExitCode())
	} else {
		// A trap (unreachable, out-of-bounds access...) ends the guest
		// like a crash: report it as a failed exit with the reason on stderr.
		res.ExitCode = 1
		appendStderr(res, "\nwasm trap: "+runErr.Error()+"\n")
	}
	if mem.hit.Load() {
		return res, fmt.Errorf("wasm run %s: linear memory would exceed the limit of %d bytes (%d MiB): %w",
			spec.TaskID, limit, limit>>20, executor.ErrOutOfMemory)
	}
	if quota.hit() && res.ExitCode != 0 {
		return res, fmt.Errorf("wasm run %s: exited %d after writes were refused at the disk quota of %d bytes: %w",
			spec.TaskID, res.ExitCode, quota.limit, ErrDiskQuota)
	}
	return res, nil
}

// appendStderr adds a line of the executor's own to the result's stderr.
func appendStderr(res *executor.Result, msg string) {
	res.Stderr = append(res.Stderr, msg...)
	res.StderrSize += int64(len(msg))
}

// mounts opens the run's guest file systems: tmp at /tmp (first), then
// Spec.Mounts, each a rootFS, and Spec.OutputsDir at /outputs, a lazyFS
// made on first use; the writable ones share q. The returned func closes those it opened (after the module
// is closed); closing tmp is the caller's.
func mounts(spec executor.Spec, tmp *lazyFS, q *diskQuota) (wazero.FSConfig, func(), error) {
	type mount struct {
		host, guest string
		readOnly    bool
	}
	cfg := wazero.NewFSConfig()
	sc, ok := cfg.(sysfs.FSConfig)
	if !ok {
		return nil, nil, fmt.Errorf("wazero FSConfig %T cannot mount a sys.FS", cfg)
	}
	cfg = sc.WithSysFSMount(tmp, TmpPath)
	list := make([]mount, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		list = append(list, mount{m.Source, m.Target, m.ReadOnly})
	}
	// /outputs is made when the task first uses it (MakesOutputsDir): a
	// task that writes no outputs costs no directory.
	var outputs *lazyFS
	if spec.OutputsDir != "" {
		outputs = newLazyDir(spec.OutputsDir, OutputsPath, q)
	}

	opened := make([]*rootFS, 0, len(list))
	closeAll := func() {
		for _, r := range opened {
			_ = r.close()
		}
		if outputs != nil {
			_, _ = outputs.close()
		}
	}
	for _, m := range list {
		r, err := openRootFS(m.host, m.guest, m.readOnly, q)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("mount %s at %s: %w", m.host, m.guest, err)
		}
		opened = append(opened, r)
		sc, ok := cfg.(sysfs.FSConfig)
		if !ok {
			closeAll()
			return nil, nil, fmt.Errorf("wazero FSConfig %T cannot mount a sys.FS", cfg)
		}
		cfg = sc.WithSysFSMount(r, m.guest)
	}
	if outputs != nil {
		sc, ok := cfg.(sysfs.FSConfig)
		if !ok {
			closeAll()
			return nil, nil, fmt.Errorf("wazero FSConfig %T cannot mount a sys.FS", cfg)
		}
		cfg = sc.WithSysFSMount(outputs, OutputsPath)
	}
	return cfg, closeAll, nil
}

// moduleConfig is what one run's guest sees.
func (e *Executor) moduleConfig(runCtx context.Context, spec executor.Spec, fsc wazero.FSConfig, stdout, stderr *executor.TailBuffer) wazero.ModuleConfig {
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: any number of instances at once
		WithArgs(append([]string{argv0}, spec.Cmd...)...).
		WithStdout(executor.Tee(stdout, "stdout", spec.Log)).
		WithStderr(executor.Tee(stderr, "stderr", spec.Log)).
		WithFSConfig(fsc).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		// Sleeps wake when the run is canceled, so that the closed module
		// notices at once instead of after the sleep.
		WithNanosleep(func(ns int64) {
			t := time.NewTimer(time.Duration(ns))
			defer t.Stop()
			select {
			case <-t.C:
			case <-runCtx.Done():
			}
		})
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cfg = cfg.WithEnv(k, spec.Env[k])
	}
	if spec.WorkDir != "" {
		if _, ok := spec.Env["PWD"]; !ok {
			cfg = cfg.WithEnv("PWD", spec.WorkDir)
		}
	}
	return cfg
}

// module returns the compiled module at spec.Image, compiling it at most once
// per content while it is kept, and counts a run of it until release.
func (e *Executor) module(ctx context.Context, spec executor.Spec) (*compiled, error) {
	p := spec.Image
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("wasm run %s: module %q not found: %w", spec.TaskID, p, executor.ErrImageNotFound)
		}
		return nil, fmt.Errorf("wasm run %s: module %q: %w", spec.TaskID, p, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("wasm run %s: module %q is a directory: %w", spec.TaskID, p, executor.ErrInvalidSpec)
	}

	// acquire counts a run of the module with content hash h.
	acquire := func(h string) *compiled {
		c := e.compiled[h]
		if c == nil {
			c = &compiled{hash: h}
			e.compiled[h] = c
		}
		c.refs++
		e.tick++
		c.used = e.tick
		return c
	}
	now := time.Now()
	e.mu.Lock()
	k, ok := e.files[p]
	var c *compiled
	if ok && k.size == fi.Size() && k.modTime.Equal(fi.ModTime()) {
		c = acquire(k.hash)
	}
	e.mu.Unlock()

	var code []byte
	if c == nil {
		code, err = os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("wasm run %s: read module %q: %w", spec.TaskID, p, err)
		}
		sum := sha256.Sum256(code)
		hash := hex.EncodeToString(sum[:])
		e.mu.Lock()
		e.files[p] = fileKey{size: fi.Size(), modTime: fi.ModTime(), hash: hash}
		c = acquire(hash)
		e.mu.Unlock()
	}
	compiledNow := false
	c.once.Do(func() {
		compiledNow = true
		if code == nil {
			// The path was hashed for an entry since evicted, or
			// another path with the same content registered c and then
			// failed before compiling; read this one.
			code, c.err = os.ReadFile(p)
			if c.err != nil {
				return
			}
		}
		start := time.Now()
		e.compile(ctx, c, code)
		e.log.Debug("compiled module", "module", p, "hash", c.hash, "took", time.Since(start), "err", c.err)
	})
	e.mu.Lock()
	closed := e.closed
	if compiledNow && c.err == nil {
		c.ready = true
	}
	touch := c.err == nil && !closed && e.touch(c, now)
	e.mu.Unlock()
	if closed {
		e.release(c)
		if compiledNow {
			closeRuntime(c.rt, c.cache)
		}
		return nil, fmt.Errorf("%w: wasm executor closed", executor.ErrUnavailable)
	}
	if c.err != nil {
		// Do not keep a failure around: the next run may bring a fixed file
		// or a live context.
		e.mu.Lock()
		c.refs--
		e.forget(c)
		e.mu.Unlock()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wasm run %s: compile %q: %w", spec.TaskID, p, ctx.Err())
		}
		return nil, fmt.Errorf("wasm run %s: module %q does not compile: %v: %w", spec.TaskID, p, c.err, executor.ErrInvalidSpec)
	}
	if touch {
		e.setMtime(c.hash, now)
	}
	if compiledNow && e.cfg.cacheDir != "" {
		// New code may be on disk.
		if err := e.trimDisk(); err != nil {
			e.log.Warn("trim compilation cache", "err", err)
		}
	}
	return c, nil
}

// release ends a run's use of c, closing compiled modules beyond the
// in-memory bound and trimming the cache directory if an earlier trim had
// to leave it over budget.
func (e *Executor) release(c *compiled) {
	e.mu.Lock()
	c.refs--
	var evicted []*compiled
	if !e.closed {
		evicted = e.trimMemory()
	}
	retrim := e.diskOver && c.refs == 0 && !e.closed
	e.mu.Unlock()
	e.closeAll(evicted)
	if retrim {
		if err := e.trimDisk(); err != nil {
			e.log.Warn("trim compilation cache", "err", err)
		}
	}
}

// validate rejects specs this executor cannot honour.
func (e *Executor) validate(spec executor.Spec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("wasm run %s: %s: %w", spec.TaskID, fmt.Sprintf(format, args...), executor.ErrInvalidSpec)
	}
	l := spec.Limits
	switch {
	case spec.Image == "":
		return bad("no module path")
	case l.CPUs < 0 || l.MemoryBytes < 0 || l.PIDs < 0 || l.GPUs < 0 || l.OutputCap < 0:
		return bad("negative limit in %+v", l)
	case l.GPUs > 0:
		return bad("wasm tasks cannot use GPUs")
	case l.MemoryBytes > e.cfg.maxMem:
		return bad("memory limit %d above this executor's maximum %d", l.MemoryBytes, e.cfg.maxMem)
	case spec.Timeout < 0:
		return bad("negative timeout %v", spec.Timeout)
	case spec.WorkDir != "" && !path.IsAbs(spec.WorkDir):
		return bad("workdir %q is not absolute", spec.WorkDir)
	}
	for _, m := range spec.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			return bad("mount %q -> %q: paths must be absolute", m.Source, m.Target)
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return bad("mount source: %v", err)
		}
		if !fi.IsDir() {
			return bad("mount source %q is a file; wasm mounts directories only", m.Source)
		}
	}
	if spec.OutputsDir != "" {
		// Missing is fine: it is made on the task's first use of /outputs.
		if !filepath.IsAbs(spec.OutputsDir) {
			return bad("outputs dir %q: the path must be absolute", spec.OutputsDir)
		}
		if fi, err := os.Stat(spec.OutputsDir); (err != nil && !errors.Is(err, fs.ErrNotExist)) || (err == nil && !fi.IsDir()) {
			return bad("outputs dir %q is not a directory", spec.OutputsDir)
		}
	}
	return nil
}

// BoundsDisk reports true: every byte a guest writes to its writable mounts
// counts against the run's disk quota (WithDiskQuota), so callers need no
// quota filesystem of their own.
func (e *Executor) BoundsDisk() bool { return true }
