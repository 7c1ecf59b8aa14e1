package market

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

// mapExecStore is a minimal ExecStore for tests of one provider's
// bookkeeping.
type mapExecStore struct {
	mu sync.Mutex
	m  map[string]ExecRecord
}

func (s *mapExecStore) Create(k string, r *ExecRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok {
		return errors.New("exists")
	}
	s.m[k] = *r
	return nil
}

func (s *mapExecStore) Get(k string) (*ExecRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[k]
	if !ok {
		return nil, errors.New("not found")
	}
	return &r, nil
}

func (s *mapExecStore) Update(k string, fn func(*ExecRecord) error) (*ExecRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[k]
	if !ok {
		return nil, errors.New("not found")
	}
	if err := fn(&r); err != nil {
		return nil, err
	}
	s.m[k] = r
	return &r, nil
}

func (s *mapExecStore) List() ([]*ExecRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*ExecRecord
	for _, r := range s.m {
		out = append(out, &r)
	}
	return out, nil
}

func (s *mapExecStore) Delete(k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}

// shareRecorder is a content store that records pins released and shares
// made and ended.
type shareRecorder struct {
	fakeContent
	mu       sync.Mutex
	unpinned []string
	shared   map[string]int // "peer root" → live shares
}

func (s *shareRecorder) Unpin(_ context.Context, c string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unpinned = append(s.unpinned, c)
	return nil
}

func (s *shareRecorder) Share(p peer.ID, roots ...string) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range roots {
		s.shared[p.String()+" "+r]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, r := range roots {
				if s.shared[p.String()+" "+r]--; s.shared[p.String()+" "+r] == 0 {
					delete(s.shared, p.String()+" "+r)
				}
			}
		})
	}
}

// TestSettledRecordsArePruned: a delivered execution's outputs are shared
// with its requestor alone until its pins are released, and its record is
// deleted once RecordTTL has passed; records still in the outbox stay.
func TestSettledRecordsArePruned(t *testing.T) {
	requestor := "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
	store := &mapExecStore{m: map[string]ExecRecord{}}
	content := &shareRecorder{shared: map[string]int{}}
	p := &Provider{store: store, log: slog.New(slog.DiscardHandler), shares: map[string]func(){},
		cfg: ProviderConfig{Content: content, OutputsTTL: time.Hour, RecordTTL: 2 * time.Hour}}
	put := func(key string, state ExecState, age time.Duration) *ExecRecord {
		rec := &ExecRecord{Key: key, TaskID: key, Requestor: requestor, State: state, UpdatedAt: time.Now().Add(-age),
			Report: &wire.Report{State: wire.ExecCompleted, Result: &wire.Result{Outputs: "out-" + key,
				Volumes: []wire.VolumeResult{{Name: "v", CID: "vol-" + key}}}}}
		if err := store.Create(key, rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	fresh := put("fresh", ExecDelivered, time.Minute)
	stale := put("stale", ExecDelivered, 90*time.Minute)
	old := put("old", ExecAbandoned, 3*time.Hour)
	put("outbox", ExecDone, 3*time.Hour) // never delivered yet: kept
	for _, rec := range []*ExecRecord{fresh, stale, old} {
		p.shareOutputs(rec)
	}
	if content.shared[requestor+" out-fresh"] != 1 || content.shared[requestor+" vol-fresh"] != 1 {
		t.Fatalf("outputs not shared with the requestor: %v", content.shared)
	}

	p.releasePins() // stale and old: pins released, shares ended
	if slices.Contains(content.unpinned, "out-fresh") || !slices.Contains(content.unpinned, "out-stale") || !slices.Contains(content.unpinned, "vol-old") {
		t.Fatalf("unpinned %v", content.unpinned)
	}
	if got := slices.Sorted(maps.Keys(content.shared)); !slices.Equal(got, []string{requestor + " out-fresh", requestor + " vol-fresh"}) {
		t.Fatalf("shares left: %v", got)
	}
	p.releasePins() // old: released and past RecordTTL → deleted
	keys := slices.Sorted(maps.Keys(store.m))
	if !slices.Equal(keys, []string{"fresh", "outbox", "stale"}) {
		t.Fatalf("records left: %v", keys)
	}
}
