package market

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/offload-project/offload/executor"
)

// The image cache. A provider keeps what requestors make it load by CID —
// Docker images loaded into the engine (recorded in ProviderConfig.Images)
// and WASM modules (files WorkDir/modules/CID.wasm) — so that the next task
// with the same image starts at once. Left alone, a requestor sending
// distinct images would fill the provider's disk for good; so the cache
// holds at most ImageCacheBytes (images and modules together) and
// maxCacheEntries entries. Before a new image or module is loaded, the
// least recently used entries that no task is preparing or running with
// are removed (the engine's image, the module file and the record) until
// the new one fits. One larger than the whole budget is refused
// (ErrImageTooLarge); one that does not fit because tasks use the rest
// fails retryably. Only what was loaded by CID is ever removed: an image
// the operator has under a name is never touched (the executor's
// RemoveImage leaves any image with a tag). Entries loaded by an earlier
// process are known from the records and the module directory, and are
// evicted like the others.

// DefaultImageCacheBytes is the budget of a provider's cache of images
// and modules loaded by CID when ProviderConfig.ImageCacheBytes is unset.
const DefaultImageCacheBytes = 20 << 30

// maxCacheEntries bounds the number of images and modules kept, whatever
// their size: a flood of tiny images would otherwise weigh on the engine
// and on the records long before it reached the byte budget.
const maxCacheEntries = 4096

// evictTimeout bounds the removal of one evicted image or module.
const evictTimeout = time.Minute

// ErrImageTooLarge marks an image or module larger than the provider's
// whole image cache; another provider may allow more.
var ErrImageTooLarge = errors.New("image larger than this provider's image cache")

// ErrImageCacheFull marks an image or module that does not fit because
// the images of the tasks running here fill the cache.
var ErrImageCacheFull = errors.New("image cache full of images in use")

// ImageRemover is implemented by executors that can remove an image they
// loaded (executor/docker). RemoveImage must leave an image that has a
// name of its own (the operator's) and must not fail for one already
// gone.
type ImageRemover interface {
	RemoveImage(ctx context.Context, ref string) error
}

// ImageSizer is implemented by executors that can tell the size of a
// local image; it sizes images an earlier process loaded without
// recording their size.
type ImageSizer interface {
	ImageSize(ctx context.Context, ref string) (int64, error)
}

// cacheKind tells images in the engine from module files.
type cacheKind string

const (
	kindImage  cacheKind = "image"
	kindModule cacheKind = "module"
)

// cacheEntry is one image or module in the cache.
type cacheEntry struct {
	kind cacheKind
	cid  string
	// ref is the engine's image ID or the module's path; "" while it is
	// being loaded.
	ref      string
	size     int64
	lastUsed time.Time
	// users counts the tasks preparing or running with it (a load in
	// progress is one); an entry with users is never evicted.
	users int
	// removed is made when the entry is chosen for eviction and closed
	// once it is gone; a task that wants it waits, then loads it anew.
	removed chan struct{}
}

func (e *cacheEntry) key() string { return cacheKey(e.kind, e.cid) }

func cacheKey(kind cacheKind, c string) string { return string(kind) + ":" + c }

// imageCache is the provider's accounting of what it loaded by CID. Its
// zero value is ready: the entries are read on first use.
type imageCache struct {
	mu      sync.Mutex
	loaded  bool
	entries map[string]*cacheEntry
	bytes   int64 // of entries not being evicted
}

// cacheBudget is the most bytes of images and modules kept.
func (p *Provider) cacheBudget() int64 {
	if p.cfg.ImageCacheBytes > 0 {
		return p.cfg.ImageCacheBytes
	}
	return DefaultImageCacheBytes
}

// moduleDir holds the WASM modules loaded by CID.
func (p *Provider) moduleDir() string { return filepath.Join(p.cfg.WorkDir, "modules") }

// findExec returns ex when it implements T, else the first executor of
// the provider (by name) that does: images are evicted with whichever
// executor reaches the engine, even when a module's task needs the room.
func findExec[T any](p *Provider, ex executor.Executor) (T, bool) {
	if t, ok := ex.(T); ok {
		return t, true
	}
	names := make([]string, 0, len(p.executors))
	for name := range p.executors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if t, ok := p.executors[name].(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// loadCacheLocked reads, once, what earlier processes left: the image
// records and the module files. Call it with c.mu held.
func (p *Provider) loadCacheLocked(ctx context.Context, ex executor.Executor) {
	c := &p.cache
	if c.loaded {
		return
	}
	c.loaded = true
	c.entries = map[string]*cacheEntry{}
	if p.cfg.Images != nil {
		recs, err := p.cfg.Images.List()
		if err != nil {
			p.log.Warn("list cached images", "err", err)
		}
		sizer, canSize := findExec[ImageSizer](p, ex)
		for _, r := range recs {
			size := r.Size
			if size <= 0 && canSize {
				// Recorded by a version that kept no size.
				n, err := sizer.ImageSize(ctx, r.Ref)
				if err != nil {
					p.log.Debug("a cached image is gone from the engine", "cid", r.CID, "image", r.Ref, "err", err)
					if derr := p.cfg.Images.Delete(r.CID); derr != nil {
						p.log.Warn("forget a cached image", "cid", r.CID, "err", derr)
					}
					continue
				}
				size = n
			}
			used := r.LastUsed
			if used.IsZero() {
				used = r.LoadedAt
			}
			e := &cacheEntry{kind: kindImage, cid: r.CID, ref: r.Ref, size: size, lastUsed: used}
			c.entries[e.key()] = e
			c.bytes += size
		}
	}
	files, err := os.ReadDir(p.moduleDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		p.log.Warn("list cached modules", "err", err)
	}
	for _, f := range files {
		cid, ok := strings.CutSuffix(f.Name(), ".wasm")
		if !ok || !f.Type().IsRegular() {
			continue
		}
		fi, err := f.Info()
		if err != nil {
			continue
		}
		// A module's last use is its file's modification time (touched on
		// every use), so it needs no record of its own.
		e := &cacheEntry{kind: kindModule, cid: cid, ref: filepath.Join(p.moduleDir(), f.Name()), size: fi.Size(), lastUsed: fi.ModTime()}
		c.entries[e.key()] = e
		c.bytes += e.size
	}
	if len(c.entries) > 0 {
		p.log.Info("image cache", "entries", len(c.entries), "bytes", c.bytes, "budget", p.cacheBudget())
	}
}

// cachePeek returns the ref of a loaded entry without using it (for bids).
func (p *Provider) cachePeek(ctx context.Context, ex executor.Executor, kind cacheKind, c string) (string, bool) {
	p.cache.mu.Lock()
	defer p.cache.mu.Unlock()
	p.loadCacheLocked(ctx, ex)
	e := p.cache.entries[cacheKey(kind, c)]
	if e == nil || e.ref == "" || e.removed != nil {
		return "", false
	}
	return e.ref, true
}

// cacheAcquire returns the loaded image or module of c and a release to
// call once the task that uses it has ended; ok is false when it is not
// here (it was never loaded, it is being evicted, or the engine or the
// disk lost it). Callers hold c's image lock.
func (p *Provider) cacheAcquire(ctx context.Context, ex executor.Executor, kind cacheKind, c string) (ref string, release func(), ok bool) {
	cache := &p.cache
	cache.mu.Lock()
	p.loadCacheLocked(ctx, ex)
	e := cache.entries[cacheKey(kind, c)]
	if e == nil || e.ref == "" {
		cache.mu.Unlock()
		return "", nil, false
	}
	if removed := e.removed; removed != nil {
		cache.mu.Unlock()
		// Loading it again before it is gone could see the new copy
		// removed: wait for the eviction.
		select {
		case <-removed:
		case <-ctx.Done():
		}
		return "", nil, false
	}
	e.users++
	now := time.Now().UTC()
	e.lastUsed = now
	ref = e.ref
	cache.mu.Unlock()
	release = p.cacheReleaser(e)

	switch kind {
	case kindImage:
		if ic, ok := ex.(ImageChecker); ok && !ic.HasImage(ctx, ref) {
			release()
			p.cacheForget(e)
			return "", nil, false
		}
		p.putImageRecord(e, now)
	case kindModule:
		if fi, err := os.Lstat(ref); err != nil || !fi.Mode().IsRegular() {
			release()
			p.cacheForget(e)
			return "", nil, false
		}
		_ = os.Chtimes(ref, now, now) // its last use, across restarts
	}
	return ref, release, true
}

// cacheReleaser returns the release of one use of e; it marks e's last
// use and is idempotent.
func (p *Provider) cacheReleaser(e *cacheEntry) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			p.cache.mu.Lock()
			e.users--
			e.lastUsed = time.Now().UTC()
			p.cache.mu.Unlock()
		})
	}
}

// cacheForget drops e (found missing) from the cache and its record.
func (p *Provider) cacheForget(e *cacheEntry) {
	cache := &p.cache
	cache.mu.Lock()
	if cache.entries[e.key()] == e && e.removed == nil {
		delete(cache.entries, e.key())
		cache.bytes -= e.size
	}
	cache.mu.Unlock()
	if e.kind == kindImage && p.cfg.Images != nil {
		if err := p.cfg.Images.Delete(e.cid); err != nil {
			p.log.Warn("forget a cached image", "cid", e.cid, "err", err)
		}
	}
}

// putImageRecord persists e's record, with its size and last use.
func (p *Provider) putImageRecord(e *cacheEntry, loadedAt time.Time) {
	if p.cfg.Images == nil {
		return
	}
	rec := &CachedImage{CID: e.cid, Ref: e.ref, LoadedAt: loadedAt, Size: e.size, LastUsed: time.Now().UTC()}
	if old, err := p.cfg.Images.Get(e.cid); err == nil && !old.LoadedAt.IsZero() {
		rec.LoadedAt = old.LoadedAt
	}
	if err := p.cfg.Images.Put(e.cid, rec); err != nil {
		p.log.Warn("cache image", "cid", e.cid, "err", err)
	}
}

// cacheAdmit makes room for a new image or module of size bytes and
// holds it in the cache (with one user, and no ref yet): it evicts the
// least recently used entries no task uses until the new one fits the
// budget. The caller loads it, then calls cacheLoaded, or cacheAbandon if
// the load failed. Callers hold c's image lock.
func (p *Provider) cacheAdmit(ctx context.Context, ex executor.Executor, kind cacheKind, c string, size int64) (*cacheEntry, error) {
	budget := p.cacheBudget()
	if size > budget {
		return nil, fmt.Errorf("%s %s is %d bytes, more than this provider's whole image cache of %d bytes: %w", kind, c, size, budget, ErrImageTooLarge)
	}
	cache := &p.cache
	cache.mu.Lock()
	p.loadCacheLocked(ctx, ex)
	if old := cache.entries[cacheKey(kind, c)]; old != nil && old.removed == nil {
		// Found missing by a task that then lost its lock's wait; replace it.
		delete(cache.entries, old.key())
		cache.bytes -= old.size
	}
	var idle []*cacheEntry
	for _, e := range cache.entries {
		if e.users == 0 && e.removed == nil && e.ref != "" {
			idle = append(idle, e)
		}
	}
	slices.SortFunc(idle, func(a, b *cacheEntry) int { return a.lastUsed.Compare(b.lastUsed) })
	bytes, count := cache.bytes+size, len(cache.entries)+1
	var victims []*cacheEntry
	for _, e := range idle {
		if bytes <= budget && count <= maxCacheEntries {
			break
		}
		victims = append(victims, e)
		bytes -= e.size
		count--
	}
	if bytes > budget || count > maxCacheEntries {
		held := cache.bytes
		cache.mu.Unlock()
		return nil, fmt.Errorf("%s %s (%d bytes) does not fit this provider's image cache of %d bytes, %d of them held by the images of running tasks: %w",
			kind, c, size, budget, held, ErrImageCacheFull)
	}
	for _, v := range victims {
		v.removed = make(chan struct{})
		cache.bytes -= v.size
	}
	e := &cacheEntry{kind: kind, cid: c, size: size, users: 1, lastUsed: time.Now().UTC()}
	cache.entries[e.key()] = e
	cache.bytes += size
	cache.mu.Unlock()

	var failed error
	for _, v := range victims {
		if err := p.evict(ctx, ex, v); err != nil {
			failed = errors.Join(failed, err)
		}
	}
	if failed != nil {
		cache.mu.Lock()
		over := cache.bytes > budget
		cache.mu.Unlock()
		if over {
			p.cacheAbandon(e)
			return nil, fmt.Errorf("make room in the image cache for %s %s: %w", kind, c, failed)
		}
	}
	return e, nil
}

// evict removes v (the engine's image or the module file, and its record)
// and drops it from the cache. An image another entry also loaded (two
// tarballs of one image) is only forgotten. When the removal fails, v
// stays, counted, and a later admission tries it again.
func (p *Provider) evict(ctx context.Context, ex executor.Executor, v *cacheEntry) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), evictTimeout)
	defer cancel()
	cache := &p.cache
	cache.mu.Lock()
	shared := false
	for _, o := range cache.entries {
		if o != v && o.kind == v.kind && o.ref == v.ref && o.removed == nil {
			shared = true
		}
	}
	cache.mu.Unlock()
	var err error
	switch {
	case shared:
	case v.kind == kindImage:
		if rm, ok := findExec[ImageRemover](p, ex); ok {
			err = rm.RemoveImage(ctx, v.ref)
		} else {
			err = errors.New("no executor here can remove images")
		}
	case v.kind == kindModule:
		if rerr := os.Remove(v.ref); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = rerr
		}
	}
	cache.mu.Lock()
	done := v.removed
	defer func() {
		close(done) // whoever waited for v goes on
		cache.mu.Unlock()
	}()
	if err != nil {
		v.removed = nil // v stays, counted again
		cache.bytes += v.size
		p.log.Warn("evict from the image cache", "kind", v.kind, "cid", v.cid, "ref", v.ref, "err", err)
		return fmt.Errorf("evict %s %s: %w", v.kind, v.cid, err)
	}
	delete(cache.entries, v.key())
	if v.kind == kindImage && p.cfg.Images != nil {
		if derr := p.cfg.Images.Delete(v.cid); derr != nil {
			p.log.Warn("forget an evicted image", "cid", v.cid, "err", derr)
		}
	}
	p.log.Info("evicted from the image cache", "kind", v.kind, "cid", v.cid, "bytes", v.size, "last_used", v.lastUsed)
	return nil
}

// cacheLoaded marks e loaded as ref and records it; the returned release
// ends the loading task's use.
func (p *Provider) cacheLoaded(e *cacheEntry, ref string) (release func()) {
	p.cache.mu.Lock()
	e.ref = ref
	p.cache.mu.Unlock()
	if e.kind == kindImage {
		p.putImageRecord(e, time.Now().UTC())
	}
	return p.cacheReleaser(e)
}

// cacheAbandon drops e, admitted for a load that failed.
func (p *Provider) cacheAbandon(e *cacheEntry) {
	p.cache.mu.Lock()
	if p.cache.entries[e.key()] == e {
		delete(p.cache.entries, e.key())
		p.cache.bytes -= e.size
	}
	p.cache.mu.Unlock()
}
