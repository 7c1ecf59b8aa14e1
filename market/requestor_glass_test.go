package market

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

// readsStore is a TaskStore that copies records through JSON, counts its
// reads, and can hold one read until the test lets it go.
type readsStore struct {
	mu    sync.Mutex
	recs  map[string][]byte
	reads int
	// gate, when set, is where the next Get waits after reading (it
	// signals read first).
	gate, read chan struct{}
}

func (s *readsStore) put(t *Task) {
	b, _ := json.Marshal(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[t.ID] = b
}

func (s *readsStore) Create(id string, t *Task) error { s.put(t); return nil }

func (s *readsStore) Get(id string) (*Task, error) {
	s.mu.Lock()
	b, ok := s.recs[id]
	s.reads++
	gate, read := s.gate, s.read
	s.gate = nil
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s not found", id)
	}
	t := new(Task)
	if err := json.Unmarshal(b, t); err != nil {
		return nil, err
	}
	if gate != nil {
		read <- struct{}{}
		<-gate
	}
	return t, nil
}

func (s *readsStore) Update(string, func(*Task) error) (*Task, error) {
	panic("not used")
}

func (s *readsStore) List() ([]*Task, error) { panic("not used") }

func (s *readsStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// TestDriverSnapshot: while a driver works on a task, reads are answered
// from the snapshot of the last write, never an older one, and a read
// begun under an earlier driver cannot put back a record older than a
// write made between the two drivers.
func TestDriverSnapshot(t *testing.T) {
	s := &readsStore{recs: map[string][]byte{}}
	r := &Requestor{store: s, drivers: map[string]*driven{}, watchers: map[string]map[*watcher]struct{}{}}
	rev := func(n int64) *Task { return &Task{ID: "a", State: StatePending, Revision: n} }
	s.put(rev(1))
	load := func() int64 {
		t.Helper()
		got, err := r.load("a")
		if err != nil {
			t.Fatal(err)
		}
		return got.Revision
	}

	// No driver: every read goes to the store.
	load()
	load()
	if n := s.count(); n != 2 {
		t.Fatalf("reads without a driver = %d, want 2", n)
	}

	// A driver: the first read is kept, later ones are answered from it.
	r.drivers["a"] = &driven{}
	if got := load(); got != 1 || s.count() != 3 {
		t.Fatalf("first read under a driver: revision %d, %d reads", got, s.count())
	}
	if load(); s.count() != 3 {
		t.Fatalf("second read under a driver went to the store")
	}
	// Writes are held through notify; a late notify of an older write
	// does not replace a newer one.
	s.put(rev(3))
	r.notify(rev(3))
	r.notify(rev(2))
	if got := load(); got != 3 || s.count() != 3 {
		t.Fatalf("after writes 3 and 2: revision %d, %d reads; want 3 from the snapshot", got, s.count())
	}

	// A read begun under this driver finishes after the driver ended, a
	// write (not held: no driver) and a new driver came in between: the
	// new driver must not get the older record it read.
	delete(r.drivers, "a")
	r.drivers["a"] = &driven{} // the old driver's snapshot is gone: the next read goes to the store
	s.mu.Lock()
	s.gate, s.read = make(chan struct{}), make(chan struct{})
	gate, read := s.gate, s.read
	s.mu.Unlock()
	done := make(chan int64)
	go func() {
		got, _ := r.load("a")
		done <- got.Revision
	}()
	<-read // it read revision 3
	delete(r.drivers, "a")
	s.put(rev(4))
	r.notify(rev(4))
	r.drivers["a"] = &driven{}
	close(gate)
	if got := <-done; got != 3 {
		t.Fatalf("the slow read returned revision %d, want the 3 it read", got)
	}
	if got := load(); got != 4 {
		t.Fatalf("new driver's read: revision %d, want 4 (the slow read of 3 must not be held)", got)
	}
}
