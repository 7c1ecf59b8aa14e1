package storage

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openTest(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestConcurrentUpdatesOfOneKey: writers racing on one key each see their
// change applied exactly once (a write refused inside a group is read
// again), and writers of distinct keys all land.
func TestConcurrentUpdatesOfOneKey(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer db.Close()
	tab := NewTable[item](db, "items")
	if err := tab.Put("shared", &item{}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for w := range writers {
		own := fmt.Sprint("own", w)
		if err := tab.Create(own, &item{}); err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := tab.Update("shared", func(v *item) error { v.N++; return nil }); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range each {
				if _, err := tab.Update(own, func(v *item) error { v.N++; return nil }); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if v, err := tab.Get("shared"); err != nil || v.N != writers*each {
		t.Fatalf("shared counter %v, want %d: %v", v, writers*each, err)
	}
	for w := range writers {
		if v, err := tab.Get(fmt.Sprint("own", w)); err != nil || v.N != each {
			t.Fatalf("own%d counter %v, want %d: %v", w, v, each, err)
		}
	}
}

// TestCreateDeleteAndRefusals: Create refuses an existing key (also when
// two creates race), a refused mutation writes nothing, Update of a missing
// key is ErrNotFound, deleting a missing key is no error, and writes after
// Close are refused with ErrClosed.
func TestCreateDeleteAndRefusals(t *testing.T) {
	db := openTest(t, t.TempDir())
	tab := NewTable[item](db, "items")
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tab.Create("k", &item{N: 1}); err == nil {
				mu.Lock()
				created++
				mu.Unlock()
			} else if !strings.Contains(err.Error(), "already exists") {
				t.Errorf("create: %v", err)
			}
		}()
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("%d of 8 racing creates succeeded, want 1", created)
	}
	refuse := errors.New("no")
	if _, err := tab.Update("k", func(v *item) error { v.N = 99; return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("refused update returned %v", err)
	}
	if v, _ := tab.Get("k"); v == nil || v.N != 1 {
		t.Fatalf("a refused update wrote %v", v)
	}
	if _, err := tab.Update("missing", func(*item) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing key: %v", err)
	}
	if err := tab.Delete("k"); err != nil {
		t.Fatal(err)
	}
	if err := tab.Delete("k"); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Get("k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tab.Put("k", &item{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}
}

// TestPutManyLargerThanAGroup: a set larger than one group's transaction
// is split and written whole.
func TestPutManyLargerThanAGroup(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer db.Close()
	tab := NewTable[struct{ S string }](db, "big")
	items := map[string]*struct{ S string }{}
	for i := range 3000 {
		items[fmt.Sprint(i)] = &struct{ S string }{S: strings.Repeat("x", 300)}
	}
	if err := tab.PutMany(items); err != nil {
		t.Fatal(err)
	}
	got, err := tab.List()
	if err != nil || len(got) != len(items) {
		t.Fatalf("listed %d of %d: %v", len(got), len(items), err)
	}
}

// crashChildEnv makes the test binary a writer that TestAcknowledgedWritesSurviveKill kills.
const crashChildEnv = "OFFLOAD_STORAGE_CRASH_CHILD"

// TestAcknowledgedWritesSurviveKill: a process writes through many
// concurrent writers and prints each write once its call returned; it is
// killed with SIGKILL mid-stream, and every write it acknowledged is in the
// database when it is opened again.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcknowledgedWritesSurviveKill$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{} // key -> highest acknowledged value
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 2000 {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(v)
		acked[k] = max(acked[k], n)
		if len(acked) == 200 {
			// Enough acknowledged: kill it while it writes.
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	_ = cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("the writer acknowledged %d keys before it died", len(acked))
	}
	db := openTest(t, dir)
	defer db.Close()
	tab := NewTable[item](db, "crash")
	for k, n := range acked {
		v, err := tab.Get(k)
		if err != nil {
			t.Fatalf("acknowledged %s=%d lost: %v", k, n, err)
		}
		if v.N < n {
			t.Fatalf("acknowledged %s=%d, read back %d", k, n, v.N)
		}
	}
	t.Logf("%d acknowledged keys read back after SIGKILL", len(acked))
}

// crashChild writes until killed: 32 writers, each creating keys and
// updating them, printing key=value after each acknowledged write.
func crashChild(dir string) {
	db, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tab := NewTable[item](db, "crash")
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	ack := func(k string, n int) {
		mu.Lock()
		fmt.Fprintf(w, "%s=%d\n", k, n)
		w.Flush()
		mu.Unlock()
	}
	for g := range 32 {
		go func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("g%d-%d", g, i)
				if err := tab.Create(k, &item{N: 1}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				ack(k, 1)
				v, err := tab.Update(k, func(v *item) error { v.N++; return nil })
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				ack(k, v.N)
			}
		}()
	}
	time.Sleep(time.Minute)
	os.Exit(2)
}

// TestUpdateHeld: an update from the value the caller holds is written
// without a read when the key still holds it; when another write came in
// between, the stored value is read and the mutation runs on it (no write
// is lost); a refused mutation writes nothing; held is never changed; a
// missing key is ErrNotFound; racing held updates each land exactly once.
func TestUpdateHeld(t *testing.T) {
	db := openTest(t, t.TempDir())
	tab := NewTable[item](db, "items")
	held := &item{N: 1}
	if err := tab.Create("k", held); err != nil {
		t.Fatal(err)
	}
	v, err := tab.UpdateHeld("k", held, func(v *item) error { v.N += 10; return nil })
	if err != nil || v.N != 11 || held.N != 1 {
		t.Fatalf("held update: %v %v, held %v", v, err, held)
	}
	// Another write comes in between: the stale copy is not written over it.
	if _, err := tab.Update("k", func(v *item) error { v.N = 100; return nil }); err != nil {
		t.Fatal(err)
	}
	v, err = tab.UpdateHeld("k", held, func(v *item) error { v.N++; return nil })
	if err != nil || v.N != 101 {
		t.Fatalf("stale held update: %v %v, want 101", v, err)
	}
	refuse := errors.New("no")
	if _, err := tab.UpdateHeld("k", v, func(v *item) error { v.N = 0; return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("refused held update returned %v", err)
	}
	if got, _ := tab.Get("k"); got == nil || got.N != 101 {
		t.Fatalf("after a refused held update: %v", got)
	}
	if _, err := tab.UpdateHeld("missing", &item{}, func(*item) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("held update of a missing key: %v", err)
	}
	const writers = 16
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tab.UpdateHeld("k", v, func(v *item) error { v.N++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got, _ := tab.Get("k"); got == nil || got.N != 101+writers {
		t.Fatalf("after %d racing held updates: %v, want %d", writers, got, 101+writers)
	}
}

// TestUpdateHeldAlso: entries of another table are written with an update
// (held or not), in its transaction: both when the update lands (held or read
// again), neither when the mutation refuses; an entry of another database
// is refused.
func TestUpdateHeldAlso(t *testing.T) {
	db := openTest(t, t.TempDir())
	tab := NewTable[item](db, "items")
	side := NewTable[item](db, "side")
	held := &item{N: 1}
	if err := tab.Create("k", held); err != nil {
		t.Fatal(err)
	}
	e1, err := side.Entry("a", &item{N: 7})
	if err != nil {
		t.Fatal(err)
	}
	v, err := tab.UpdateHeldAlso("k", held, func(v *item) error { v.N = 2; return nil }, e1)
	if err != nil || v.N != 2 {
		t.Fatalf("held update with an entry: %v %v", v, err)
	}
	if got, err := side.Get("a"); err != nil || got.N != 7 {
		t.Fatalf("the entry written with the update: %v %v", got, err)
	}
	// held is stale now: the update reads again and still writes the entry.
	e2, _ := side.Entry("b", &item{N: 8})
	if v, err = tab.UpdateHeldAlso("k", held, func(v *item) error { v.N++; return nil }, e2); err != nil || v.N != 3 {
		t.Fatalf("stale held update with an entry: %v %v", v, err)
	}
	if got, err := side.Get("b"); err != nil || got.N != 8 {
		t.Fatalf("the entry written with a stale held update: %v %v", got, err)
	}
	e3, _ := side.Entry("c", &item{N: 9})
	refuse := errors.New("no")
	if _, err := tab.UpdateHeldAlso("k", v, func(*item) error { return refuse }, e3); !errors.Is(err, refuse) {
		t.Fatalf("refused update: %v", err)
	}
	if _, err := side.Get("c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused update wrote its entry: %v", err)
	}
	e4, _ := side.Entry("e", &item{N: 10})
	if v, err = tab.UpdateAlso("k", func(v *item) error { v.N = 4; return nil }, e4); err != nil || v.N != 4 {
		t.Fatalf("update with an entry: %v %v", v, err)
	}
	if got, err := side.Get("e"); err != nil || got.N != 10 {
		t.Fatalf("the entry written with an update: %v %v", got, err)
	}
	other := openTest(t, t.TempDir())
	foreign, _ := NewTable[item](other, "side").Entry("d", &item{})
	if _, err := tab.UpdateHeldAlso("k", v, func(*item) error { return nil }, foreign); err == nil {
		t.Fatal("an entry of another database was accepted")
	}
}

// TestUpdateHeldRemembers: a held update from the value a write handed
// back uses that write's encoding; past maxWritten keys, or for a value
// read back, it encodes the value again; a deleted key is ErrNotFound.
func TestUpdateHeldRemembers(t *testing.T) {
	db := openTest(t, t.TempDir())
	tab := NewTable[item](db, "items")
	first := &item{N: 1}
	if err := tab.Create("first", first); err != nil {
		t.Fatal(err)
	}
	tab.mu.Lock()
	w := tab.written["first"]
	tab.mu.Unlock()
	if w.v != first || string(w.b) != `{"n":1}` {
		t.Fatalf("Create noted %+v", w)
	}
	for i := range maxWritten + 10 {
		if err := tab.Create(fmt.Sprint("k", i), &item{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	tab.mu.Lock()
	n := len(tab.written)
	tab.mu.Unlock()
	if n > maxWritten {
		t.Fatalf("%d keys noted, at most %d", n, maxWritten)
	}
	v, err := tab.UpdateHeld("first", first, func(v *item) error { v.N = 2; return nil })
	if err != nil || v.N != 2 {
		t.Fatalf("held update of a key no longer noted: %v %v", v, err)
	}
	read, err := tab.Get("first")
	if err != nil {
		t.Fatal(err)
	}
	if v, err = tab.UpdateHeld("first", read, func(v *item) error { v.N = 3; return nil }); err != nil || v.N != 3 {
		t.Fatalf("held update from a value read: %v %v", v, err)
	}
	if err := tab.Delete("first"); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.UpdateHeld("first", v, func(*item) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("held update of a deleted key: %v", err)
	}
}
