package p2p

import (
	"context"
	"errors"
	"sync"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// The DHT's own store (provider records and values that other peers put on
// a DHT server) lives in memory, bounded.
const (
	// DefaultDHTStoreRecords bounds the records a DHT server keeps for
	// others.
	DefaultDHTStoreRecords = 200_000
	// DefaultDHTStoreBytes bounds their keys and values together.
	DefaultDHTStoreBytes = 64 << 20
)

// errDHTStoreFull is what a put beyond the bounds gets: the DHT drops the
// record (a provider record), or answers the peer with an error (a value).
var errDHTStoreFull = errors.New("dht store full")

// boundedStore is an in-memory datastore of at most maxRecords entries
// and maxBytes of keys and values: kad-dht's default store grows with
// whatever strangers put on a DHT server until its records expire (48 h).
// A put of a new key beyond either bound fails; replacing a key, deleting
// and the DHT's expiry of old records make room.
type boundedStore struct {
	mu                  sync.Mutex
	m                   *ds.MapDatastore
	size                map[ds.Key]int
	bytes               int
	maxRecords, maxSize int
}

var _ ds.Batching = (*boundedStore)(nil)

func newBoundedStore(maxRecords, maxBytes int) *boundedStore {
	return &boundedStore{m: ds.NewMapDatastore(), size: map[ds.Key]int{}, maxRecords: maxRecords, maxSize: maxBytes}
}

// Put stores value under key if the bounds allow it.
func (s *boundedStore) Put(ctx context.Context, key ds.Key, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(key.String()) + len(value)
	old, had := s.size[key]
	if !had && len(s.size) >= s.maxRecords || s.bytes-old+n > s.maxSize {
		return errDHTStoreFull
	}
	if err := s.m.Put(ctx, key, value); err != nil {
		return err
	}
	s.size[key] = n
	s.bytes += n - old
	return nil
}

// Delete removes key.
func (s *boundedStore) Delete(ctx context.Context, key ds.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.size[key]; ok {
		delete(s.size, key)
		s.bytes -= n
	}
	return s.m.Delete(ctx, key)
}

// Get returns the value under key.
func (s *boundedStore) Get(ctx context.Context, key ds.Key) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Get(ctx, key)
}

// Has says whether key is stored.
func (s *boundedStore) Has(ctx context.Context, key ds.Key) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Has(ctx, key)
}

// GetSize returns the size of the value under key.
func (s *boundedStore) GetSize(ctx context.Context, key ds.Key) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.GetSize(ctx, key)
}

// Query answers from a snapshot taken under the lock.
func (s *boundedStore) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Query(ctx, q)
}

// Batch applies its writes through Put and Delete at Commit.
func (s *boundedStore) Batch(context.Context) (ds.Batch, error) { return ds.NewBasicBatch(s), nil }

// Sync has nothing to do: the store is in memory.
func (s *boundedStore) Sync(context.Context, ds.Key) error { return nil }

// Close has nothing to release.
func (s *boundedStore) Close() error { return nil }
