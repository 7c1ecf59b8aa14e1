package market

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/internal/safefs"
	"github.com/offload-project/offload/market/wire"
)

// ContentStore is what the market needs of the IPFS layer: fetch content
// from a peer that holds it, add a task's outputs, and pin or unpin. The
// node adapts storage/content to it.
type ContentStore interface {
	// GetTo writes the file or directory c to dest (which must not exist),
	// asking from first (a peer known to hold it) before any search. With
	// maxBytes positive it fails, while fetching, with an error wrapping
	// ErrOverQuota as soon as the content's DAG is larger (its size as
	// Size measures it: every block counted as often as the DAG links it),
	// and before it writes more file bytes; 0 means the store's own limit.
	// A failed GetTo leaves nothing at dest and pins nothing.
	GetTo(ctx context.Context, c string, dest string, from peer.ID, maxBytes int64) error
	// Size is the size of c's DAG (kubo's CumulativeSize: every block
	// counted as often as the DAG links it, at least its file bytes) when
	// the whole DAG is held here; ok is false otherwise.
	Size(ctx context.Context, c string) (size int64, ok bool)
	// FetchPin makes the whole DAG of c local and pins it under name.
	FetchPin(ctx context.Context, c string, from peer.ID, name string) error
	// AddDir adds the directory tree dir, pins it under name and returns
	// its root CID. dir is trusted but what lies beneath it is a task's:
	// the implementation must open every entry beneath dir without
	// following a symlink (symlinks are added as unixfs symlinks), refuse
	// hard links, device nodes, fifos and sockets with the path and the
	// kind, and stop with an error wrapping ErrOverQuota once it has read
	// more than maxBytes of file data.
	AddDir(ctx context.Context, dir, name string, maxBytes int64) (string, error)
	// Unpin releases a pin; its blocks are collected later.
	Unpin(ctx context.Context, c string) error
	// Has reports whether c's root block is local.
	Has(ctx context.Context, c string) bool
	// LocalFraction is the share (0..1) of c's bytes held locally.
	LocalFraction(ctx context.Context, c string) float64
	// Share lets peer p fetch the DAGs of roots from this node (content is
	// private by default: bitswap serves a block only to peers it is shared
	// with, or to anyone once published) until release is called. Release
	// is idempotent; shares of the same root to the same peer nest.
	Share(p peer.ID, roots ...string) (release func())
}

// ErrOverQuota marks content that is larger than the bound it was added
// or collected under.
var ErrOverQuota = errors.New("over the quota")

// QuotaMounter mounts directories whose size the kernel bounds while a
// task writes (executor/diskquota); the node provides it where it can.
type QuotaMounter interface {
	// MountQuota makes dir (which must not exist) a directory of at most
	// bytes of data; Close unmounts and removes it.
	MountQuota(ctx context.Context, dir string, bytes int64) (io.Closer, error)
	// ReleaseQuota unmounts and removes what a MountQuota of dir left
	// behind in an earlier process (a provider killed mid-task); nothing
	// there is not an error.
	ReleaseQuota(dir string) error
}

// DiskBounder is implemented by executors that bound a task's writes to
// its mounts themselves (executor/wasm counts every byte a guest writes);
// their tasks need no quota filesystem.
type DiskBounder interface {
	BoundsDisk() bool
}

// ImageLoader is implemented by executors that can load an image from a
// `docker save` tarball; it returns a reference that runs the image.
type ImageLoader interface {
	LoadImage(ctx context.Context, tarPath string) (ref string, err error)
}

// CachedImage maps an image CID to what the engine loaded from it.
type CachedImage struct {
	CID      string    `json:"cid"`
	Ref      string    `json:"ref"`
	LoadedAt time.Time `json:"loaded_at"`
	// Size is what the image counts against the image cache (its
	// tarball's size); 0 in records of earlier versions, which are sized
	// by the engine.
	Size int64 `json:"size,omitempty"`
	// LastUsed is when a task last started to use it (LoadedAt when
	// zero); the least recently used go first (imagecache.go).
	LastUsed time.Time `json:"last_used,omitzero"`
}

// ImageCache persists CachedImage records, by CID.
// storage.Table[CachedImage] implements it.
type ImageCache interface {
	Get(key string) (*CachedImage, error)
	Put(key string, v *CachedImage) error
	List() ([]*CachedImage, error)
	Delete(key string) error
}

// errNotContent marks a preparation failure another provider would hit
// too (the content is not what the task says it is).
var errNotContent = errors.New("content is not usable")

// DefaultMaxFetchBytes is a provider's bound on each fetch of a task's
// image, inputs and volumes when ProviderConfig.MaxFetchBytes is unset.
const DefaultMaxFetchBytes = 16 << 30

// fetchLimit is the bound on one fetch of content declared at declared
// bytes (0: not declared): the smaller of the declaration and the
// provider's own limit.
func (p *Provider) fetchLimit(declared int64) int64 {
	limit := p.cfg.MaxFetchBytes
	if limit <= 0 {
		limit = DefaultMaxFetchBytes
	}
	if declared > 0 && declared < limit {
		return declared
	}
	return limit
}

// fetchTo writes content c, which the task calls what and declares at
// declared bytes, to dest under fetchLimit. Content larger than its
// declaration fails with errNotContent (no other provider would fare
// better); content larger than this provider's own limit fails retryably,
// since another provider may allow more.
func (p *Provider) fetchTo(ctx context.Context, what, c string, declared int64, dest string, from peer.ID) error {
	limit := p.fetchLimit(declared)
	err := p.cfg.Content.GetTo(ctx, c, dest, from, limit)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrOverQuota) && declared > 0 && declared == limit:
		return fmt.Errorf("%w: %s is larger than its declared size of %d bytes: %w", errNotContent, what, declared, err)
	case errors.Is(err, ErrOverQuota):
		return fmt.Errorf("%s is larger than this provider's fetch limit of %d bytes: %w", what, limit, err)
	default:
		return fmt.Errorf("fetch %s: %w", what, err)
	}
}

// prepared is what a run needs on the provider's disk.
type prepared struct {
	spec    executor.Spec
	workDir string
	// bare is set when workDir is the task's outputs directory and
	// nothing else (prepare, outputsOnly).
	bare    bool
	fetchMS int64
	// workMount is the host side of /work ("" when the task has none).
	workMount string
	// volumes are the task's writable volumes (service.go).
	volumes []volumeMount
	// rwDir holds everything the task writes (volumes, outputs, work):
	// the quota filesystem when quota is set, else workDir.
	rwDir string
	quota io.Closer
	// checkpointDir is the host side of the task's checkpoint directory
	// ("" when it has none; checkpoint.go).
	checkpointDir string
	// releaseImage ends the task's use of its image or module from the
	// image cache (nil when it has none), which may be evicted after.
	releaseImage func()
}

// prepare fetches the task's image and inputs and lays out its directories.
// The time it takes does not count against the task's timeout.
func (p *Provider) prepare(ctx context.Context, ex executor.Executor, rec *ExecRecord) (*prepared, error) {
	start := time.Now()
	spec := executorSpec(rec)
	from, _ := peerIDs.Decode(rec.Requestor)
	workDir := filepath.Join(p.cfg.WorkDir, execDirName(rec))
	b, bounds := ex.(DiskBounder)
	quota := p.cfg.DiskQuota != nil && !(bounds && b.BoundsDisk())
	// A task that writes only /outputs and brings nothing of its own (no
	// inputs, volumes, checkpoint, stages or artifacts to collect) nor
	// needs a quota mount has its execution directory as its outputs
	// directory: one directory to make and to remove (outputsOnly).
	bare := !quota && outputsOnly(rec.Spec)
	// An executor that makes /outputs on the task's first use of it
	// (executor/wasm) gets a bare task's directory unmade: a task that
	// writes no outputs then costs no directory at all.
	m, makes := ex.(outputsMaker)
	lazy := bare && makes && m.MakesOutputsDir()
	mode := os.FileMode(0o700)
	if bare {
		mode = 0o777
	}
	if !lazy {
		if err := makeFreshDir(workDir, mode); err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
	}
	pr := &prepared{spec: spec, workDir: workDir, bare: bare}
	if rec.Spec.ImageIsCID() {
		ref, release, err := p.resolveImage(ctx, ex, rec.Spec.Image, rec.Spec.ImageSize, workDir, from)
		if err != nil {
			return pr, err
		}
		pr.spec.Image, pr.releaseImage = ref, release
	}
	for i, in := range rec.Spec.Inputs {
		if p.cfg.Content == nil {
			return pr, errors.New("this provider has no content store for inputs")
		}
		dst := filepath.Join(workDir, "inputs", fmt.Sprint(i))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return pr, fmt.Errorf("create inputs dir: %w", err)
		}
		if err := p.fetchTo(ctx, fmt.Sprintf("input %s for %s", in.CID, in.Path), in.CID, in.Size, dst, from); err != nil {
			return pr, err
		}
		// The task may run as any user: let it read what it was given. The
		// tree is the requestor's: safefs changes it without following links.
		if err := safefs.Chmod(dst, 0o755, 0o644); err != nil {
			return pr, fmt.Errorf("%w: input %s for %s: %w", errNotContent, in.CID, in.Path, err)
		}
		pr.spec.Mounts = append(pr.spec.Mounts, executor.Mount{Source: dst, Target: in.Path, ReadOnly: true})
	}
	// Everything the task writes (volumes, /outputs, /work) lives in one
	// directory, bounded by the kernel while it is written where the
	// provider can mount quota filesystems.
	pr.rwDir = workDir
	if quota {
		pr.rwDir = filepath.Join(workDir, "rw")
		q, err := p.cfg.DiskQuota.MountQuota(ctx, pr.rwDir, p.cfg.OutputsQuota)
		if err != nil {
			return pr, fmt.Errorf("mount the task's disk quota: %w", err)
		}
		pr.quota = q
	}
	if err := p.prepareVolumes(ctx, rec, pr, from); err != nil {
		return pr, err
	}
	if err := p.prepareCheckpoint(ctx, rec, pr, from); err != nil {
		return pr, err
	}
	out := filepath.Join(pr.rwDir, "outputs")
	if bare {
		// Nothing else lies in it now: an image or module fetched for
		// the task (resolveImage) was moved or removed on return.
		out = workDir
	} else if err := os.Mkdir(out, 0o777); err != nil {
		return pr, fmt.Errorf("create outputs dir: %w", err)
	}
	if !lazy {
		_ = os.Chmod(out, 0o777) // umask-independent: a non-root task must write here
	}
	pr.spec.OutputsDir = out
	if len(rec.Spec.Stages) > 0 || hasWorkArtifact(rec.Spec.Artifacts) {
		work := filepath.Join(pr.rwDir, "work")
		if err := os.MkdirAll(work, 0o777); err != nil {
			return pr, fmt.Errorf("create work dir: %w", err)
		}
		_ = os.Chmod(work, 0o777)
		pr.workMount = work
		pr.spec.Mounts = append(pr.spec.Mounts, executor.Mount{Source: work, Target: wire.WorkPath})
	}
	pr.fetchMS = time.Since(start).Milliseconds()
	return pr, nil
}

// outputsMaker is an executor that makes Spec.OutputsDir itself when the
// task first uses /outputs (executor/wasm), so that the directory need not
// exist before the run.
type outputsMaker interface {
	MakesOutputsDir() bool
}

// outputsOnly reports whether a task needs nothing on the provider's disk
// beyond its /outputs: no inputs, volumes, checkpoint, stages (and their
// shared /work) or listed artifacts (gathered into a directory beside
// /outputs by collectOutputs).
func outputsOnly(s wire.TaskSpec) bool {
	return len(s.Inputs) == 0 && len(s.Volumes) == 0 && s.Checkpoint == nil &&
		len(s.Stages) == 0 && len(s.Artifacts) == 0
}

// makeFreshDir creates dir with mode (less the umask), removing first
// whatever an earlier holder of the name left there (none should: an
// execution's name is its own and removeStaleWorkDirs clears the last
// process's), and creating its parent when missing. The usual case is one
// mkdir.
func makeFreshDir(dir string, mode os.FileMode) error {
	err := os.Mkdir(dir, mode)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("clean %s: %w", dir, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return err
		}
	default:
		return err
	}
	return os.Mkdir(dir, mode)
}

// execDirName names an execution's work directory from its whole key
// (requestor, task and attempt), so that another requestor's award of the
// same task id never reaches it: the hex SHA-256 of the key, after up to 16
// letters and digits of the task id for people reading the directory.
func execDirName(rec *ExecRecord) string {
	key := rec.Key
	if key == "" {
		key = execKey(rec.Requestor, rec.TaskID, rec.Attempt)
	}
	sum := sha256.Sum256([]byte(key))
	var short []byte
	for i := 0; i < len(rec.TaskID) && len(short) < 16; i++ {
		if c := rec.TaskID[i]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			short = append(short, c)
		}
	}
	return string(short) + "-" + hex.EncodeToString(sum[:])
}

// removeStaleWorkDirs removes the execution directories an earlier process
// left (it was killed while tasks ran), unmounting their quota filesystems
// first. Call it before any execution starts: every such directory is
// stale then. The module cache is kept.
func (p *Provider) removeStaleWorkDirs() {
	entries, err := os.ReadDir(p.cfg.WorkDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !isExecDirName(e.Name()) {
			continue
		}
		dir := filepath.Join(p.cfg.WorkDir, e.Name())
		if p.cfg.DiskQuota != nil {
			if err := p.cfg.DiskQuota.ReleaseQuota(filepath.Join(dir, "rw")); err != nil {
				p.log.Warn("release a stale task disk quota", "dir", dir, "err", err)
				continue // never RemoveAll through a mount that is still there
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			p.log.Warn("remove a stale work dir", "dir", dir, "err", err)
		}
	}
}

// isExecDirName reports whether name has the shape execDirName gives.
func isExecDirName(name string) bool {
	_, sum, ok := strings.Cut(name, "-")
	if !ok || len(sum) != 64 {
		return false
	}
	_, err := hex.DecodeString(sum)
	return err == nil
}

// cleanup unmounts the quota filesystem (if any), removes the
// execution's directory and lets its image go.
func (pr *prepared) cleanup(log *slog.Logger) {
	if pr.releaseImage != nil {
		pr.releaseImage()
	}
	if pr.quota != nil {
		if err := pr.quota.Close(); err != nil {
			log.Warn("unmount a task's disk quota", "dir", pr.rwDir, "err", err)
		}
	}
	// An outputs-only directory the task left empty goes with one rmdir
	// (and one the executor never made, with none); anything else is
	// removed whole.
	if pr.bare {
		if err := syscall.Rmdir(pr.workDir); err == nil || errors.Is(err, syscall.ENOENT) {
			return
		}
	}
	if err := os.RemoveAll(pr.workDir); err != nil {
		log.Warn("remove a task's work dir", "dir", pr.workDir, "err", err)
	}
}

// resolveImage turns an image CID into something the executor runs: a
// loaded Docker image or a WASM module file, both kept in the image cache
// (imagecache.go) by CID. release ends the task's use of it; until then it
// is never evicted. An image or module larger than the cache's whole
// budget is refused with ErrImageTooLarge, and nothing of it is kept.
func (p *Provider) resolveImage(ctx context.Context, ex executor.Executor, c string, declared int64, workDir string, from peer.ID) (ref string, release func(), err error) {
	if p.cfg.Content == nil {
		return "", nil, errors.New("this provider has no content store for images by CID")
	}
	kind, what := kindImage, "image "+c
	loader, loads := ex.(ImageLoader)
	if ex.Name() == "wasm" {
		kind, what = kindModule, "module "+c
	} else if !loads {
		return "", nil, fmt.Errorf("the %s executor cannot load images by CID", ex.Name())
	}
	// Fetch more than the whole cache holds only to refuse it after: a
	// DAG is its file and some bytes of links (well under 1%).
	if budget := p.cacheBudget(); declared > budget+budget/100 {
		return "", nil, fmt.Errorf("%s is declared at %d bytes, more than this provider's whole image cache of %d bytes: %w", what, declared, budget, ErrImageTooLarge)
	}
	// Load each CID once, even when tasks race for it; a slow image
	// holds up only the tasks that wait for that same image, and no
	// longer than their own preparation may take.
	unlock, err := p.imageLocks.lock(ctx, c)
	if err != nil {
		return "", nil, fmt.Errorf("wait for %s being loaded for another task: %w", what, err)
	}
	defer unlock()
	if ref, release, ok := p.cacheAcquire(ctx, ex, kind, c); ok {
		return ref, release, nil
	}
	tmp := filepath.Join(workDir, "image.tar")
	if kind == kindModule {
		tmp = filepath.Join(workDir, "module.wasm")
	}
	// A bare task's directory may not be made yet (outputsMaker).
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("create work dir: %w", err)
	}
	if err := p.fetchTo(ctx, what, c, declared, tmp, from); err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	fi, err := os.Lstat(tmp)
	if err != nil || !fi.Mode().IsRegular() {
		if kind == kindModule {
			return "", nil, fmt.Errorf("%w: module %s is not a file (a directory or a symlink), not a .wasm file", errNotContent, c)
		}
		return "", nil, fmt.Errorf("%w: image %s is not a file (a directory or a symlink), not an image tarball", errNotContent, c)
	}
	e, err := p.cacheAdmit(ctx, ex, kind, c, fi.Size())
	if err != nil {
		return "", nil, err
	}
	switch kind {
	case kindModule:
		path := filepath.Join(p.moduleDir(), c+".wasm")
		if err := os.MkdirAll(p.moduleDir(), 0o700); err != nil {
			p.cacheAbandon(e)
			return "", nil, fmt.Errorf("create module cache: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			p.cacheAbandon(e)
			return "", nil, fmt.Errorf("cache module: %w", err)
		}
		ref = path
	default:
		ref, err = loader.LoadImage(ctx, tmp)
		if err != nil {
			p.cacheAbandon(e)
			return "", nil, fmt.Errorf("%w: load image %s: %v", errNotContent, c, err)
		}
	}
	return ref, p.cacheLoaded(e, ref), nil
}

// cachedImage returns the loaded image of a CID if the engine still has it.
func (p *Provider) cachedImage(ctx context.Context, ex executor.Executor, c string) (string, bool) {
	ref, ok := p.cachePeek(ctx, ex, kindImage, c)
	if !ok {
		return "", false
	}
	if ic, ok := ex.(ImageChecker); ok && !ic.HasImage(ctx, ref) {
		return "", false
	}
	return ref, true
}

// hasImage tells a bid whether the task's image is already here.
func (p *Provider) hasImage(ctx context.Context, ex executor.Executor, req wire.Requirements) (has, canRun bool) {
	spec := wire.TaskSpec{Image: req.Image}
	if spec.ImageIsCID() {
		if ex.Name() == "wasm" {
			_, ok := p.cachePeek(ctx, ex, kindModule, req.Image)
			return ok, p.cfg.Content != nil
		}
		_, ok := p.cachedImage(ctx, ex, req.Image)
		_, loads := ex.(ImageLoader)
		return ok, p.cfg.Content != nil && loads
	}
	ic, ok := ex.(ImageChecker)
	if !ok {
		return false, true
	}
	has = ic.HasImage(ctx, req.Image)
	return has, has
}

// inputsLocal is the mean share of the inputs already held here.
func (p *Provider) inputsLocal(inputs []string) float64 {
	if len(inputs) == 0 {
		return 1 // nothing to fetch
	}
	if p.cfg.Content == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(p.ctx, time.Second)
	defer cancel()
	var sum float64
	for _, c := range inputs {
		sum += p.cfg.Content.LocalFraction(ctx, c)
	}
	return sum / float64(len(inputs))
}

// collectOutputs adds the task's outputs — its artifacts when it lists
// some, else all of /outputs — and pins them until the requestor fetched
// them. A listed artifact the task did not produce fails the task.
//
// The task controls the trees it leaves. Listed artifacts are copied with
// package safefs into a directory of the provider's own (never through a
// symlink, refusing hard links, devices, fifos and sockets, counting bytes
// against OutputsQuota as they are copied); all of /outputs is added where
// it lies by ContentStore.AddDir, which holds to the same rules.
func (p *Provider) collectOutputs(ctx context.Context, rec *ExecRecord, pr *prepared) (string, error) {
	if p.cfg.Content == nil {
		return "", nil
	}
	// All of /outputs is added where it lies (AddDir reads it beneath its
	// root, never following a link, counting bytes); listed artifacts are
	// first gathered from /outputs and /work with safefs.
	dir := pr.spec.OutputsDir
	if rec.Spec.RuntimeOrDefault() == wire.RuntimeBuild {
		// A build's outputs are its image tarball, as one file: the
		// outputs CID is then the image's CID.
		dir = filepath.Join(dir, executor.BuildOutput)
	}
	if len(rec.Spec.Artifacts) > 0 {
		dir = filepath.Join(pr.workDir, "collected", "outputs")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("collect outputs: %w", err)
		}
		err := gatherArtifacts(rec.Spec.Artifacts, pr, dir, &safefs.Limit{Max: p.cfg.OutputsQuota})
		if errors.Is(err, safefs.ErrQuota) {
			return "", fmt.Errorf("outputs are over this provider's quota of %d bytes (%w)", p.cfg.OutputsQuota, err)
		}
		if err != nil {
			return "", err
		}
	}
	if fi, err := os.Lstat(dir); err != nil {
		return "", nil
	} else if fi.IsDir() {
		if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
			return "", nil
		}
	}
	c, err := p.cfg.Content.AddDir(ctx, dir, "outputs:"+rec.Key, p.cfg.OutputsQuota)
	if errors.Is(err, ErrOverQuota) {
		return "", fmt.Errorf("outputs are over this provider's quota of %d bytes (%w)", p.cfg.OutputsQuota, err)
	}
	if err != nil {
		return "", fmt.Errorf("outputs: %w", err)
	}
	return c, nil
}

func hasWorkArtifact(paths []string) bool {
	for _, a := range paths {
		if strings.HasPrefix(a, wire.WorkPath+"/") {
			return true
		}
	}
	return false
}

// gatherArtifacts copies each artifact into dst, keeping its path below
// /outputs or /work, with safefs: an artifact that is or passes through a
// symlink is refused, and so is one holding a hard link, a device, a fifo
// or a socket. Bytes count against lim.
func gatherArtifacts(paths []string, pr *prepared, dst string, lim *safefs.Limit) error {
	for _, a := range paths {
		var root, rel string
		switch {
		case strings.HasPrefix(a, wire.OutputsPath+"/"):
			root, rel = pr.spec.OutputsDir, strings.TrimPrefix(a, wire.OutputsPath+"/")
		case strings.HasPrefix(a, wire.WorkPath+"/") && pr.workMount != "":
			root, rel = pr.workMount, strings.TrimPrefix(a, wire.WorkPath+"/")
		default:
			return fmt.Errorf("artifact %s is not under %s or %s", a, wire.OutputsPath, wire.WorkPath)
		}
		err := safefs.Copy(root, rel, dst, lim)
		switch {
		case err == nil:
		case errors.Is(err, safefs.ErrQuota), errors.Is(err, safefs.ErrUnsafe):
			return fmt.Errorf("artifact %s: %w", a, err)
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("artifact %s was not produced by the task", a)
		case errors.Is(err, fs.ErrExist):
			return fmt.Errorf("artifact %s collides with another artifact", a)
		default:
			return fmt.Errorf("collect artifact %s: %w", a, err)
		}
	}
	return nil
}

// keyLocks serializes work per key (an image CID): callers with the same
// key take turns, callers with different keys do not wait for one another.
// Entries exist only while someone holds or waits for them.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch    chan struct{} // holds a token while locked
	users int           // holders and waiters
}

// lock takes key's lock, waiting at most until ctx ends; unlock gives it
// back.
func (k *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	leave := func() {
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, context.Cause(ctx)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.ch
			leave()
		})
	}, nil
}
