package storage

import (
	"bytes"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// Group commit. Badger syncs its write-ahead log once per transaction it
// commits (memTable.SyncWAL in writeToLSM, for every request of a batch), so
// N concurrent writers cost N syncs however Badger batches them. Tables
// therefore hand their writes to one goroutine, the committer, which puts
// every write waiting at that moment into one Badger transaction and
// commits it: one sync for the group. Each writer still returns only after
// the transaction holding its write is committed and synced.
//
// A read-modify-write (Table.Update, Table.Create) reads in its own
// read-only transaction and sends the new value with a precondition: the
// key is still at the version it read (or still absent). Table.UpdateHeld
// reads nothing: its precondition is that the key still holds the bytes
// of the value its caller holds. The committer
// checks the precondition inside the group's transaction, and also refuses
// a second conditional write to a key already written earlier in the same
// group; a refused write is left out of the group, and Update reads again.

const (
	// groupMaxBytes and groupMaxEntries bound one group's transaction, well
	// under Badger's own limits for a transaction (15 % of the memtable
	// size, Open's 8 MiB here); a write above them goes alone.
	groupMaxBytes   = 256 << 10
	groupMaxEntries = 1000
	// entryOverhead is what each entry is counted for beyond its key and
	// value when sizing a group.
	entryOverhead = 64
	// queueDepth is how many writes may wait for the committer before
	// writers block.
	queueDepth = 1024
)

// ErrClosed is returned for a write sent after the database was closed.
var ErrClosed = errors.New("database closed")

// errChanged refuses a conditional write: the key changed since it was
// read (or exists, for a create). Table.Update reads again.
var errChanged = errors.New("changed since read")

// errExists refuses a create: the key has a value.
var errExists = errors.New("already exists")

// entry is one key to set, or to delete when del is true.
type entry struct {
	key   []byte
	value []byte
	del   bool
}

// write is one caller's unit of work for the committer: its entries are
// committed together or not at all.
type write struct {
	entries []entry
	// ifVersion, when non-zero, requires entries[0].key to still be at
	// that version; ifValue, when non-nil, requires it to still hold
	// exactly those bytes; ifAbsent requires it to have no value.
	ifVersion uint64
	ifValue   []byte
	ifAbsent  bool

	err  error
	done chan struct{}
}

func (w *write) size() int {
	n := 0
	for _, e := range w.entries {
		n += len(e.key) + len(e.value) + entryOverhead
	}
	return n
}

// commit sends w to the committer and waits until it is durable or refused.
func (db *DB) commit(w *write) error {
	w.done = make(chan struct{})
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	db.writes <- w
	db.mu.RUnlock()
	<-w.done
	return w.err
}

// commitLoop is the committer: it takes every write waiting and commits
// them as groups until the queue is closed and drained.
func (db *DB) commitLoop() {
	defer db.wg.Done()
	var group []*write
	for w := range db.writes {
		group = append(group[:0], w)
	more:
		for len(group) < groupMaxEntries {
			select {
			case w, ok := <-db.writes:
				if !ok {
					break more
				}
				group = append(group, w)
			default:
				break more
			}
		}
		db.commitGroup(group)
		clear(group)
	}
}

// commitGroup commits the writes of group in as few transactions as the
// size bounds allow, and resolves every write.
func (db *DB) commitGroup(group []*write) {
	for len(group) > 0 {
		n, bytes, entries := 0, 0, 0
		for n < len(group) {
			s, e := group[n].size(), len(group[n].entries)
			if n > 0 && (bytes+s > groupMaxBytes || entries+e > groupMaxEntries) {
				break
			}
			bytes, entries, n = bytes+s, entries+e, n+1
		}
		db.commitTxn(group[:n])
		group = group[n:]
	}
}

// commitTxn commits the writes of part in one transaction and resolves
// them. Should Badger refuse the transaction as too big after all, each
// write is committed alone.
func (db *DB) commitTxn(part []*write) {
	for attempt := 0; ; attempt++ {
		for _, w := range part {
			w.err = nil
		}
		txn := db.bdb.NewTransaction(true)
		written := make(map[string]bool, len(part))
		var in []*write
		var applyErr error
		for _, w := range part {
			if err := check(txn, w, written); err != nil {
				w.err = err
				continue
			}
			if applyErr = apply(txn, w); applyErr != nil {
				break
			}
			for _, e := range w.entries {
				written[string(e.key)] = true
			}
			in = append(in, w)
		}
		if applyErr != nil {
			txn.Discard()
			if len(part) > 1 && errors.Is(applyErr, badger.ErrTxnTooBig) {
				for _, w := range part {
					db.commitTxn([]*write{w})
				}
				return
			}
			resolve(part, applyErr)
			return
		}
		err := txn.Commit()
		if errors.Is(err, badger.ErrConflict) && attempt < 3 {
			// Only another user of the Badger handle writing these keys
			// can cause this: check and apply again on a fresh view.
			continue
		}
		if err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
		for _, w := range in {
			w.err = err
		}
		for _, w := range part {
			close(w.done)
		}
		return
	}
}

// check tests w's precondition inside txn; written holds the keys written
// earlier in the same transaction.
func check(txn *badger.Txn, w *write, written map[string]bool) error {
	if w.ifVersion == 0 && w.ifValue == nil && !w.ifAbsent {
		return nil
	}
	key := w.entries[0].key
	if written[string(key)] {
		if w.ifAbsent {
			return errExists
		}
		return errChanged
	}
	item, err := txn.Get(key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		if w.ifAbsent {
			return nil
		}
		return errChanged
	case err != nil:
		return fmt.Errorf("read %s: %w", key, err)
	case w.ifAbsent:
		return errExists
	case w.ifVersion != 0 && item.Version() != w.ifVersion:
		return errChanged
	case w.ifValue != nil:
		same := false
		if err := item.Value(func(b []byte) error { same = bytes.Equal(b, w.ifValue); return nil }); err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		if !same {
			return errChanged
		}
	}
	return nil
}

// apply adds w's entries to txn.
func apply(txn *badger.Txn, w *write) error {
	for _, e := range w.entries {
		var err error
		if e.del {
			err = txn.Delete(e.key)
		} else {
			err = txn.Set(e.key, e.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// resolve fails every write of part not already refused with err.
func resolve(part []*write, err error) {
	for _, w := range part {
		if w.err == nil {
			w.err = err
		}
		close(w.done)
	}
}
