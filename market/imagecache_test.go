//go:build linux

package market

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market/wire"
)

// memImages is an in-memory ImageCache that copies records through JSON,
// as Badger does.
type memImages struct {
	mu   sync.Mutex
	recs map[string][]byte
}

func newMemImages() *memImages { return &memImages{recs: map[string][]byte{}} }

func (m *memImages) Get(k string) (*CachedImage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.recs[k]
	if !ok {
		return nil, fmt.Errorf("%s not found", k)
	}
	v := new(CachedImage)
	return v, json.Unmarshal(b, v)
}

func (m *memImages) Put(k string, v *CachedImage) error {
	b, err := json.Marshal(v)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[k] = b
	return err
}

func (m *memImages) List() ([]*CachedImage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*CachedImage
	for _, b := range m.recs {
		v := new(CachedImage)
		if err := json.Unmarshal(b, v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (m *memImages) Delete(k string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.recs, k)
	return nil
}

func (m *memImages) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

// fakeEngine is a Docker engine in memory: LoadImage keeps the tarball's
// bytes as an image named by their content, RemoveImage drops it (but
// never a tagged one), and it remembers the most bytes it ever held.
type fakeEngine struct {
	mu      sync.Mutex
	images  map[string]int64 // ref -> bytes
	tagged  map[string]bool  // the operator's images
	max     int64
	removed []string
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{images: map[string]int64{}, tagged: map[string]bool{}}
}

func (f *fakeEngine) Name() string                    { return "docker" }
func (f *fakeEngine) Available(context.Context) error { return nil }
func (f *fakeEngine) Run(context.Context, executor.Spec) (*executor.Result, error) {
	return &executor.Result{}, nil
}

func (f *fakeEngine) LoadImage(_ context.Context, tarPath string) (string, error) {
	b, err := os.ReadFile(tarPath)
	if err != nil {
		return "", err
	}
	ref := "sha256:" + contentCID(b)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[ref] = int64(len(b))
	if n := f.bytesLocked(); n > f.max {
		f.max = n
	}
	return ref, nil
}

func (f *fakeEngine) RemoveImage(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tagged[ref] {
		return nil
	}
	delete(f.images, ref)
	f.removed = append(f.removed, ref)
	return nil
}

func (f *fakeEngine) ImageSize(_ context.Context, ref string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.images[ref]
	if !ok {
		return 0, errors.New("no such image")
	}
	return n, nil
}

func (f *fakeEngine) HasImage(_ context.Context, ref string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.images[ref]
	return ok
}

func (f *fakeEngine) bytesLocked() int64 {
	var n int64
	for _, b := range f.images {
		n += b
	}
	return n
}

func (f *fakeEngine) bytes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bytesLocked()
}

// fakeWASM stands for the wasm executor (it loads nothing itself).
type fakeWASM struct{}

func (*fakeWASM) Name() string                    { return "wasm" }
func (*fakeWASM) Available(context.Context) error { return nil }
func (*fakeWASM) Run(context.Context, executor.Spec) (*executor.Result, error) {
	return &executor.Result{}, nil
}

// contentCID is the CID of data, as a requestor would add it.
func contentCID(data []byte) string {
	sum, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(cid.Raw, sum).String()
}

// blobContent is a content store that serves blobs by CID.
type blobContent struct {
	fakeContent
	mu      sync.Mutex
	blobs   map[string][]byte
	fetched map[string]bool
}

func (b *blobContent) GetTo(_ context.Context, c string, dest string, _ peer.ID, maxBytes int64) error {
	b.mu.Lock()
	data, ok := b.blobs[c]
	b.fetched[c] = true
	b.mu.Unlock()
	if !ok {
		return errors.New("no such content")
	}
	if maxBytes > 0 && int64(len(data)) > maxBytes {
		return fmt.Errorf("%w: %d bytes", ErrOverQuota, len(data))
	}
	return os.WriteFile(dest, data, 0o600)
}

// cacheFixture is a provider whose content store serves blobs by CID.
type cacheFixture struct {
	p      *Provider
	bc     *blobContent
	images *memImages
}

func newCacheFixture(t *testing.T, budget int64, exs ...executor.Executor) *cacheFixture {
	t.Helper()
	f := &cacheFixture{images: newMemImages(), bc: &blobContent{blobs: map[string][]byte{}, fetched: map[string]bool{}}}
	f.p = &Provider{
		cfg: ProviderConfig{Content: f.bc, Images: f.images, WorkDir: t.TempDir(), ImageCacheBytes: budget},
		log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	f.p.executors = map[string]executor.Executor{}
	for _, ex := range exs {
		f.p.executors[ex.Name()] = ex
	}
	return f
}

// blob makes a distinct image (or module) of n bytes and returns its CID.
func (f *cacheFixture) blob(n int, tag byte) string {
	f.bc.mu.Lock()
	defer f.bc.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = tag
	}
	copy(b, fmt.Sprint(len(f.bc.blobs)))
	c := contentCID(b)
	f.bc.blobs[c] = b
	return c
}

// resolve fetches c as a task's image would be, in a work directory of
// its own, and returns the release of the task's use.
func (f *cacheFixture) resolve(t *testing.T, ex executor.Executor, c string) (string, func(), error) {
	t.Helper()
	return f.p.resolveImage(t.Context(), ex, c, 0, t.TempDir(), "")
}

func (p *Provider) cacheUsage() (bytes int64, entries int) {
	p.cache.mu.Lock()
	defer p.cache.mu.Unlock()
	return p.cache.bytes, len(p.cache.entries)
}

func moduleBytes(t *testing.T, dir string) (n int64, names []string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
		names = append(names, e.Name())
	}
	return n, names
}

// A requestor sending many more distinct images than the cache holds
// leaves the engine at or under the budget, with the least recently used
// images removed and their records gone; a hit counts as a use.
func TestImageCacheEvictsLeastRecentlyUsed(t *testing.T) {
	const size, budget = 1000, 3500
	eng := newFakeEngine()
	f := newCacheFixture(t, budget, eng)
	var cids, refs []string
	for i := range 20 {
		c := f.blob(size, 'i')
		ref, release, err := f.resolve(t, eng, c)
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		release()
		cids, refs = append(cids, c), append(refs, ref)
		if i == 2 {
			// The first image is used again: the second is now the
			// least recently used.
			if r, release, err := f.resolve(t, eng, cids[0]); err != nil || r != refs[0] {
				t.Fatalf("hit: %s, %v", r, err)
			} else {
				release()
			}
		}
		if n := eng.bytes(); n > budget {
			t.Fatalf("after image %d the engine holds %d bytes, over the budget of %d", i, n, budget)
		}
	}
	if eng.max > budget {
		t.Errorf("the engine held %d bytes at most, over the budget of %d", eng.max, budget)
	}
	for i, ref := range refs {
		if want := i >= len(refs)-3; eng.HasImage(t.Context(), ref) != want {
			t.Errorf("image %d in the engine: %v, want %v", i, !want, want)
		}
	}
	if !slices.Contains(eng.removed, refs[1]) || slices.Index(eng.removed, refs[1]) > slices.Index(eng.removed, refs[0]) {
		t.Errorf("eviction order %v: the second image (least recently used) should go before the first (used again)", eng.removed[:3])
	}
	if n := f.images.len(); n != 3 {
		t.Errorf("%d image records kept, want 3", n)
	}
	if bytes, entries := f.p.cacheUsage(); bytes != 3*size || entries != 3 {
		t.Errorf("cache accounts %d bytes in %d entries, want %d in 3", bytes, entries, 3*size)
	}
}

// The same for WASM modules (no Docker): the module directory stays
// within the budget, the oldest modules removed, the newest still hits.
func TestImageCacheEvictsModules(t *testing.T) {
	const size, budget = 1000, 2500
	w := &fakeWASM{}
	f := newCacheFixture(t, budget, w)
	var paths []string
	for i := range 10 {
		c := f.blob(size, 'm')
		path, release, err := f.resolve(t, w, c)
		if err != nil {
			t.Fatalf("module %d: %v", i, err)
		}
		release()
		paths = append(paths, path)
		if n, names := moduleBytes(t, f.p.moduleDir()); n > budget {
			t.Fatalf("after module %d the module cache holds %d bytes (%v), over %d", i, n, names, budget)
		}
	}
	for i, p := range paths {
		_, err := os.Stat(p)
		if want := i >= len(paths)-2; (err == nil) != want {
			t.Errorf("module %d on disk: %v, want %v", i, err == nil, want)
		}
	}
	c := strings.TrimSuffix(filepath.Base(paths[9]), ".wasm")
	if has, _ := f.p.hasImage(t.Context(), w, wire.Requirements{Image: c}); !has {
		t.Error("a bid does not see the newest module as here")
	}
}

// Images and modules share one budget: a module evicts an image too.
func TestImageCacheOneBudgetForImagesAndModules(t *testing.T) {
	eng, w := newFakeEngine(), &fakeWASM{}
	f := newCacheFixture(t, 2000, eng, w)
	ref, release, err := f.resolve(t, eng, f.blob(1500, 'i'))
	if err != nil {
		t.Fatal(err)
	}
	release()
	if _, release, err = f.resolve(t, w, f.blob(1000, 'm')); err != nil {
		t.Fatal(err)
	}
	release()
	if eng.HasImage(t.Context(), ref) {
		t.Error("the image was kept although the module needed its room")
	}
}

// An image a task is preparing or running with is never evicted, even
// when it is the least recently used; when tasks hold the whole budget a
// new image fails (retryably) instead of going over it. Through prepare
// and cleanup, as a task's run uses them.
func TestImageCacheKeepsImagesInUse(t *testing.T) {
	const size, budget = 1000, 2500
	eng := newFakeEngine()
	f := newCacheFixture(t, budget, eng)
	first := f.blob(size, 'u')
	rec := &ExecRecord{Key: execKey("12D3KooWRequestor", "task-1", 1), TaskID: "task-1", Attempt: 1, Requestor: "12D3KooWRequestor",
		Spec: wire.TaskSpec{Image: first}}
	pr, err := f.p.prepare(t.Context(), eng, rec)
	if err != nil {
		t.Fatal(err)
	}
	running := pr.spec.Image
	for i := range 5 {
		_, release, err := f.resolve(t, eng, f.blob(size, 'n'))
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		release()
		if !eng.HasImage(t.Context(), running) {
			t.Fatalf("image %d evicted the image of a running task", i)
		}
		if n := eng.bytes(); n > budget {
			t.Fatalf("the engine holds %d bytes, over %d", n, budget)
		}
	}
	// Two tasks hold two images; a third does not fit.
	_, holdSecond, err := f.resolve(t, eng, f.blob(size, 'h'))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.resolve(t, eng, f.blob(size, 'x'))
	if !errors.Is(err, ErrImageCacheFull) {
		t.Fatalf("a third image with two held and room for two: %v, want ErrImageCacheFull", err)
	}
	if errors.Is(err, errNotContent) {
		t.Error("a full cache is not the content's fault: another provider may run it")
	}
	holdSecond()
	pr.cleanup(f.p.log) // the task ended
	// Its last use was its task's end: two newer images push it out.
	for _, tag := range []byte{'y', 'z'} {
		if _, release, err := f.resolve(t, eng, f.blob(size, tag)); err != nil {
			t.Fatalf("after the tasks ended: %v", err)
		} else {
			release()
		}
	}
	if eng.HasImage(t.Context(), running) {
		t.Error("the image of the ended task was kept once it was idle and the least recently used")
	}
}

// An image or module larger than the whole budget is refused, whether its
// declared size says so (nothing is fetched) or its bytes do; nothing of
// it is kept, and nothing else is evicted for it.
func TestImageCacheRefusesOversized(t *testing.T) {
	const budget = 2000
	eng, w := newFakeEngine(), &fakeWASM{}
	f := newCacheFixture(t, budget, eng, w)
	small := f.blob(500, 's')
	ref, release, err := f.resolve(t, eng, small)
	if err != nil {
		t.Fatal(err)
	}
	release()

	for _, ex := range []executor.Executor{eng, w} {
		big := f.blob(budget+1, 'b')
		_, _, err := f.resolve(t, ex, big)
		if !errors.Is(err, ErrImageTooLarge) || errors.Is(err, errNotContent) {
			t.Errorf("%s: %v, want ErrImageTooLarge (and retryable elsewhere)", ex.Name(), err)
		}
		declared := f.blob(100, 'd')
		_, _, err = f.p.resolveImage(t.Context(), ex, declared, 10*budget, t.TempDir(), "")
		if !errors.Is(err, ErrImageTooLarge) {
			t.Errorf("%s declared at %d: %v, want ErrImageTooLarge", ex.Name(), 10*budget, err)
		}
		if f.bc.fetched[declared] {
			t.Errorf("%s declared over the budget was fetched", ex.Name())
		}
	}
	if len(eng.images) != 1 || !eng.HasImage(t.Context(), ref) {
		t.Errorf("engine holds %v, want only the small image", eng.images)
	}
	if n, names := moduleBytes(t, f.p.moduleDir()); n != 0 {
		t.Errorf("module cache holds %v", names)
	}
	if n := f.images.len(); n != 1 {
		t.Errorf("%d image records, want 1", n)
	}
}

// After a restart the images and modules an earlier process loaded are
// known (from the records, and from the module files), sized (records of
// earlier versions, without a size, by the engine) and evicted like the
// others, oldest first; an image the operator has by name is never
// removed, only forgotten.
func TestImageCacheSurvivesRestart(t *testing.T) {
	const size = 1000
	eng, w := newFakeEngine(), &fakeWASM{}
	f := newCacheFixture(t, 10*size, eng, w)
	var old []string
	for range 3 {
		ref, release, err := f.resolve(t, eng, f.blob(size, 'o'))
		if err != nil {
			t.Fatal(err)
		}
		release()
		old = append(old, ref)
	}
	mod, release, err := f.resolve(t, w, f.blob(size, 'o'))
	if err != nil {
		t.Fatal(err)
	}
	release()
	// A record of an earlier version: no size, no last use.
	recs, _ := f.images.List()
	for _, r := range recs {
		if r.Ref == old[1] {
			r.Size, r.LastUsed = 0, time.Time{}
			r.LoadedAt = time.Now().Add(-time.Hour)
			f.images.Put(r.CID, r)
		}
	}
	// The operator's image, which a requestor's tarball also loaded.
	eng.tagged[old[2]] = true
	// Age the module so it is older than everything after the restart.
	past := time.Now().Add(-time.Minute)
	os.Chtimes(mod, past, past)

	// A new process: same records, same work directory, a smaller budget.
	restarted := &Provider{cfg: f.p.cfg, log: f.p.log, executors: f.p.executors}
	restarted.cfg.ImageCacheBytes = 4 * size
	f.p = restarted
	var fresh []string
	for range 4 {
		ref, release, err := f.resolve(t, eng, f.blob(size, 'f'))
		if err != nil {
			t.Fatal(err)
		}
		release()
		fresh = append(fresh, ref)
	}
	if eng.HasImage(t.Context(), old[0]) || eng.HasImage(t.Context(), old[1]) {
		t.Error("images loaded before the restart were not evicted")
	}
	if _, err := os.Stat(mod); err == nil {
		t.Error("a module loaded before the restart was not evicted")
	}
	if !eng.HasImage(t.Context(), old[2]) {
		t.Error("the operator's tagged image was removed")
	}
	for i, ref := range fresh {
		if !eng.HasImage(t.Context(), ref) {
			t.Errorf("fresh image %d was evicted", i)
		}
	}
	if bytes, entries := restarted.cacheUsage(); bytes > 4*size || entries != 4 {
		t.Errorf("cache holds %d bytes in %d entries, want at most %d in 4", bytes, entries, 4*size)
	}
	if n := f.images.len(); n != 4 {
		t.Errorf("%d records, want 4", n)
	}
}

// Tasks racing for distinct and shared images never make the cache
// account more than its budget, and it ends within it.
func TestImageCacheConcurrent(t *testing.T) {
	const size, budget = 1000, 4000
	eng := newFakeEngine()
	f := newCacheFixture(t, budget, eng)
	var cids []string
	for range 12 {
		cids = append(cids, f.blob(size, 'c'))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 30 {
				_, release, err := f.resolve(t, eng, cids[(g*7+i*5)%len(cids)])
				if err != nil && !errors.Is(err, ErrImageCacheFull) {
					t.Error(err)
					return
				}
				if bytes, _ := f.p.cacheUsage(); bytes > budget {
					t.Errorf("the cache accounts %d bytes, over %d", bytes, budget)
				}
				if release != nil {
					release()
				}
			}
		})
	}
	wg.Wait()
	if n := eng.bytes(); n > budget {
		t.Errorf("the engine ends with %d bytes, over %d", n, budget)
	}
}
