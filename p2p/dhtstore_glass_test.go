package p2p

import (
	"context"
	"errors"
	"fmt"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// TestDHTStoreBounded: new keys beyond the record or byte bound are
// refused; replacing a key, deleting and batches keep the accounting.
func TestDHTStoreBounded(t *testing.T) {
	ctx := context.Background()
	s := newBoundedStore(3, 1000)
	key := func(i int) ds.Key { return ds.NewKey(fmt.Sprintf("/providers/k%d", i)) }
	for i := range 3 {
		if err := s.Put(ctx, key(i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, key(3), []byte("v")); !errors.Is(err, errDHTStoreFull) {
		t.Fatalf("fourth record: %v, want full", err)
	}
	if err := s.Put(ctx, key(0), []byte("replaced")); err != nil {
		t.Fatalf("replacing a record: %v", err)
	}
	if err := s.Delete(ctx, key(1)); err != nil {
		t.Fatal(err)
	}
	b, _ := s.Batch(ctx)
	b.Put(ctx, key(4), []byte("v"))
	if err := b.Commit(ctx); err != nil {
		t.Fatalf("batch after a delete: %v", err)
	}
	if err := s.Put(ctx, key(5), make([]byte, 10)); !errors.Is(err, errDHTStoreFull) {
		t.Fatalf("record over the count: %v", err)
	}
	res, err := s.Query(ctx, dsq.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := res.Rest()
	if len(all) != 3 || len(s.size) != 3 {
		t.Fatalf("%d records listed, %d counted, want 3", len(all), len(s.size))
	}
	big := newBoundedStore(100, 100)
	if err := big.Put(ctx, key(0), make([]byte, 60)); err != nil {
		t.Fatal(err)
	}
	if err := big.Put(ctx, key(1), make([]byte, 60)); !errors.Is(err, errDHTStoreFull) {
		t.Fatalf("record over the bytes: %v", err)
	}
	if err := big.Put(ctx, key(0), make([]byte, 10)); err != nil || big.bytes != len(key(0).String())+10 {
		t.Fatalf("shrinking a record: %v, %d bytes counted", err, big.bytes)
	}
}
