package wasm

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
)

// DefaultCacheBytes is the default bound of the compiled code kept on disk
// under WithCacheDir (2 GiB).
const DefaultCacheBytes = 2 << 30

// DefaultMaxCompiled is the default number of compiled modules kept in
// memory beyond those runs are using.
const DefaultMaxCompiled = 16

// touchEvery is how stale an entry's recorded use on disk (its directory's
// modification time) may get before a run refreshes it.
const touchEvery = time.Minute

// compiled is one module compiled once, however many runs ask for it, in a
// wazero runtime of its own. The runtime's compilation cache, when the
// executor has a cache directory, is the entry's own directory, so that
// every byte wazero writes for the module is known to belong to it and can
// be removed with it.
type compiled struct {
	hash string
	once sync.Once
	rt   wazero.Runtime
	// cache is rt's compilation cache; nil without a cache directory.
	cache wazero.CompilationCache
	mod   wazero.CompiledModule
	err   error

	// Guarded by Executor.mu.
	ready   bool      // compiled without error: rt and mod are set
	refs    int       // runs using it, or compiling it
	used    uint64    // Executor.tick at its last use
	touched time.Time // when its directory's mtime was last set
}

// entryDir is where the compiled code of the module with content hash h is
// cached: root/h, holding wazero's own layout (a directory per wazero
// version and platform, one file per compiled module).
func entryDir(root, h string) string { return filepath.Join(root, h) }

// isEntryName reports whether name is a content hash, the name of an entry
// directory.
func isEntryName(name string) bool {
	if len(name) != 64 || strings.ToLower(name) != name {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}

// newRuntime returns a runtime with WASI instantiated, whose compilation
// cache is dir (none when dir is "").
func (e *Executor) newRuntime(ctx context.Context, dir string) (wazero.Runtime, wazero.CompilationCache, error) {
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(uint32(e.cfg.maxMem / pageSize))
	var cache wazero.CompilationCache
	if dir != "" {
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("compilation cache %s: %w", dir, err)
		}
		cache = c
		rc = rc.WithCompilationCache(c)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if err := instantiateWASI(ctx, rt); err != nil {
		rt.Close(ctx)
		if cache != nil {
			cache.Close(ctx)
		}
		return nil, nil, err
	}
	return rt, cache, nil
}

// compile fills c from code: through the entry's directory when the
// executor has a cache directory, and, should that fail, once more
// without it (the directory may hold a damaged file, which wazero reports as
// a compile error instead of compiling again, or another process sharing
// the cache directory may have removed it while wazero wrote into it).
func (e *Executor) compile(ctx context.Context, c *compiled, code []byte) {
	var dir string
	if e.cfg.cacheDir != "" {
		dir = entryDir(e.cfg.cacheDir, c.hash)
	}
	c.rt, c.cache, c.mod, c.err = e.compileIn(ctx, dir, code)
	if c.err == nil || dir == "" || ctx.Err() != nil {
		return
	}
	e.log.Debug("compile through the cache failed; compiling without it", "dir", dir, "err", c.err)
	if err := os.RemoveAll(dir); err != nil {
		e.log.Warn("remove compilation cache entry", "dir", dir, "err", err)
	}
	c.rt, c.cache, c.mod, c.err = e.compileIn(ctx, "", code)
}

// compileIn compiles code in a new runtime whose compilation cache is dir
// ("" for none); on failure it closes what it made.
func (e *Executor) compileIn(ctx context.Context, dir string, code []byte) (wazero.Runtime, wazero.CompilationCache, wazero.CompiledModule, error) {
	rt, cache, err := e.newRuntime(ctx, dir)
	if err != nil {
		return nil, nil, nil, err
	}
	mod, err := rt.CompileModule(ctx, code)
	if err != nil {
		closeRuntime(rt, cache)
		return nil, nil, nil, err
	}
	return rt, cache, mod, nil
}

// closeRuntime releases a runtime, its compiled module and its
// compilation cache (the files stay).
func closeRuntime(rt wazero.Runtime, cache wazero.CompilationCache) error {
	ctx := context.Background()
	var errs []error
	if rt != nil {
		errs = append(errs, rt.Close(ctx))
	}
	if cache != nil {
		errs = append(errs, cache.Close(ctx))
	}
	return errors.Join(errs...)
}

// touch records a use of c's directory on disk, so that its place in the
// least-recently-used order outlives the process. Called with e.mu held.
func (e *Executor) touch(c *compiled, now time.Time) bool {
	if e.cfg.cacheDir == "" || now.Sub(c.touched) < touchEvery {
		return false
	}
	c.touched = now
	return true
}

// setMtime sets the modification time of h's entry directory to now; a
// missing directory is no error (it was evicted, or never written).
func (e *Executor) setMtime(h string, now time.Time) {
	err := os.Chtimes(entryDir(e.cfg.cacheDir, h), now, now)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.log.Debug("touch compilation cache entry", "hash", h, "err", err)
	}
}

// diskEntry is one entry directory found under the cache directory.
type diskEntry struct {
	hash  string
	size  int64
	mtime time.Time
}

// trimDisk removes the least recently used entry directories, none that a
// run of this executor is using or compiling, until the cache directory
// holds at most cfg.cacheBytes. It reads the directory afresh each time,
// so that it counts what other processes sharing it wrote too. An entry
// larger than the whole budget is removed even while runs use it, once it
// is compiled: its code is in memory, and wazero reads and writes an
// entry's files only while compiling. It also removes the single shared directory (wazero-VERSION-ARCH-OS) in which
// earlier versions kept the code of every module.
func (e *Executor) trimDisk() error {
	root := e.cfg.cacheDir
	if root == "" {
		return nil
	}
	e.diskMu.Lock()
	defer e.diskMu.Unlock()
	list, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("wasm compilation cache %s: %w", root, err)
	}
	var entries []diskEntry
	var total int64
	for _, de := range list {
		name := de.Name()
		switch {
		case de.IsDir() && isEntryName(name):
			info, err := de.Info()
			if err != nil {
				continue // removed meanwhile
			}
			size := dirSize(filepath.Join(root, name))
			entries = append(entries, diskEntry{hash: name, size: size, mtime: info.ModTime()})
			total += size
		case de.IsDir() && strings.HasPrefix(name, "wazero-"):
			e.log.Info("removing the unbounded compilation cache of an earlier version", "dir", filepath.Join(root, name))
			if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
				e.log.Warn("remove old compilation cache", "dir", filepath.Join(root, name), "err", err)
			}
		}
	}
	budget := e.cfg.cacheBytes
	e.mu.Lock()
	inUse := map[string]bool{}     // a run uses it
	compiling := map[string]bool{} // wazero may be writing into it
	for h, c := range e.compiled {
		if c.refs > 0 {
			inUse[h] = true
			compiling[h] = !c.ready
		}
	}
	e.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].mtime.Before(entries[j].mtime) })
	remove := func(d diskEntry, why string) {
		if err := os.RemoveAll(entryDir(root, d.hash)); err != nil {
			e.log.Warn("remove compilation cache entry", "hash", d.hash, "err", err)
			return
		}
		total -= d.size
		e.log.Debug("removed compilation cache entry", "hash", d.hash, "bytes", d.size, "why", why)
	}
	for _, d := range entries {
		if d.size > budget && !compiling[d.hash] {
			remove(d, "larger than the budget")
		}
	}
	for _, d := range entries {
		if total <= budget {
			break
		}
		if d.size > budget || inUse[d.hash] {
			continue
		}
		remove(d, "least recently used")
	}
	e.mu.Lock()
	e.diskOver = total > budget
	e.mu.Unlock()
	return nil
}

// dirSize is the size of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// trimMemory closes the least recently used compiled modules no run uses
// until at most cfg.maxCompiled are left. Called with e.mu held; it returns
// what the caller must close after unlocking.
func (e *Executor) trimMemory() []*compiled {
	if len(e.compiled) <= e.cfg.maxCompiled {
		return nil
	}
	idle := make([]*compiled, 0, len(e.compiled))
	for _, c := range e.compiled {
		if c.refs == 0 {
			idle = append(idle, c)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].used < idle[j].used })
	var out []*compiled
	for _, c := range idle {
		if len(e.compiled) <= e.cfg.maxCompiled {
			break
		}
		e.forget(c)
		out = append(out, c)
	}
	return out
}

// forget removes c from the executor's maps. Called with e.mu held.
func (e *Executor) forget(c *compiled) {
	if e.compiled[c.hash] == c {
		delete(e.compiled, c.hash)
	}
	for p, k := range e.files {
		if k.hash == c.hash {
			delete(e.files, p)
		}
	}
}

// closeAll closes the runtimes of cs, which no run uses.
func (e *Executor) closeAll(cs []*compiled) {
	for _, c := range cs {
		if err := closeRuntime(c.rt, c.cache); err != nil {
			e.log.Debug("close compiled module", "hash", c.hash, "err", err)
		}
	}
}
