package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	expsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// DefaultDiskQuota is the default of WithDiskQuota: 1 GiB per run.
const DefaultDiskQuota = 1 << 30

// ErrDiskQuota is wrapped by the error of a run that had writes refused at
// its disk quota (WithDiskQuota) and then exited with a non-zero code or a
// trap; the Result comes with it. A run that hit the quota and still exited
// 0 returns no error. Either way its Stderr ends with a line
// "offload: disk quota of N bytes reached (ENOSPC)".
var ErrDiskQuota = errors.New("disk quota reached")

// errQuota is what the file system returns when the quota refuses a write.
// wazero's Errno has no ENOSPC, so it goes out as EIO, and the WASI wrapper
// (see instantiateWASI) turns it into ENOSPC on its way to the guest.
const errQuota = expsys.EIO

// diskQuota counts the bytes one run adds to its writable mounts: file
// growth by write, pwrite and truncate, and entryBytes per name created.
// Shrinking or removing files gives bytes back, never below zero, so that
// deleting what was there before the run buys no extra room.
type diskQuota struct {
	limit    int64
	refusals atomic.Uint64 // requests refused so far

	mu   sync.Mutex
	used int64
	open map[inode]*openInode // regular files this run holds open
}

// inode identifies a host file.
type inode struct{ dev, ino uint64 }

func inodeOf(st sys.Stat_t) inode { return inode{st.Dev, st.Ino} }

// openInode counts the run's descriptors of one file. orphan is set when its
// last name was removed while open: its bytes come back at the last close.
type openInode struct {
	refs   int
	orphan bool
}

func newDiskQuota(limit int64) *diskQuota {
	return &diskQuota{limit: limit}
}

// reserve takes n bytes from the quota, or reports false (and counts a
// refusal) when they do not fit. n <= 0 always fits.
func (q *diskQuota) reserve(n int64) bool {
	if n <= 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if n > q.limit-q.used {
		q.refusals.Add(1)
		return false
	}
	q.used += n
	return true
}

// release gives n bytes back.
func (q *diskQuota) release(n int64) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.used = max(q.used-n, 0)
}

// usage returns the bytes currently counted.
func (q *diskQuota) usage() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.used
}

// hit reports whether any request was refused.
func (q *diskQuota) hit() bool { return q.refusals.Load() > 0 }

// opened records a descriptor of the file id.
func (q *diskQuota) opened(id inode) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.open == nil {
		q.open = map[inode]*openInode{}
	}
	o := q.open[id]
	if o == nil {
		o = &openInode{}
		q.open[id] = o
	}
	o.refs++
}

// closed records that a descriptor of id closed; it reports true when that
// was the last one of a file whose last name is gone, whose bytes the
// caller then gives back.
func (q *diskQuota) closed(id inode) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	o := q.open[id]
	if o == nil {
		return false
	}
	o.refs--
	if o.refs > 0 {
		return false
	}
	delete(q.open, id)
	return o.orphan
}

// orphan marks id as having lost its last name. It reports false when the
// run does not hold it open, in which case the caller gives its bytes back
// now.
func (q *diskQuota) orphan(id inode) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	o := q.open[id]
	if o == nil {
		return false
	}
	o.orphan = true
	return true
}

// quotaKey carries a run's *diskQuota in the context the guest runs with, so
// that the WASI wrappers, shared by all runs, find the run's quota.
type quotaKey struct{}

func withQuota(ctx context.Context, q *diskQuota) context.Context {
	return context.WithValue(ctx, quotaKey{}, q)
}

// WASI preview 1 errno values (they are also syscall.Errno on wasip1).
const (
	wasiEIO    = 29
	wasiENOSPC = 51
	wasiENOSYS = 52
	wasiEXDEV  = 75
)

// errnoRewrites lists the WASI functions whose errno the executor corrects.
// quota: EIO caused by a quota refusal during the call becomes ENOSPC.
// crossMount: ENOSYS, which wazero returns for a rename or link between two
// mounts (and only then: the mounts' Rename and Link never return it),
// becomes EXDEV, which is what programs expect (and Go's os.Rename reports).
var errnoRewrites = map[string]struct{ quota, crossMount bool }{
	"fd_write":              {quota: true},
	"fd_pwrite":             {quota: true},
	"fd_filestat_set_size":  {quota: true},
	"fd_allocate":           {quota: true},
	"path_open":             {quota: true},
	"path_create_directory": {quota: true},
	"path_symlink":          {quota: true},
	"path_link":             {quota: true, crossMount: true},
	"path_rename":           {crossMount: true},
}

// instantiateWASI instantiates wazero's WASI preview 1 host module in rt,
// with the functions of errnoRewrites wrapped to correct their errno.
// wazero's sys.Errno cannot express ENOSPC or EXDEV, hence the wrappers;
// each calls wazero's own implementation and changes only the result.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	// Compile the stock module once to borrow its Go functions.
	stock := rt.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(stock)
	compiled, err := stock.Compile(ctx)
	if err != nil {
		return fmt.Errorf("compile WASI: %w", err)
	}
	defer compiled.Close(ctx)
	defs := compiled.ExportedFunctions()

	b := rt.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	for name, rw := range errnoRewrites {
		def, ok := defs[name]
		if !ok {
			return fmt.Errorf("WASI has no function %s", name)
		}
		fn, ok := def.GoFunction().(api.GoModuleFunction)
		if !ok {
			return fmt.Errorf("WASI function %s is not a Go module function (%T)", name, def.GoFunction())
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(rewriteErrno(fn, rw.quota, rw.crossMount), def.ParamTypes(), def.ResultTypes()).
			WithParameterNames(def.ParamNames()...).
			WithResultNames(def.ResultNames()...).
			Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate WASI: %w", err)
	}
	return nil
}

// rewriteErrno wraps one WASI function (whose only result, stack[0], is its
// errno) as errnoRewrites describes.
func rewriteErrno(fn api.GoModuleFunction, quota, crossMount bool) api.GoModuleFunction {
	return api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		q, _ := ctx.Value(quotaKey{}).(*diskQuota)
		var before uint64
		if q != nil {
			before = q.refusals.Load()
		}
		fn.Call(ctx, mod, stack)
		switch {
		case q == nil:
		case quota && stack[0] == wasiEIO && q.refusals.Load() != before:
			stack[0] = wasiENOSPC
		case crossMount && stack[0] == wasiENOSYS:
			stack[0] = wasiEXDEV
		}
	})
}
