package market_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// TestLiveLogs: a task that writes a line every 50 ms is followed from its
// first line; each line reaches the requestor's reader within a fraction
// of a second of being written; a second reader resumes from an offset;
// another peer cannot read the run's output; and once the task ended its
// output is still served.
func TestLiveLogs(t *testing.T) {
	s := newSwarm(t)
	prov := s.provider(providerConfig(t, 1))
	written := map[string]time.Time{}
	var mu sync.Mutex
	prov.ex.setRun(func(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
		for i := range 10 {
			line := fmt.Sprintf("line %d\n", i)
			mu.Lock()
			written[line] = time.Now()
			mu.Unlock()
			stream := wire.LogStdout
			if i%3 == 2 {
				stream = wire.LogStderr
			}
			spec.Log(stream, []byte(line))
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		now := time.Now()
		return &executor.Result{Stdout: []byte("tail"), StdoutSize: 4, StartedAt: now, FinishedAt: now}, nil
	})
	req := s.requestor(fastRequestor())
	s.connect()
	id := req.submit(t, wire.TaskSpec{})

	var got strings.Builder
	var worst time.Duration
	err := req.r.Logs(t.Context(), id, -1, 0, true, func(_ int, c wire.LogChunk) error {
		if c.Stream == "" {
			return nil
		}
		mu.Lock()
		at, ok := written[string(c.Data)]
		mu.Unlock()
		if ok {
			worst = max(worst, time.Since(at))
		}
		got.Write(c.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := range 10 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if got.String() != want.String() {
		t.Fatalf("followed output:\n%q\nwant\n%q", got.String(), want.String())
	}
	if worst > 500*time.Millisecond {
		t.Fatalf("a line took %s to arrive", worst)
	}
	t.Logf("slowest line arrived %s after it was written", worst)

	// After the end: from an offset, without following, from the
	// provider that still holds the run's log.
	from := int64(len("line 0\nline 1\n"))
	var rest strings.Builder
	if err := req.r.Logs(t.Context(), id, -1, from, false, func(_ int, c wire.LogChunk) error { rest.Write(c.Data); return nil }); err != nil {
		t.Fatal(err)
	}
	if rest.String() != want.String()[from:] {
		t.Fatalf("from %d: %q", from, rest.String())
	}

	// Another peer asking for the same execution gets nothing.
	task := req.wait(t, id, 5*time.Second)
	rg := &rogue{t: t, peerNode: s.newPeer()}
	s.connect()
	body := rg.send(prov.h.ID(), wire.ProtoLogs, frame(t, &wire.LogsRequest{TaskID: id, Attempt: task.Attempt}))
	c := ack[wire.LogChunk](t, "stranger's logs request", body)
	if !c.End || len(c.Data) > 0 || !strings.Contains(c.Error, "no live log") {
		t.Fatalf("a stranger got %+v", c)
	}
	// Garbage is refused.
	if body := rg.send(prov.h.ID(), wire.ProtoLogs, frame(t, &wire.LogsRequest{TaskID: "../x", From: -1})); body == nil {
		t.Fatal("no answer to a bad request")
	} else if c := ack[wire.LogChunk](t, "bad request", body); !c.End || c.Error == "" {
		t.Fatalf("bad request answered %+v", c)
	}
}

// TestLogsOfAnEndedTaskFromItsResult: when no provider holds the run's
// log any more, an ended task's logs are its result's tails.
func TestLogsOfAnEndedTaskFromItsResult(t *testing.T) {
	s := newSwarm(t)
	prov := s.provider(providerConfig(t, 1))
	req := s.requestor(fastRequestor())
	s.connect()
	id := req.submit(t, wire.TaskSpec{})
	if task := req.wait(t, id, 5*time.Second); task.State != market.StateCompleted {
		t.Fatalf("task %s", task.State)
	}
	prov.kill()
	var got strings.Builder
	if err := req.r.Logs(t.Context(), id, -1, 0, true, func(_ int, c wire.LogChunk) error { got.Write(c.Data); return nil }); err != nil {
		t.Fatal(err)
	}
	if got.String() != "ok from docker" {
		t.Fatalf("logs of an ended task: %q", got.String())
	}
	// A task that never ran anywhere has nothing to show, said so.
	none := s.requestor(fastRequestor())
	pending, err := none.r.Submit(t.Context(), wire.TaskSpec{Image: "x:1", Cmd: []string{"x"}, Provider: prov.h.ID().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := none.r.Logs(t.Context(), pending.ID, -1, 0, false, func(int, wire.LogChunk) error { return nil }); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("logs of a task that runs nowhere: %v", err)
	}
}

// TestAbandonedFollowerLetsGo: a follower that goes away while the run
// writes nothing (its requestor canceled, or the stream reset) gives its
// place back at once, not when the run ends: a run allows four followers,
// and after eight abandoned ones a ninth still follows it.
func TestAbandonedFollowerLetsGo(t *testing.T) {
	s := newSwarm(t)
	prov := s.provider(providerConfig(t, 1))
	release := make(chan struct{})
	prov.ex.setRun(func(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
		spec.Log(wire.LogStdout, []byte("first line\n"))
		select { // then silence, for as long as the test likes
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		now := time.Now()
		return &executor.Result{StartedAt: now, FinishedAt: now}, nil
	})
	req := s.requestor(fastRequestor())
	s.connect()
	id := req.submit(t, wire.TaskSpec{})
	req.waitState(t, id, market.StateRunning, 10*time.Second)
	defer close(release)

	follow := func(i int) error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		got := make(chan struct{})
		go func() {
			select {
			case <-got:
				cancel() // the follower goes away while the run is silent
			case <-ctx.Done():
			}
		}()
		err := req.r.Logs(ctx, id, -1, 0, true, func(_ int, c wire.LogChunk) error {
			if strings.Contains(string(c.Data), "first line") {
				close(got)
			}
			return nil
		})
		select {
		case <-got:
			return nil
		default:
			return fmt.Errorf("follower %d never got the first line: %v", i, err)
		}
	}
	for i := range 9 {
		if err := follow(i); err != nil {
			t.Fatal(err)
		}
	}
}
