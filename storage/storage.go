// Package storage owns the node's state on disk: one Badger database under
// the node's home holding typed tables (tasks, executions, ...) and, in
// storage/content, the IPFS block layer.
//
// A Table stores JSON values under a key prefix. Update reads a value, lets
// the caller's mutation change it and writes it back only if nobody wrote
// the key in between (else it reads again), so callers can express state
// transitions as conditional writes: the mutation inspects the current
// value and returns an error to refuse the change. Every write is synced to
// disk before the call that made it returns ("persist, then act"); writes
// that wait at the same moment share one transaction and one sync (group
// commit, see commit.go).
package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// ErrNotFound is returned for a key that has no value.
var ErrNotFound = errors.New("not found")

// DB is an open Badger database. Its tables' writes go through one
// committer goroutine (commit.go), stopped by Close.
type DB struct {
	bdb *badger.DB

	// mu guards closed and sending on writes: Close takes it to stop new
	// writes before it closes the queue.
	mu     sync.RWMutex
	closed bool
	writes chan *write
	wg     sync.WaitGroup
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
	db := &DB{bdb: bdb, writes: make(chan *write, queueDepth)}
	db.wg.Add(1)
	go db.commitLoop()
	return db, nil
}

// Close commits the writes already sent, refuses later ones with ErrClosed,
// and flushes and closes the database.
func (db *DB) Close() error {
	db.mu.Lock()
	if !db.closed {
		db.closed = true
		close(db.writes)
	}
	db.mu.Unlock()
	db.wg.Wait()
	if err := db.bdb.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}

// Badger exposes the underlying database for packages that layer their own
// structures on it. Their writes are their own transactions, not part of
// the tables' groups; they must not write under a table's prefix.
func (db *DB) Badger() *badger.DB { return db.bdb }

// Table is a typed collection of JSON values under one key prefix.
type Table[T any] struct {
	db     *DB
	prefix string

	// mu guards written: for each key lately created or updated through
	// this table, the value handed back to the caller and its encoding,
	// so that UpdateHeld from that value need not encode it again. It
	// holds at most maxWritten keys and is emptied when full: a key
	// missing costs one encoding, never a wrong write (the committer
	// compares the encoding with the stored bytes).
	mu      sync.Mutex
	written map[string]writtenValue[T]
}

// writtenValue is a value written under a key and its encoding.
type writtenValue[T any] struct {
	v *T
	b []byte
}

// maxWritten bounds Table.written: four times the 64 tasks in flight of a
// busy node, so that emptying it costs few encodings, while what it keeps
// alive (the values and their encodings, a few KiB a key) stays small.
const maxWritten = 256

// remember notes that v, encoded as b, was written under k.
func (t *Table[T]) remember(k string, v *T, b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.written == nil || len(t.written) >= maxWritten {
		t.written = make(map[string]writtenValue[T], maxWritten)
	}
	t.written[k] = writtenValue[T]{v: v, b: b}
}

// forget drops what remember noted of k.
func (t *Table[T]) forget(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.written, k)
}

// encodingOf returns the encoding of held as written under k: the one
// remember noted when held is the value written last, else encoded now.
func (t *Table[T]) encodingOf(k string, held *T) ([]byte, error) {
	t.mu.Lock()
	w, ok := t.written[k]
	t.mu.Unlock()
	if ok && w.v == held {
		return w.b, nil
	}
	return json.Marshal(held)
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
	return t.decode(k, item)
}

func (t *Table[T]) decode(k string, item *badger.Item) (*T, error) {
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
	if err := t.db.commit(&write{entries: []entry{{key: t.key(k), value: b}}}); err != nil {
		return fmt.Errorf("write %s%s: %w", t.prefix, k, err)
	}
	return nil
}

// PutMany writes every item, in as few synced transactions as their size
// allows (one for a few hundred small records). A large set is not
// atomic: should an error be returned, some items may have been written.
func (t *Table[T]) PutMany(items map[string]*T) error {
	if len(items) == 0 {
		return nil
	}
	var writes []*write
	w := &write{}
	size := 0
	for k, v := range items {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
		}
		e := entry{key: t.key(k), value: b}
		if n := len(e.key) + len(e.value) + entryOverhead; len(w.entries) > 0 && (size+n > groupMaxBytes || len(w.entries) >= groupMaxEntries) {
			writes, w, size = append(writes, w), &write{}, 0
		}
		w.entries = append(w.entries, e)
		size += len(e.key) + len(e.value) + entryOverhead
	}
	writes = append(writes, w)
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = t.db.commit(w)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
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
	if err := t.db.commit(&write{entries: []entry{{key: t.key(k), value: b}}, ifAbsent: true}); err != nil {
		return fmt.Errorf("create %s%s: %w", t.prefix, k, err)
	}
	t.remember(k, v, b)
	return nil
}

// maxUpdateAttempts bounds how often Update reads again because another
// write to the key came in between; each retry means another writer's
// change was committed.
const maxUpdateAttempts = 100

// entries unwraps also, refusing an entry of another database.
func (t *Table[T]) entries(k string, also []Entry) ([]entry, error) {
	extra := make([]entry, 0, len(also))
	for _, a := range also {
		if a.db != t.db {
			return nil, fmt.Errorf("write %s%s: an entry of another database", t.prefix, k)
		}
		extra = append(extra, a.e)
	}
	return extra, nil
}

// UpdateAlso is Update that also writes also (entries of this database's
// tables) in the same transaction: they are written only if the update is.
func (t *Table[T]) UpdateAlso(k string, fn func(*T) error, also ...Entry) (*T, error) {
	extra, err := t.entries(k, also)
	if err != nil {
		return nil, err
	}
	return t.update(k, fn, extra)
}

// Update reads the value under k, lets fn change it and writes it back,
// provided nobody wrote k since it was read; otherwise it reads again and
// calls fn again, so fn may run more than once and must only change the
// value it is given. If fn returns an error nothing is written and the
// error is returned as is. Update returns once the write is synced.
func (t *Table[T]) Update(k string, fn func(*T) error) (*T, error) {
	return t.update(k, fn, nil)
}

// update is Update, writing also in the same transaction.
func (t *Table[T]) update(k string, fn func(*T) error, also []entry) (*T, error) {
	key := t.key(k)
	for attempt := 0; ; attempt++ {
		var v *T
		var version uint64
		err := t.db.bdb.View(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if err != nil {
				return err
			}
			version = item.Version()
			v, err = t.decode(k, item)
			return err
		})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("%s%s: %w", t.prefix, k, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s%s: %w", t.prefix, k, err)
		}
		if err := fn(v); err != nil {
			return nil, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
		}
		err = t.db.commit(&write{entries: append([]entry{{key: key, value: b}}, also...), ifVersion: version})
		if errors.Is(err, errChanged) && attempt+1 < maxUpdateAttempts {
			if attempt >= 3 { // writers of one key in lockstep: spread them
				time.Sleep(time.Duration(rand.IntN(attempt*100)) * time.Microsecond)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write %s%s: %w", t.prefix, k, err)
		}
		t.remember(k, v, b)
		return v, nil
	}
}

// UpdateHeld is Update for a caller that holds the value last written
// under k: held is what Create, Update or UpdateHeld wrote (or Get read),
// not modified since. fn is given a shallow copy of held to change, so it
// must only set fields, never modify what held's fields point to (a slice's
// elements, a pointed-to struct). The copy is written only if the stored
// value still encodes exactly as held does, so the record is not read and
// decoded again; when it does not (another write came in between), this is
// Update: the stored value is read and fn runs on it. held itself is never
// changed. When held is the value a write through this table handed back
// last for k, its encoding is not made again either (see Table.written).
// UpdateHeld returns once the write is synced.
func (t *Table[T]) UpdateHeld(k string, held *T, fn func(*T) error) (*T, error) {
	return t.UpdateHeldAlso(k, held, fn)
}

// Entry is a value encoded for a key of one table (Table.Entry), to be
// written in the transaction of a write to another table of the same
// database (Table.UpdateHeldAlso): both land, synced, or neither does.
type Entry struct {
	db *DB
	e  entry
}

// Entry encodes v under k, to be written with another table's write.
func (t *Table[T]) Entry(k string, v *T) (Entry, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Entry{}, fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
	}
	return Entry{db: t.db, e: entry{key: t.key(k), value: b}}, nil
}

// UpdateHeldAlso is UpdateHeld that also writes also (entries of this
// database's tables) in the same transaction, whichever way the update is
// made: they are written only if the update is.
func (t *Table[T]) UpdateHeldAlso(k string, held *T, fn func(*T) error, also ...Entry) (*T, error) {
	extra, err := t.entries(k, also)
	if err != nil {
		return nil, err
	}
	old, err := t.encodingOf(k, held)
	if err != nil {
		return nil, fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
	}
	v := new(T)
	*v = *held
	if err := fn(v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s%s: %w", t.prefix, k, err)
	}
	err = t.db.commit(&write{entries: append([]entry{{key: t.key(k), value: b}}, extra...), ifValue: old})
	if errors.Is(err, errChanged) {
		return t.update(k, fn, extra)
	}
	if err != nil {
		return nil, fmt.Errorf("write %s%s: %w", t.prefix, k, err)
	}
	t.remember(k, v, b)
	return v, nil
}

// Delete removes k; deleting a missing key is not an error.
func (t *Table[T]) Delete(k string) error {
	t.forget(k)
	if err := t.db.commit(&write{entries: []entry{{key: t.key(k), del: true}}}); err != nil {
		return fmt.Errorf("delete %s%s: %w", t.prefix, k, err)
	}
	return nil
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
