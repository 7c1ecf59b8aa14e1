package storage

import (
	"log/slog"
	"testing"
)

type item struct {
	N int `json:"n"`
}

// TestPutManyPersists: a batch of entries is written at once and read back
// after the database is reopened.
func TestPutManyPersists(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable[item](db, "items")
	batch := map[string]*item{}
	for i := range 500 {
		batch[string(rune('a'+i%26))+string(rune('A'+i/26))] = &item{N: i}
	}
	if err := tab.PutMany(batch); err != nil {
		t.Fatal(err)
	}
	if err := tab.PutMany(nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := NewTable[item](db, "items").List()
	if err != nil || len(got) != len(batch) {
		t.Fatalf("read back %d of %d entries: %v", len(got), len(batch), err)
	}
	for k, v := range batch {
		g, err := NewTable[item](db, "items").Get(k)
		if err != nil || g.N != v.N {
			t.Fatalf("%s: %v %v", k, g, err)
		}
	}
}
