package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/offload-project/offload/storage"
)

// record is a stored value the size of a small task record.
type record struct {
	ID    string   `json:"id"`
	State string   `json:"state"`
	N     int      `json:"n"`
	Notes []string `json:"notes"`
}

// BenchmarkGroupCommit: 64 writers each update their own key (read, change,
// synced write) as the requestor's task drivers do. The baseline is what
// storage.Table did before the commit queue, one synced Badger transaction
// per write; "table" is Table.Update now. Both run against the same kind of
// database (storage.Open, synced writes) in the same run; each reports CPU
// (user+system of the whole process) and wall time per write, and "table"
// the ratio of its CPU per write to the baseline's.
func BenchmarkGroupCommit(b *testing.B) {
	const writers = 64
	var baseCPU float64
	for _, mode := range []string{"baseline-txn-per-write", "table"} {
		b.Run(mode, func(b *testing.B) {
			db, err := storage.Open(b.TempDir(), quiet)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			tab := storage.NewTable[record](db, "recs")
			for w := range writers {
				if err := tab.Put(fmt.Sprint(w), &record{ID: fmt.Sprint(w), State: "pending", Notes: []string{"a", "b"}}); err != nil {
					b.Fatal(err)
				}
			}
			update := func(k string) error {
				_, err := tab.Update(k, func(r *record) error { r.N++; return nil })
				return err
			}
			if mode == "baseline-txn-per-write" {
				update = func(k string) error {
					return baselineUpdate(db.Badger(), "recs/"+k)
				}
			}
			cpu0 := processCPU()
			t0 := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				n := b.N / writers
				if w < b.N%writers {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						if err := update(fmt.Sprint(w)); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			cpu := float64(processCPU()-cpu0) / float64(b.N)
			b.ReportMetric(cpu/1e3, "cpu-µs/write")
			b.ReportMetric(float64(time.Since(t0))/float64(b.N)/1e3, "wall-µs/write")
			if mode == "baseline-txn-per-write" {
				baseCPU = cpu
			} else if baseCPU > 0 {
				b.ReportMetric(cpu/baseCPU, "cpu-ratio-vs-baseline")
			}
		})
	}
}

// baselineUpdate is one read-change-write in its own synced Badger
// transaction, as storage.Table.Update did before it queued its writes.
func baselineUpdate(bdb *badger.DB, key string) error {
	for {
		err := bdb.Update(func(txn *badger.Txn) error {
			item, err := txn.Get([]byte(key))
			if err != nil {
				return err
			}
			var r record
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return err
			}
			r.N++
			v, err := json.Marshal(&r)
			if err != nil {
				return err
			}
			return txn.Set([]byte(key), v)
		})
		if errors.Is(err, badger.ErrConflict) {
			continue
		}
		return err
	}
}

// processCPU is the user+system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
