// Package storage owns the node's state on disk: one Badger database under
// the node's home holding typed tables (tasks, executions, ...) and, in
// storage/content, the IPFS block layer.
//
// A Table stores JSON values under a key prefix. Update runs a read, a
// caller's mutation and the write in one Badger transaction, so callers can
// express state transitions as conditional writes: the mutation inspects the
// current value and returns an error to refuse the change. Writes are synced
// to disk before Update returns ("persist, then act").
package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// ErrNotFound is returned for a key that has no value.
var ErrNotFound = errors.New("not found")

// DB is an open Badger database.
type DB struct {
	bdb *badger.DB
}

// Open opens (or creates) the database in dir.
func Open(dir string, log *slog.Logger) (*DB, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		// Task records are small; keep the memory footprint of an idle node low.
		WithMemTableSize(8 << 20).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4)
	if log == nil {
		opts = opts.WithLogger(nil)
	}
	bdb, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", dir, err)
	}
	return &DB{bdb: bdb}, nil
}

// Close flushes and closes the database.
func (db *DB) Close() error {
	if err := db.bdb.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}

// Badger exposes the underlying database for packages that layer their own
// structures on it.
func (db *DB) Badger() *badger.DB { return db.bdb }

// Table is a typed collection of JSON values under one key prefix.
type Table[T any] struct {
	db     *DB
	prefix string
}

// NewTable returns the table named name ("tasks", "executions", ...).
func NewTable[T any](db *DB, name string) *Table[T] {
	return &Table[T]{db: db, prefix: name + "/"}
}

func (t *Table[T]) key(k string) []byte { return []byte(t.prefix + k) }

// Get returns the value under k, or an error wrapping ErrNotFound.
func (t *Table[T]) Get(k string) (*T, error) {
	var out *T
	err := t.db.bdb.View(func(txn *badger.Txn) error {
		v, err := t.get(txn, k)
		out = v
		return err
	})
	return out, err
}

func (t *Table[T]) get(txn *badger.Txn, k string) (*T, error) {
	item, err := txn.Get(t.key(k))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s%s: %w", t.prefix, k, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s%s: %w", t.prefix, k, err)
	}
	v := new(T)
	if err := item.Value(func(b []byte) error { return json.Unmarshal(b, v) }); err != nil {
		return nil, fmt.Errorf("decode %s%s: %w", t.prefix, k, err)
	}
	return v, nil
}

// Put writes v under k, replacing any previous value.
func (t *Table[T]) Put(k string, v *T) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
	}
	if err := t.db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(t.key(k), b) }); err != nil {
		return fmt.Errorf("write %s%s: %w", t.prefix, k, err)
	}
	return nil
}

// PutMany writes every item in one batch: one write to the log (and one
// sync, when the database syncs writes) however many there are.
func (t *Table[T]) PutMany(items map[string]*T) error {
	if len(items) == 0 {
		return nil
	}
	wb := t.db.bdb.NewWriteBatch()
	defer wb.Cancel()
	for k, v := range items {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
		}
		if err := wb.Set(t.key(k), b); err != nil {
			return fmt.Errorf("write %s%s: %w", t.prefix, k, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write %d %s entries: %w", len(items), t.prefix, err)
	}
	return nil
}

// Create writes v under k only if k has no value yet.
func (t *Table[T]) Create(k string, v *T) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
	}
	return t.db.bdb.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get(t.key(k)); err == nil {
			return fmt.Errorf("create %s%s: already exists", t.prefix, k)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("create %s%s: %w", t.prefix, k, err)
		}
		return txn.Set(t.key(k), b)
	})
}

// Update reads the value under k, lets fn change it and writes it back in
// one transaction. If fn returns an error nothing is written and the error
// is returned as is. Update retries on transaction conflicts.
func (t *Table[T]) Update(k string, fn func(*T) error) (*T, error) {
	for attempt := 0; ; attempt++ {
		var out *T
		err := t.db.bdb.Update(func(txn *badger.Txn) error {
			v, err := t.get(txn, k)
			if err != nil {
				return err
			}
			if err := fn(v); err != nil {
				return err
			}
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
			}
			out = v
			return txn.Set(t.key(k), b)
		})
		if errors.Is(err, badger.ErrConflict) && attempt < 10 {
			time.Sleep(time.Millisecond << attempt)
			continue
		}
		return out, err
	}
}

// Delete removes k; deleting a missing key is not an error.
func (t *Table[T]) Delete(k string) error {
	return t.db.bdb.Update(func(txn *badger.Txn) error { return txn.Delete(t.key(k)) })
}

// List returns every value in key order.
func (t *Table[T]) List() ([]*T, error) {
	var out []*T
	err := t.db.bdb.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(t.prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v := new(T)
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, v) }); err != nil {
				return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// badgerLogger routes Badger's logs to slog, keeping only warnings and errors.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error(fmt.Sprintf(f, a...), "sys", "badger") }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn(fmt.Sprintf(f, a...), "sys", "badger") }
func (l badgerLogger) Infof(string, ...any)        {}
func (l badgerLogger) Debugf(string, ...any)       {}
