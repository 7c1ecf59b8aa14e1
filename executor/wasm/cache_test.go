package wasm_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
)

// uleb appends v in unsigned LEB128.
func uleb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// sleb appends v in signed LEB128.
func sleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// section appends a section with its id and length.
func section(b []byte, id byte, body []byte) []byte {
	b = append(b, id)
	b = uleb(b, uint64(len(body)))
	return append(b, body...)
}

// distinctModule is a WASI command with an empty _start and funcs more
// functions, each pushing and dropping a constant derived from seed: every
// seed is a different module (a different content hash, so a different
// entry in the compilation cache), and more functions mean more compiled
// code.
func distinctModule(seed, funcs int) []byte {
	n := funcs + 1
	b := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	b = section(b, 1, []byte{0x01, 0x60, 0x00, 0x00}) // () -> ()
	fn := uleb(nil, uint64(n))
	for range n {
		fn = append(fn, 0x00)
	}
	b = section(b, 3, fn)
	b = section(b, 5, []byte{0x01, 0x00, 0x01}) // memory: min 1 page
	b = section(b, 7, []byte{0x02,
		0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00,
		0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00})
	code := uleb(nil, uint64(n))
	code = append(code, 0x02, 0x00, 0x0b) // _start: empty
	for i := range funcs {
		body := []byte{0x00, 0x41} // no locals; i32.const
		body = sleb(body, int64(seed)*100_003+int64(i))
		body = append(body, 0x1a, 0x0b) // drop; end
		code = uleb(code, uint64(len(body)))
		code = append(code, body...)
	}
	return section(b, 10, code)
}

// writeModule writes distinctModule(seed, funcs) under dir and returns its
// path and content hash.
func writeModule(t *testing.T, dir string, seed, funcs int) (string, string) {
	t.Helper()
	m := distinctModule(seed, funcs)
	sum := sha256.Sum256(m)
	p := filepath.Join(dir, hex.EncodeToString(sum[:4])+".wasm")
	if err := os.WriteFile(p, m, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(sum[:])
}

// duBytes is the size of the files under dir.
func duBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// entrySize runs distinctModule(seed, funcs) once with a cold cache of its
// own and returns the bytes wazero wrote for it.
func entrySize(t *testing.T, funcs int) int64 {
	t.Helper()
	cache := t.TempDir()
	e, _ := newExecutor(t, wasm.WithCacheDir(cache))
	p, _ := writeModule(t, t.TempDir(), -1, funcs)
	mustRun(t, e, executor.Spec{Image: p})
	n := duBytes(t, cache)
	if n == 0 {
		t.Fatal("wazero wrote nothing to the cache directory")
	}
	return n
}

// TestCompilationCacheBounded runs more distinct modules than the cache
// budget holds, as a hostile requestor would: the directory never holds more
// than the budget, the most recently used modules stay, and every run
// still succeeds.
func TestCompilationCacheBounded(t *testing.T) {
	const funcs, keep, runs = 200, 3, 12
	size := entrySize(t, funcs)
	budget := keep*size + size/2
	cache, mods := t.TempDir(), t.TempDir()
	// Two modules in memory: the first is compiled again at the end.
	e, _ := newExecutor(t, wasm.WithCacheDir(cache), wasm.WithCacheBytes(budget), wasm.WithMaxCompiled(2))
	var hashes []string
	var unbounded int64
	for i := range runs {
		p, h := writeModule(t, mods, i, funcs)
		hashes = append(hashes, h)
		mustRun(t, e, executor.Spec{Image: p})
		unbounded += size
		if n := duBytes(t, cache); n > budget {
			t.Fatalf("after %d modules the cache holds %d bytes, budget %d", i+1, n, budget)
		}
	}
	for i, h := range hashes {
		if want := i >= runs-keep; exists(filepath.Join(cache, h)) != want {
			t.Errorf("module %d of %d: entry kept %v, want %v", i+1, runs, !want, want)
		}
	}
	t.Logf("%d distinct modules of %d bytes compiled each: %d bytes on disk with a budget of %d, %d without one",
		runs, size, duBytes(t, cache), budget, unbounded)

	// A module whose entry was evicted compiles again and runs.
	p, h := writeModule(t, mods, 0, funcs)
	mustRun(t, e, executor.Spec{Image: p})
	if !exists(filepath.Join(cache, h)) {
		t.Error("a module run again is not cached again")
	}
	if n := duBytes(t, cache); n > budget {
		t.Errorf("cache holds %d bytes, budget %d", n, budget)
	}
}

// TestCompilationCacheKeepsModuleInUse fills the cache with other modules
// while a long run uses one: the running module's entry is not evicted and
// the run finishes with its output; once it has ended its entry may go.
func TestCompilationCacheKeepsModuleInUse(t *testing.T) {
	const funcs = 200
	// The Go test module, warm in the shared cache: copy its entry so that
	// this test does not compile it again.
	warm, mod := newExecutor(t)
	mustRun(t, warm, executor.Spec{Image: mod, Cmd: []string{"exit", "0"}})
	code, err := os.ReadFile(mod)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(code)
	hello := hex.EncodeToString(sum[:])
	cache := t.TempDir()
	if err := os.CopyFS(filepath.Join(cache, hello), os.DirFS(filepath.Join(sharedCache(), hello))); err != nil {
		t.Fatal(err)
	}
	helloSize := duBytes(t, cache)
	small := entrySize(t, funcs)
	budget := helloSize + 2*small + small/2

	// Mark the module's entry as the oldest there is.
	entry := filepath.Join(cache, hello)
	old := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(entry, old, old); err != nil {
		t.Fatal(err)
	}

	e, _ := newExecutor(t, wasm.WithCacheDir(cache), wasm.WithCacheBytes(budget))
	type result struct {
		res *executor.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := e.Run(t.Context(), executor.Spec{Image: mod, Cmd: []string{"tick", "3", "400ms"}})
		done <- result{res, err}
	}()
	// The run has its module once it records the use on the entry.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if fi, err := os.Stat(entry); err == nil && fi.ModTime().After(old.Add(time.Hour)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never took its module")
		}
	}
	mods := t.TempDir()
	for i := range 8 {
		p, _ := writeModule(t, mods, 1000+i, funcs)
		mustRun(t, e, executor.Spec{Image: p})
		if n := duBytes(t, cache); n > budget {
			t.Errorf("cache holds %d bytes while the module runs, budget %d", n, budget)
		}
		if !exists(entry) {
			select {
			case r := <-done:
				t.Fatalf("the run ended (%v) before the others; make it longer", r.err)
			default:
			}
			t.Fatalf("the entry of a running module was evicted after %d other modules", i+1)
		}
	}
	r := <-done
	if r.err != nil || r.res.ExitCode != 0 || strings.Count(string(r.res.Stdout), "tick ") != 3 {
		t.Fatalf("the running module: %v, %+v", r.err, r.res)
	}
	// The run is over: its entry, the oldest, is what goes first.
	p, _ := writeModule(t, mods, 2000, funcs)
	mustRun(t, e, executor.Spec{Image: p})
	if n := duBytes(t, cache); n > budget {
		t.Errorf("cache holds %d bytes after the run ended, budget %d", n, budget)
	}
	if exists(entry) {
		t.Error("the oldest entry was kept once its run ended")
	}
	// And it still runs, from memory or compiled again.
	mustRun(t, e, executor.Spec{Image: mod, Cmd: []string{"exit", "0"}})
}

// TestCompilationCacheTrimmedOnRestart starts an executor on a directory
// over its budget: New trims it to the budget, keeping the most recently
// used entries, removes the shared directory earlier versions filled, and
// leaves files it does not own alone.
func TestCompilationCacheTrimmedOnRestart(t *testing.T) {
	const funcs, runs, keep = 200, 6, 2
	size := entrySize(t, funcs)
	cache, mods := t.TempDir(), t.TempDir()
	e, err := wasm.New(wasm.WithCacheDir(cache))
	if err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for i := range runs {
		p, h := writeModule(t, mods, 3000+i, funcs)
		hashes = append(hashes, h)
		if _, err := e.Run(t.Context(), executor.Spec{Image: p}); err != nil {
			t.Fatal(err)
		}
		// Distinct, ordered uses whatever the file system's clock grain.
		at := time.Now().Add(time.Duration(i-runs) * time.Minute)
		if err := os.Chtimes(filepath.Join(cache, h), at, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	oldLayout := filepath.Join(cache, "wazero-v1.0.0-amd64-linux")
	if err := os.MkdirAll(oldLayout, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(oldLayout, strings.Repeat("ab", 32)), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	notOurs := filepath.Join(cache, "README")
	if err := os.WriteFile(notOurs, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := duBytes(t, cache)

	budget := keep*size + size/2
	e, err = wasm.New(wasm.WithCacheDir(cache), wasm.WithCacheBytes(budget))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	after := duBytes(t, cache) - 1 // not counting README
	t.Logf("restart with a budget of %d bytes: %d bytes before, %d after", budget, before, after)
	if after > budget {
		t.Errorf("after New the cache holds %d bytes, budget %d", after, budget)
	}
	for i, h := range hashes {
		if want := i >= runs-keep; exists(filepath.Join(cache, h)) != want {
			t.Errorf("entry %d of %d: kept %v, want %v", i+1, runs, !want, want)
		}
	}
	if exists(oldLayout) {
		t.Error("the shared directory of earlier versions is still there")
	}
	if !exists(notOurs) {
		t.Error("a file the cache does not own was removed")
	}
}

// TestCompilationCacheDamagedEntry runs a module whose cached code was
// truncated (a full disk, a crash, another process): the module compiles
// again instead of failing as invalid.
func TestCompilationCacheDamagedEntry(t *testing.T) {
	cache, mods := t.TempDir(), t.TempDir()
	p, h := writeModule(t, mods, 4000, 50)
	e1, _ := newExecutor(t, wasm.WithCacheDir(cache))
	mustRun(t, e1, executor.Spec{Image: p})
	var damaged int
	err := filepath.WalkDir(filepath.Join(cache, h), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			damaged++
			return os.Truncate(path, 20)
		}
		return err
	})
	if err != nil || damaged == 0 {
		t.Fatalf("damaging %d files: %v", damaged, err)
	}
	e2, _ := newExecutor(t, wasm.WithCacheDir(cache))
	mustRun(t, e2, executor.Spec{Image: p})
}

// TestCompilationCacheOptions refuses nonsensical bounds.
func TestCompilationCacheOptions(t *testing.T) {
	for name, o := range map[string]wasm.Option{
		"zero bytes":     wasm.WithCacheBytes(0),
		"negative bytes": wasm.WithCacheBytes(-1),
		"zero compiled":  wasm.WithMaxCompiled(0),
	} {
		if _, err := wasm.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestCompileCost measures what the disk cache saves on the Go test module:
// a compile with an empty cache directory, one from a warm directory (a new
// process), and one without a cache directory at all.
func TestCompileCost(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the Go test module twice")
	}
	_, mod := newExecutor(t)
	spec := executor.Spec{Image: mod, Cmd: []string{"exit", "0"}}
	timed := func(opts ...wasm.Option) time.Duration {
		e, err := wasm.New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		start := time.Now()
		if _, err := e.Run(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	cache := t.TempDir()
	cold := timed(wasm.WithCacheDir(cache))
	warm := timed(wasm.WithCacheDir(cache))
	none := timed()
	t.Logf("Go test module (%s): first run with an empty cache directory %v (writes %d bytes), from a warm one %v, without one %v",
		sizeOf(mod), cold, duBytes(t, cache), warm, none)
	if warm*2 > none {
		t.Errorf("a warm cache directory (%v) saves little over none (%v)", warm, none)
	}
}
