package content

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
)

// pinPrefix is the datastore namespace of the pin set; blocks live under
// /blocks in the same datastore.
var pinPrefix = ds.NewKey("/offload/pins")

// Pin is one recursive pin: Root and every block reachable from it are kept
// by GC.
type Pin struct {
	Root    cid.Cid   `json:"-"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

func pinKey(c cid.Cid) ds.Key {
	// Keyed by the CID string as given: a v0 and a v1 CID of the same root
	// are two pins.
	return pinPrefix.ChildString(c.String())
}

// putPin records a pin; callers hold gcMu (read or write).
func (s *Store) putPin(ctx context.Context, c cid.Cid, name string) error {
	b, err := json.Marshal(Pin{Name: name, Created: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("pin %s: %w", c, err)
	}
	if err := s.ds.Put(ctx, pinKey(c), b); err != nil {
		return fmt.Errorf("pin %s: %w", c, err)
	}
	return nil
}

// Pin pins c recursively under name. The content must already be held
// completely (use Fetch with Pin to fetch and pin in one go); pinning again
// renames the pin.
func (s *Store) Pin(ctx context.Context, c cid.Cid, name string) error {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.closed() {
		return fmt.Errorf("content: pin %s: %w", c, ErrClosed)
	}
	held, missing := 0, 0
	err := s.walkLocal(ctx, c, func(cid.Cid, ipld.Node, int) error { held++; return nil },
		func(*ipld.Link) { missing++ })
	if err != nil {
		return fmt.Errorf("content: pin %s: %w", c, err)
	}
	if missing > 0 {
		return fmt.Errorf("content: pin %s: %w (%d blocks held, %d known missing; fetch it first)", c, ErrNotLocal, held, missing)
	}
	if err := s.putPin(ctx, c, name); err != nil {
		return fmt.Errorf("content: %w", err)
	}
	return nil
}

// Unpin removes the pin of c and its public mark, if any; its blocks go at
// the next GC unless another pin reaches them, and stop being public at the
// next GC unless another published root reaches them. Unpinning content
// that is not pinned is not an error.
func (s *Store) Unpin(ctx context.Context, c cid.Cid) error {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.closed() {
		return fmt.Errorf("content: unpin %s: %w", c, ErrClosed)
	}
	if err := s.unpublish(ctx, c); err != nil {
		return fmt.Errorf("content: unpin %s: %w", c, err)
	}
	if err := s.ds.Delete(ctx, pinKey(c)); err != nil && !errors.Is(err, ds.ErrNotFound) {
		return fmt.Errorf("content: unpin %s: %w", c, err)
	}
	return nil
}

// PinOf returns c's pin, and whether c is pinned, with one read (Pins
// lists them all).
func (s *Store) PinOf(ctx context.Context, c cid.Cid) (Pin, bool, error) {
	if s.closed() {
		return Pin{}, false, fmt.Errorf("content: pin of %s: %w", c, ErrClosed)
	}
	b, err := s.ds.Get(ctx, pinKey(c))
	if errors.Is(err, ds.ErrNotFound) {
		return Pin{}, false, nil
	}
	if err != nil {
		return Pin{}, false, fmt.Errorf("content: pin of %s: %w", c, err)
	}
	var p Pin
	if err := json.Unmarshal(b, &p); err != nil {
		return Pin{}, false, fmt.Errorf("content: pin of %s: %w", c, err)
	}
	p.Root = c
	return p, true, nil
}

// Pins lists the pin set, in key order.
func (s *Store) Pins(ctx context.Context) ([]Pin, error) {
	if s.closed() {
		return nil, fmt.Errorf("content: pins: %w", ErrClosed)
	}
	res, err := s.ds.Query(ctx, query.Query{Prefix: pinPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("content: pins: %w", err)
	}
	defer res.Close()
	var pins []Pin
	for e := range res.Next() {
		if e.Error != nil {
			return nil, fmt.Errorf("content: pins: %w", e.Error)
		}
		k := ds.RawKey(e.Key)
		c, err := cid.Decode(k.BaseNamespace())
		if err != nil {
			return nil, fmt.Errorf("content: pins: bad key %s: %w", e.Key, err)
		}
		var p Pin
		if err := json.Unmarshal(e.Value, &p); err != nil {
			return nil, fmt.Errorf("content: pins: %s: %w", c, err)
		}
		p.Root = c
		pins = append(pins, p)
	}
	return pins, nil
}

// GC deletes every block not reachable from a pin and returns how many it
// removed. It waits for adds and fetches in progress and blocks new ones
// while it runs. Blocks of a pinned DAG that are missing locally are
// skipped, not an error. It also rebuilds the set of public blocks from the
// published roots that are still pinned, so marks of unpinned roots and of
// collected blocks do not stay in memory.
func (s *Store) GC(ctx context.Context) (removed int, err error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	return s.gcLocked(ctx)
}

// ErrBusy is returned by TryGC when adds or fetches are in progress.
var ErrBusy = errors.New("content store busy")

// TryGC is GC when no add or fetch is in progress, and ErrBusy at once
// otherwise: a periodic collection never waits behind a slow fetch (a
// peer that drips blocks) while new fetches wait behind it.
func (s *Store) TryGC(ctx context.Context) (removed int, err error) {
	if !s.gcMu.TryLock() {
		return 0, fmt.Errorf("content: gc: %w", ErrBusy)
	}
	defer s.gcMu.Unlock()
	return s.gcLocked(ctx)
}

// gcLocked is GC; the caller holds gcMu for writing.
func (s *Store) gcLocked(ctx context.Context) (removed int, err error) {
	if s.closed() {
		return 0, fmt.Errorf("content: gc: %w", ErrClosed)
	}
	pins, err := s.Pins(ctx)
	if err != nil {
		return 0, fmt.Errorf("content: gc: %w", err)
	}
	published, err := s.publishedRoots(ctx)
	if err != nil {
		return 0, fmt.Errorf("content: gc: published roots: %w", err)
	}
	isPublic := make(map[cid.Cid]bool, len(published))
	for _, c := range published {
		isPublic[c] = true
	}
	marked := make(map[string]struct{})
	public := make(map[string]struct{})
	for _, p := range pins {
		pub := isPublic[p.Root]
		err := s.walkLocal(ctx, p.Root, func(c cid.Cid, _ ipld.Node, _ int) error {
			marked[string(c.Hash())] = struct{}{}
			if pub {
				public[string(c.Hash())] = struct{}{}
			}
			return nil
		}, nil)
		if err != nil {
			return 0, fmt.Errorf("content: gc: mark %s: %w", p.Root, err)
		}
	}
	s.access.mu.Lock()
	s.access.public = public
	s.access.mu.Unlock()
	keys, err := s.bstore.AllKeysChan(ctx)
	if err != nil {
		return 0, fmt.Errorf("content: gc: list blocks: %w", err)
	}
	var sweep []cid.Cid
	for k := range keys {
		if _, ok := marked[string(k.Hash())]; !ok {
			sweep = append(sweep, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("content: gc: %w", err)
	}
	for _, k := range sweep {
		if err := s.bstore.DeleteBlock(ctx, k); err != nil {
			return removed, fmt.Errorf("content: gc: delete %s: %w", k, err)
		}
		removed++
	}
	s.log.Debug("gc done", "pins", len(pins), "kept", len(marked), "removed", removed)
	return removed, nil
}

// walkLocal visits every locally held node reachable from root once (by
// multihash), depth first, with its block size. Raw blocks have no links and
// are not read (nd is nil for them). missing, when set, is called for each
// link whose target is not held.
func (s *Store) walkLocal(ctx context.Context, root cid.Cid, visit func(c cid.Cid, nd ipld.Node, size int) error, missing func(*ipld.Link)) error {
	seen := make(map[string]struct{})
	var walk func(c cid.Cid, l *ipld.Link) error
	walk = func(c cid.Cid, l *ipld.Link) error {
		if _, ok := seen[string(c.Hash())]; ok {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.Prefix().Codec == cid.Raw {
			size, err := s.bstore.GetSize(ctx, c)
			if err != nil {
				if ipld.IsNotFound(err) {
					if missing != nil {
						if l == nil {
							l = &ipld.Link{Cid: c}
						}
						missing(l)
					}
					return nil
				}
				return err
			}
			seen[string(c.Hash())] = struct{}{}
			return visit(c, nil, size)
		}
		nd, err := s.offline.Get(ctx, c)
		if err != nil {
			if ipld.IsNotFound(err) {
				if missing != nil {
					if l == nil {
						l = &ipld.Link{Cid: c}
					}
					missing(l)
				}
				return nil
			}
			return err
		}
		seen[string(c.Hash())] = struct{}{}
		if err := visit(c, nd, len(nd.RawData())); err != nil {
			return err
		}
		for _, l := range nd.Links() {
			if err := walk(l.Cid, l); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root, nil)
}
