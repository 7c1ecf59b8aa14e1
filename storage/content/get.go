package content

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	unixfspb "github.com/ipfs/boxo/ipld/unixfs/pb"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/internal/safefs"
)

// hintConnectTimeout bounds the dial of one hinted peer.
const hintConnectTimeout = 10 * time.Second

// FetchOptions tunes Fetch.
type FetchOptions struct {
	// Timeout is the inactivity timeout: the fetch fails with ErrTimeout
	// when no block arrives for this long. Zero means the store's default.
	Timeout time.Duration
	// Peers are asked directly (dialed if not connected) before any DHT
	// search: the provider that produced the content, for instance.
	Peers []peer.ID
	// Progress, when set, is called with the total block bytes made local
	// (fetched or already held) so far.
	Progress func(n int64)
	// Pin pins the root under PinName once everything is local. Fetched
	// content is private like added content: it is neither served to other
	// peers nor announced unless shared or published.
	Pin     bool
	PinName string
}

// GetOptions tunes Get.
type GetOptions struct {
	// Timeout is the inactivity timeout (see FetchOptions.Timeout).
	Timeout time.Duration
	// Progress, when set, is called with the total number of file bytes
	// written to dest so far.
	Progress func(n int64)
	// Peers are peers known to hold the content (see FetchOptions.Peers).
	Peers []peer.ID
	// Overwrite replaces an existing dest. Without it Get refuses a dest
	// that exists and is not an empty directory.
	Overwrite bool
	// MaxBytes, when positive, bounds the content by the size of its DAG
	// (kubo's CumulativeSize: every block counted as often as the DAG links
	// it), which is at least the file bytes of any well-formed DAG. Get
	// fails with ErrTooLarge, while it fetches, as soon as the root records
	// a larger size or the distinct blocks it made local add up to more
	// (fetches run fewer blocks at a time under a small bound, so what
	// lands in the block store stays near it); and, while it writes,
	// before it writes more file bytes than MaxBytes. Set it for content
	// from strangers: a DAG may link one block or subtree many times,
	// fetched once but written each time, so what Get writes can be far
	// more than what it fetches.
	MaxBytes int64
	// MaxEntries, when positive, fails Get with ErrTooLarge before it
	// creates more files, directories and symlinks than this.
	MaxEntries int64
}

// Fetch makes the whole DAG under c local, fetching missing blocks over
// bitswap, and pins it when opts.Pin is set.
func (s *Store) Fetch(ctx context.Context, c cid.Cid, opts FetchOptions) error {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.closed() {
		return fmt.Errorf("content: fetch %s: %w", c, ErrClosed)
	}
	if err := s.fetch(ctx, c, opts.Timeout, opts.Peers, opts.Progress, 0); err != nil {
		return fmt.Errorf("content: fetch %s: %w", c, err)
	}
	if opts.Pin {
		if err := s.putPin(ctx, c, opts.PinName); err != nil {
			return fmt.Errorf("content: fetch: %w", err)
		}
	}
	return nil
}

// errIdle is the cancellation cause of an inactivity timeout.
type errIdle struct{ d time.Duration }

func (e errIdle) Error() string { return fmt.Sprintf("no block received for %s", e.d) }
func (e errIdle) Unwrap() error { return ErrTimeout }

// idleContext returns a context canceled with errIdle once kick was not
// called for d, and a stop function that releases it.
func idleContext(parent context.Context, d time.Duration) (ctx context.Context, kick func(), stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var mu sync.Mutex
	var timer *time.Timer
	var check func()
	check = func() {
		idle := time.Since(time.Unix(0, last.Load()))
		if idle >= d {
			cancel(errIdle{d})
			return
		}
		mu.Lock()
		timer = time.AfterFunc(d-idle, check)
		mu.Unlock()
	}
	mu.Lock()
	timer = time.AfterFunc(d, check)
	mu.Unlock()
	kick = func() { last.Store(time.Now().UnixNano()) }
	stop = func() {
		mu.Lock()
		timer.Stop()
		mu.Unlock()
		cancel(context.Canceled)
	}
	return ctx, kick, stop
}

// timeoutError turns a failure under an idle context into a clear error.
func (s *Store) timeoutError(ctx context.Context, err error, hinted int) error {
	var idle errIdle
	if cause := context.Cause(ctx); errors.As(cause, &idle) {
		return fmt.Errorf("%w: %v (asked %d connected peers, %d hinted; routing %s)",
			ErrTimeout, idle, len(s.host.Network().Peers()), hinted, s.routingState())
	}
	return err
}

func (s *Store) routingState() string {
	if s.router == nil {
		return "disabled"
	}
	return "enabled"
}

// connectHints dials the hinted peers that are not connected yet, in
// parallel, and returns when all dials ended. Bitswap sends its wants to
// every connected peer, so a connected hint is asked before any DHT search.
func (s *Store) connectHints(ctx context.Context, peers []peer.ID) {
	var wg sync.WaitGroup
	for _, p := range peers {
		if p == s.host.ID() || s.host.Network().Connectedness(p) == network.Connected {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, hintConnectTimeout)
			defer cancel()
			if err := s.host.Connect(cctx, peer.AddrInfo{ID: p}); err != nil {
				s.log.Debug("connect to hinted peer failed", "peer", p, "err", err)
			}
		})
	}
	wg.Wait()
}

// fetch makes the DAG under c local. Callers hold gcMu for reading. With
// maxBytes positive it fails with ErrTooLarge once the root records a DAG
// size above maxBytes or the distinct blocks made local (fetched or already
// held) add up to more; it then asks for at most one block per ChunkSize of
// maxBytes at a time, so that the blocks in flight when it stops do not
// dwarf a small bound.
func (s *Store) fetch(ctx context.Context, c cid.Cid, timeout time.Duration, hints []peer.ID, progress func(int64), maxBytes int64) error {
	if timeout <= 0 {
		timeout = s.cfg.timeout
	}
	ctx, idleKick, stop := idleContext(ctx, timeout)
	defer stop()
	s.connectHints(ctx, hints)
	var lastBlock atomic.Int64
	lastBlock.Store(time.Now().UnixNano())
	kick := func() {
		idleKick()
		lastBlock.Store(time.Now().UnixNano())
	}
	stopWatch := s.watchStall(ctx, hints, &lastBlock)
	defer stopWatch()

	ng := merkledag.NewSession(ctx, s.dag)
	var got atomic.Int64
	getLinks := func(ctx context.Context, k cid.Cid) ([]*ipld.Link, error) {
		if err := s.putIfEmpty(ctx, k); err != nil {
			return nil, err
		}
		nd, err := ng.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		kick()
		n := got.Add(int64(len(nd.RawData())))
		if progress != nil {
			progress(n)
		}
		if maxBytes > 0 {
			if n > maxBytes {
				return nil, fmt.Errorf("%w: the DAG holds more than %d bytes (%d fetched so far)", ErrTooLarge, maxBytes, n)
			}
			if k.Equals(c) {
				if rec, err := nd.Size(); err == nil && rec > uint64(maxBytes) {
					return nil, fmt.Errorf("%w: the DAG records %d bytes, more than %d bytes", ErrTooLarge, rec, maxBytes)
				}
			}
		}
		return nd.Links(), nil
	}
	seen := make(map[string]struct{})
	visit := func(k cid.Cid) bool { // called under the walker's lock
		h := string(k.Hash())
		if _, ok := seen[h]; ok {
			return false
		}
		seen[h] = struct{}{}
		return true
	}
	conc := s.cfg.fetchConcurrency
	if maxBytes > 0 {
		conc = int(min(int64(conc), max(1, maxBytes/ChunkSize)))
	}
	err := merkledag.Walk(ctx, getLinks, c, visit, merkledag.Concurrency(conc))
	if err != nil {
		return s.timeoutError(ctx, err, len(hints))
	}
	return nil
}

// stallProbe is how long a fetch from hinted peers may go without a block
// before the connections to them are reset, and maxStallResets how often.
const (
	stallProbe     = 3 * time.Second
	maxStallResets = 3
)

// watchStall works around a bitswap sender that stops serving a peer: with
// a large MaxOutstandingBytesPerPeer, boxo's per-peer work accounting can
// stay "full" after a peer re-requests blocks it collected (reproduced by
// fetching tens of MiB, collecting them, and fetching them again from the
// same peer). The sender clears that state when the peer disconnects, so a
// fetch that gets no block from its hinted peers for stallProbe closes the
// connections to them and dials again; bitswap then sends its wants anew.
func (s *Store) watchStall(ctx context.Context, hints []peer.ID, last *atomic.Int64) (stop func()) {
	if len(hints) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(stallProbe / 3)
		defer t.Stop()
		resets := 0
		for resets < maxStallResets {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if time.Since(time.Unix(0, last.Load())) < stallProbe {
				continue
			}
			resets++
			s.log.Debug("fetch stalled: reconnecting to hinted peers", "peers", len(hints), "reset", resets)
			for _, p := range hints {
				if p != s.host.ID() {
					_ = s.host.Network().ClosePeer(p)
				}
			}
			s.connectHints(ctx, hints)
			last.Store(time.Now().UnixNano())
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// putIfEmpty stores the block of k when k is the hash of zero bytes (the
// empty file as a raw leaf). Bitswap servers never send empty blocks (boxo
// treats a block size of 0 as "not found"), so fetching one would time out,
// but its content is known from the CID alone.
func (s *Store) putIfEmpty(ctx context.Context, k cid.Cid) error {
	if k.Prefix().Codec != cid.Raw {
		return nil
	}
	e, err := k.Prefix().Sum(nil)
	if err != nil || !e.Equals(k) {
		return nil
	}
	blk, err := blocks.NewBlockWithCid(nil, k)
	if err != nil {
		return err
	}
	return s.bstore.Put(ctx, blk)
}

// Get writes the file or directory tree c to dest, fetching what is not
// local over bitswap first. dest must not exist, or be an empty directory,
// unless opts.Overwrite is set. The tree is written into a temporary
// directory next to dest and renamed into place at the end, so nothing is
// left at dest when Get fails (an unsafe entry name, a timeout, a full disk,
// a limit of opts passed).
//
// The DAG is treated as hostile: entry names must be single path elements
// (ValidateEntryName), a name may appear once per directory, every entry is
// created relative to its open parent directory without following a
// symlink, a symlink's target must be relative and climb ("..") only at its
// start and no higher than the tree's root (so no chain of links leaves the
// tree), the root itself may not be a symlink, directories nest at most
// MaxDepth deep, and opts.MaxBytes and opts.MaxEntries bound what is
// written.
func (s *Store) Get(ctx context.Context, c cid.Cid, dest string, opts GetOptions) error {
	if dest == "" {
		return fmt.Errorf("content: get %s: empty destination", c)
	}
	dest = filepath.Clean(dest)
	replace, err := checkDest(dest, opts.Overwrite)
	if err != nil {
		return fmt.Errorf("content: get %s: %w", c, err)
	}

	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.closed() {
		return fmt.Errorf("content: get %s: %w", c, ErrClosed)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".offload-get-*")
	if err != nil {
		return fmt.Errorf("content: get %s: %w", c, err)
	}
	defer os.RemoveAll(tmp)

	// Fetch everything first (parallel, hash-verified into the block store),
	// then write from local blocks. Overlapping the writer with the fetch on
	// a second bitswap session was tried: no clear gain on loopback, and a
	// want registered just after its block landed could stall.
	if err := s.fetch(ctx, c, opts.Timeout, opts.Peers, nil, opts.MaxBytes); err != nil {
		return fmt.Errorf("content: get %s: %w", c, err)
	}
	top, err := safefs.OpenDir(tmp)
	if err != nil {
		return fmt.Errorf("content: get %s: %w", c, err)
	}
	defer top.Close()
	w := &treeWriter{ng: s.offline, empty: s.putIfEmpty, progress: opts.Progress, maxBytes: opts.MaxBytes, maxEntries: opts.MaxEntries}
	if err := w.write(ctx, c, top, "root", -1); err != nil {
		return fmt.Errorf("content: get %s: %w", c, err)
	}
	if replace {
		if err := os.RemoveAll(dest); err != nil {
			return fmt.Errorf("content: get %s: replace %s: %w", c, dest, err)
		}
	}
	if err := os.Rename(filepath.Join(tmp, "root"), dest); err != nil {
		return fmt.Errorf("content: get %s: %w", c, err)
	}
	return nil
}

// checkDest says whether dest must be removed before the rename.
func checkDest(dest string, overwrite bool) (replace bool, err error) {
	fi, err := os.Lstat(dest)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.IsDir() {
		f, err := os.Open(dest)
		if err != nil {
			return false, err
		}
		_, err = f.Readdirnames(1)
		f.Close()
		if errors.Is(err, io.EOF) {
			return true, nil // empty directory
		}
	}
	if overwrite {
		return true, nil
	}
	return false, fmt.Errorf("%w: %s (not an empty directory; set Overwrite to replace it)", ErrDestExists, dest)
}

// ValidateEntryName refuses a unixfs entry name that cannot be written as
// one path element inside the target directory: empty, ".", "..", or
// containing '/', '\\' or NUL. The error wraps ErrUnsafeName.
func ValidateEntryName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrUnsafeName)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrUnsafeName, name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("%w: %q contains a path separator or NUL", ErrUnsafeName, shorten(name))
	}
	return nil
}

// validateSymlink refuses a symlink target that could lead out of the tree
// it is written in: empty, absolute or holding NUL; climbing ("..") more
// levels than depth, the depth of the link's directory below the tree's
// root (0 for the root; -1 when the link is the root itself, which can only
// point outside the tree); or climbing after a name. The last rule keeps
// chains of links inside: the name may be a link to a directory higher up
// ("a" -> "."), and a ".." after it would climb from there ("a/.." leaves
// the root), so only a target whose climbs all come first can be checked by
// counting. Every link that passes reaches, through any chain of links that
// also passed, only entries beneath the root. (A path that climbs after a
// link, "link/..", climbs from where the link points, as after any
// directory: whoever resolves such paths must not check them lexically.)
func validateSymlink(depth int, name, target string) error {
	if target == "" || strings.HasPrefix(target, "/") || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%w: symlink %s -> %q", ErrUnsafeName, name, shorten(target))
	}
	if depth < 0 {
		return fmt.Errorf("%w: the root is a symlink (-> %q), which points outside what is written", ErrUnsafeName, shorten(target))
	}
	up, named := 0, false
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if named {
				return fmt.Errorf("%w: symlink %s -> %q climbs (\"..\") after a name", ErrUnsafeName, name, shorten(target))
			}
			up++
		default:
			named = true
		}
	}
	if up > depth {
		return fmt.Errorf("%w: symlink %s -> %q leaves the tree", ErrUnsafeName, name, shorten(target))
	}
	return nil
}

// treeWriter writes a DAG below one directory, every entry created
// relative to its open parent directory and never through a symlink.
type treeWriter struct {
	ng ipld.NodeGetter
	// empty, when set, stores the empty raw block when asked for it.
	empty    func(context.Context, cid.Cid) error
	progress func(int64)
	written  int64
	entries  int64
	// maxBytes and maxEntries bound what is written (0: no bound).
	maxBytes, maxEntries int64
}

// readOnlyDAG lets a node getter serve where a DAGService is asked for but
// only read.
type readOnlyDAG struct{ ipld.NodeGetter }

func (readOnlyDAG) Add(context.Context, ipld.Node) error        { return errors.New("read-only") }
func (readOnlyDAG) AddMany(context.Context, []ipld.Node) error  { return errors.New("read-only") }
func (readOnlyDAG) Remove(context.Context, cid.Cid) error       { return errors.New("read-only") }
func (readOnlyDAG) RemoveMany(context.Context, []cid.Cid) error { return errors.New("read-only") }

type progressWriter struct {
	f *os.File
	w *treeWriter
}

func (p progressWriter) Write(b []byte) (int, error) {
	if p.w.maxBytes > 0 && p.w.written+int64(len(b)) > p.w.maxBytes {
		return 0, fmt.Errorf("%w: more than %d bytes to write (%d written)", ErrTooLarge, p.w.maxBytes, p.w.written)
	}
	n, err := p.f.Write(b)
	p.w.written += int64(n)
	if p.w.progress != nil {
		p.w.progress(p.w.written)
	}
	return n, err
}

// write writes node c as the entry name of parent, which lies depth levels
// below the tree's root (-1: c is the root). Every file, directory and
// symlink is created exclusively, relative to its parent's descriptor, so
// a hostile DAG can neither write through a symlink nor over an earlier
// entry (a duplicate name fails).
func (w *treeWriter) write(ctx context.Context, c cid.Cid, parent *safefs.Dir, name string, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.maxEntries > 0 && w.entries >= w.maxEntries {
		return fmt.Errorf("%w: more than %d entries", ErrTooLarge, w.maxEntries)
	}
	w.entries++
	if w.empty != nil {
		if err := w.empty(ctx, c); err != nil {
			return err
		}
	}
	nd, err := w.ng.Get(ctx, c)
	if err != nil {
		return fmt.Errorf("read %s: %w", c, err)
	}
	switch n := nd.(type) {
	case *merkledag.RawNode:
		return w.file(parent, name, bytes.NewReader(n.RawData()))
	case *merkledag.ProtoNode:
		fsn, err := unixfs.FSNodeFromBytes(n.Data())
		if err != nil {
			return fmt.Errorf("%s: not unixfs: %w", c, err)
		}
		switch fsn.Type() {
		case unixfspb.Data_File, unixfspb.Data_Raw:
			r, err := uio.NewDagReader(ctx, n, w.ng)
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			defer r.Close()
			return w.file(parent, name, r)
		case unixfspb.Data_Directory, unixfspb.Data_HAMTShard:
			if depth+1 > MaxDepth {
				return fmt.Errorf("%w: directories nest more than %d deep", ErrTooLarge, MaxDepth)
			}
			dir, err := uio.NewDirectoryFromNode(&readOnlyDAG{NodeGetter: w.ng}, n)
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			sub, err := parent.Mkdir(name, 0o755)
			if err != nil {
				return w.createError(c, name, err)
			}
			defer sub.Close()
			return dir.ForEachLink(ctx, func(l *ipld.Link) error {
				if err := ValidateEntryName(l.Name); err != nil {
					return fmt.Errorf("directory %s: %w", c, err)
				}
				return w.write(ctx, l.Cid, sub, l.Name, depth+1)
			})
		case unixfspb.Data_Symlink:
			target := string(fsn.Data())
			if err := validateSymlink(depth, path.Join(parent.Path(), name), target); err != nil {
				return err
			}
			if err := parent.Symlink(target, name); err != nil {
				return w.createError(c, name, err)
			}
			return nil
		default:
			return fmt.Errorf("%s: unsupported unixfs type %s", c, fsn.Type())
		}
	default:
		return fmt.Errorf("%s: unsupported codec %#x", c, c.Prefix().Codec)
	}
}

// createError explains a failure to create name: an existing entry means
// the DAG names it twice.
func (w *treeWriter) createError(c cid.Cid, name string, err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %q appears twice in its directory (%s)", ErrUnsafeName, shorten(name), c)
	}
	return err
}

func (w *treeWriter) file(parent *safefs.Dir, name string, r io.Reader) error {
	f, err := parent.Create(name, 0o644)
	if err != nil {
		return w.createError(cid.Undef, name, err)
	}
	if _, err := io.Copy(progressWriter{f: f, w: w}, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Close()
}

// Open streams the bytes of the file c, fetching blocks over bitswap as the
// reader advances. The root must arrive within the store's timeout; later
// reads are bounded by ctx only. Blocks fetched this way are not pinned and
// GC may collect them afterwards. The caller closes the reader.
func (s *Store) Open(ctx context.Context, c cid.Cid) (io.ReadSeekCloser, error) {
	if s.closed() {
		return nil, fmt.Errorf("content: open %s: %w", c, ErrClosed)
	}
	if err := s.putIfEmpty(ctx, c); err != nil {
		return nil, fmt.Errorf("content: open %s: %w", c, err)
	}
	rctx, kick, stop := idleContext(ctx, s.cfg.timeout)
	nd, err := s.dag.Get(rctx, c)
	kick()
	if err != nil {
		err = s.timeoutError(rctx, err, 0)
		stop()
		return nil, fmt.Errorf("content: open %s: %w", c, err)
	}
	stop()
	switch n := nd.(type) {
	case *merkledag.RawNode:
		return nopCloser{bytes.NewReader(n.RawData())}, nil
	case *merkledag.ProtoNode:
		fsn, err := unixfs.FSNodeFromBytes(n.Data())
		if err != nil {
			return nil, fmt.Errorf("content: open %s: not unixfs: %w", c, err)
		}
		if fsn.IsDir() {
			return nil, fmt.Errorf("content: open %s: %w", c, ErrIsDir)
		}
		r, err := uio.NewDagReader(ctx, n, merkledag.NewSession(ctx, s.dag))
		if err != nil {
			return nil, fmt.Errorf("content: open %s: %w", c, err)
		}
		return r, nil
	default:
		return nil, fmt.Errorf("content: open %s: unsupported codec %#x", c, c.Prefix().Codec)
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
