package content

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultMaxSharedBlocks bounds the block entries all live grants of Share
// hold together (see WithMaxSharedBlocks). One entry costs about 100 bytes
// (the block's multihash as a map key plus its place in the grant's list),
// so the default bounds the grants at about 100 MiB; at 256 KiB chunks it
// covers 256 GiB of content shared at once.
const DefaultMaxSharedBlocks = 1 << 20

// deniedQueue is how many refused requests wait for the background check
// that tells refusals of held blocks from wants of blocks not held; beyond
// it refusals are counted but not checked.
const deniedQueue = 256

// ErrShareLimit is returned by Grant when a grant would take the block
// entries of all live grants over the store's bound (WithMaxSharedBlocks).
// Releasing other grants can help; a retry alone cannot.
var ErrShareLimit = errors.New("share over the limit of shared blocks")

// publicPrefix is the datastore namespace of published roots: one record
// per root, keyed by its CID string, kept only while the root is pinned.
var publicPrefix = ds.NewKey("/offload/public")

func publicKey(c cid.Cid) ds.Key { return publicPrefix.ChildString(c.String()) }

// publicRecord is the value stored under a published root's key.
type publicRecord struct {
	Published time.Time `json:"published"`
}

// decodePublicRecord parses one record of the published-roots namespace as
// read back from disk: the key's last element is the root's CID.
func decodePublicRecord(key string, value []byte) (cid.Cid, publicRecord, error) {
	var rec publicRecord
	// Not ds.RawKey: it panics on keys that are not clean.
	c, err := cid.Decode(key[strings.LastIndexByte(key, '/')+1:])
	if err != nil {
		return cid.Undef, rec, fmt.Errorf("public record %q: %w", shorten(key), err)
	}
	if err := json.Unmarshal(value, &rec); err != nil {
		return cid.Undef, rec, fmt.Errorf("public record %s: %w", c, err)
	}
	return c, rec, nil
}

// access decides which peer may fetch which block. Bitswap asks it for every
// block a peer wants (want-have and want-block alike), so a decision is two
// map lookups under a read lock: no I/O, no DAG walk. Blocks are keyed by
// multihash, as the block store keys them, so a CIDv0 and a CIDv1 of the
// same bytes are one block.
type access struct {
	mu sync.RWMutex
	// peers holds, per peer, how many live grants cover each block.
	peers map[peer.ID]map[string]int32
	// entries is the sum of the lengths of the live grants' block lists.
	entries int
	max     int
	// public holds every locally held block reachable from a published,
	// pinned root; rebuilt by GC, so blocks whose roots were unpinned or
	// collected leave it.
	public map[string]struct{}

	denied     atomic.Uint64
	deniedHeld atomic.Uint64
	// deniedCh carries refused requests to a goroutine that checks, off
	// bitswap's path, whether the refused block is held.
	deniedCh chan denial
}

type denial struct {
	p peer.ID
	c cid.Cid
}

func newAccess(max int) *access {
	return &access{
		peers:    make(map[peer.ID]map[string]int32),
		max:      max,
		public:   make(map[string]struct{}),
		deniedCh: make(chan denial, deniedQueue),
	}
}

// allow is bitswap's peer block request filter.
func (a *access) allow(p peer.ID, c cid.Cid) bool {
	h := c.Hash()
	a.mu.RLock()
	_, ok := a.public[string(h)]
	if !ok {
		_, ok = a.peers[p][string(h)]
	}
	a.mu.RUnlock()
	if ok {
		return true
	}
	a.denied.Add(1)
	select {
	case a.deniedCh <- denial{p, c}:
	default: // the checker is behind: count only
	}
	return false
}

// SharingStats reports the state of access control (see Store.Sharing).
type SharingStats struct {
	// Peers is the number of peers holding at least one grant; SharedBlocks
	// the block entries of all live grants (bounded by WithMaxSharedBlocks).
	Peers, SharedBlocks int
	// PublicBlocks is the number of blocks anyone may fetch.
	PublicBlocks int
	// Denied counts block requests refused since the store opened. Bitswap
	// sends its wants to every connected peer, so most are for blocks this
	// node does not hold. DeniedHeld counts the refusals of blocks this
	// node holds but did not share with the asking peer (checked in the
	// background; under a flood of refusals some go unchecked).
	Denied, DeniedHeld uint64
}

// Sharing returns counters of access control.
func (s *Store) Sharing() SharingStats {
	a := s.access
	a.mu.RLock()
	st := SharingStats{Peers: len(a.peers), SharedBlocks: a.entries, PublicBlocks: len(a.public)}
	a.mu.RUnlock()
	st.Denied = a.denied.Load()
	st.DeniedHeld = a.deniedHeld.Load()
	return st
}

// checkDenied logs and counts refusals of held blocks until the store
// closes. A refusal is a remote peer's doing, so it is logged at Debug.
func (s *Store) checkDenied() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case d := <-s.access.deniedCh:
			held, err := s.bstore.Has(s.ctx, d.c)
			if err != nil || !held {
				continue
			}
			s.access.deniedHeld.Add(1)
			s.log.Debug("refused a block: not shared with this peer and not published", "peer", d.p, "cid", d.c)
		}
	}
}

// Share lets peer p fetch every locally held block of roots until release
// is called; see Grant. It never fails: a grant Grant refuses (over the
// limit, a root that cannot be read) is logged at Warn and the returned
// release does nothing, so p is served nothing that is not public.
func (s *Store) Share(p peer.ID, roots ...cid.Cid) (release func()) {
	rel, err := s.Grant(s.ctx, p, roots...)
	if err != nil {
		s.log.Warn("share refused", "peer", p, "roots", len(roots), "err", err)
		return func() {}
	}
	return rel
}

// Grant walks the locally held blocks of each root once and lets peer p
// fetch them over bitswap until release is called. Content is private by
// default: bitswap serves a block only to a peer holding a grant for it, or
// to anyone once it is published (Publish, AddOptions.Public).
//
// Only blocks held when Grant runs are covered; blocks fetched or added
// later are not, even under a shared root. Grants nest: each is counted per
// block, and a block stays fetchable by p while any live grant covers it.
// Release is idempotent and safe to call from any goroutine. Wants that p
// sent before release and that bitswap already queued may still be
// answered.
//
// Memory is bounded: the block entries of all live grants together stay at
// most the store's limit (WithMaxSharedBlocks, DefaultMaxSharedBlocks); a
// grant that would pass it fails with ErrShareLimit and grants nothing.
// Sharing with the store's own peer grants nothing and succeeds.
func (s *Store) Grant(ctx context.Context, p peer.ID, roots ...cid.Cid) (release func(), err error) {
	if p == s.host.ID() || len(roots) == 0 {
		return func() {}, nil
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.closed() {
		return nil, fmt.Errorf("content: share with %s: %w", p, ErrClosed)
	}
	a := s.access
	set := make(map[string]struct{})
	var list []string
	for _, root := range roots {
		err := s.walkLocal(ctx, root, func(c cid.Cid, _ ipld.Node, _ int) error {
			h := string(c.Hash())
			if _, ok := set[h]; ok {
				return nil
			}
			set[h] = struct{}{}
			list = append(list, h)
			a.mu.RLock()
			over := a.entries+len(list) > a.max
			a.mu.RUnlock()
			if over {
				return fmt.Errorf("%w: %d blocks shared, at most %d", ErrShareLimit, a.entries, a.max)
			}
			return nil
		}, nil)
		if err != nil {
			return nil, fmt.Errorf("content: share %s with %s: %w", root, p, err)
		}
	}
	set = nil
	a.mu.Lock()
	if a.entries+len(list) > a.max {
		n := a.entries
		a.mu.Unlock()
		return nil, fmt.Errorf("content: share with %s: %w: %d blocks shared, %d more asked, at most %d", p, ErrShareLimit, n, len(list), a.max)
	}
	m := a.peers[p]
	if m == nil {
		m = make(map[string]int32)
		a.peers[p] = m
	}
	for _, h := range list {
		m[h]++
	}
	a.entries += len(list)
	a.mu.Unlock()
	s.log.Debug("shared", "peer", p, "roots", len(roots), "blocks", len(list))

	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			m := a.peers[p]
			for _, h := range list {
				if m[h] <= 1 {
					delete(m, h)
				} else {
					m[h]--
				}
			}
			if len(m) == 0 {
				delete(a.peers, p)
			}
			a.entries -= len(list)
			list = nil
		})
	}, nil
}

// Publish makes root public: every block of its DAG is served to any peer,
// and root is announced through the content router. The content must be
// held completely (ErrNotLocal otherwise). Publish pins root (under the
// name "published" when it was not pinned yet), because serving content
// means keeping it; the mark is persistent and lasts while the pin does:
// Unpin removes it, and GC drops the blocks of roots no longer published
// from the public set. A block that is both part of a private DAG and of a
// published one is public.
func (s *Store) Publish(ctx context.Context, root cid.Cid) error {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.closed() {
		return fmt.Errorf("content: publish %s: %w", root, ErrClosed)
	}
	pinned, err := s.ds.Has(ctx, pinKey(root))
	if err != nil {
		return fmt.Errorf("content: publish %s: %w", root, err)
	}
	if err := s.requireComplete(ctx, root); err != nil {
		return fmt.Errorf("content: publish %s: %w", root, err)
	}
	if !pinned {
		if err := s.putPin(ctx, root, "published"); err != nil {
			return fmt.Errorf("content: publish: %w", err)
		}
	}
	if err := s.publish(ctx, root); err != nil {
		return fmt.Errorf("content: publish %s: %w", root, err)
	}
	return nil
}

// requireComplete fails with ErrNotLocal unless every block of root is held.
func (s *Store) requireComplete(ctx context.Context, root cid.Cid) error {
	held, missing := 0, 0
	err := s.walkLocal(ctx, root, func(cid.Cid, ipld.Node, int) error { held++; return nil },
		func(*ipld.Link) { missing++ })
	if err != nil {
		return err
	}
	if missing > 0 || held == 0 {
		return fmt.Errorf("%w (%d blocks held, %d known missing; fetch it first)", ErrNotLocal, held, missing)
	}
	return nil
}

// publish records root as public, adds its held blocks to the public set
// and announces it. Callers hold gcMu for reading and have pinned root,
// whose DAG is held completely.
func (s *Store) publish(ctx context.Context, root cid.Cid) error {
	b, err := json.Marshal(publicRecord{Published: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := s.ds.Put(ctx, publicKey(root), b); err != nil {
		return err
	}
	blocks, err := s.blocksOf(ctx, root)
	if err != nil {
		return err
	}
	s.access.mu.Lock()
	for _, h := range blocks {
		s.access.public[h] = struct{}{}
	}
	s.access.mu.Unlock()
	s.log.Debug("published", "cid", root, "blocks", len(blocks))
	s.provide(root)
	return nil
}

// blocksOf lists the multihashes of root's locally held blocks.
func (s *Store) blocksOf(ctx context.Context, root cid.Cid) ([]string, error) {
	var out []string
	err := s.walkLocal(ctx, root, func(c cid.Cid, _ ipld.Node, _ int) error {
		out = append(out, string(c.Hash()))
		return nil
	}, nil)
	return out, err
}

// unpublish deletes root's public record; its blocks leave the public set
// at the next GC (Node.Remove runs one right after Unpin). Callers hold
// gcMu.
func (s *Store) unpublish(ctx context.Context, root cid.Cid) error {
	if err := s.ds.Delete(ctx, publicKey(root)); err != nil && !errors.Is(err, ds.ErrNotFound) {
		return err
	}
	return nil
}

// IsPublished reports whether root carries a public mark.
func (s *Store) IsPublished(ctx context.Context, root cid.Cid) (bool, error) {
	if s.closed() {
		return false, fmt.Errorf("content: is published %s: %w", root, ErrClosed)
	}
	ok, err := s.ds.Has(ctx, publicKey(root))
	if err != nil {
		return false, fmt.Errorf("content: is published %s: %w", root, err)
	}
	return ok, nil
}

// publishedRoots lists the roots with a public mark. Records of roots that
// are no longer pinned (a crash between Unpin's two deletes) are deleted
// and left out, so a stale mark does not outlive its content; so are
// records that do not decode.
func (s *Store) publishedRoots(ctx context.Context) ([]cid.Cid, error) {
	res, err := s.ds.Query(ctx, query.Query{Prefix: publicPrefix.String()})
	if err != nil {
		return nil, err
	}
	var roots []cid.Cid
	var stale []ds.Key
	for e := range res.Next() {
		if e.Error != nil {
			res.Close()
			return nil, e.Error
		}
		c, _, err := decodePublicRecord(e.Key, e.Value)
		if err != nil {
			s.log.Warn("dropping unreadable public record", "key", e.Key, "err", err)
			stale = append(stale, ds.NewKey(e.Key))
			continue
		}
		roots = append(roots, c)
	}
	res.Close()
	kept := roots[:0]
	for _, c := range roots {
		pinned, err := s.ds.Has(ctx, pinKey(c))
		if err != nil {
			return nil, err
		}
		if !pinned {
			stale = append(stale, publicKey(c))
			continue
		}
		kept = append(kept, c)
	}
	for _, k := range stale {
		if err := s.ds.Delete(ctx, k); err != nil && !errors.Is(err, ds.ErrNotFound) {
			return nil, err
		}
	}
	return kept, nil
}

// loadPublic rebuilds the public set from the persistent marks when the
// store opens, and announces the published roots again (provider records
// expire). It walks every published DAG once.
func (s *Store) loadPublic(ctx context.Context) error {
	roots, err := s.publishedRoots(ctx)
	if err != nil {
		return fmt.Errorf("load published roots: %w", err)
	}
	public := make(map[string]struct{})
	for _, r := range roots {
		err := s.walkLocal(ctx, r, func(c cid.Cid, _ ipld.Node, _ int) error {
			public[string(c.Hash())] = struct{}{}
			return nil
		}, nil)
		if err != nil {
			return fmt.Errorf("load published root %s: %w", r, err)
		}
	}
	s.access.mu.Lock()
	s.access.public = public
	s.access.mu.Unlock()
	for _, r := range roots {
		s.provide(r)
	}
	if len(roots) > 0 {
		s.log.Debug("published content loaded", "roots", len(roots), "blocks", len(public))
	}
	return nil
}
