package market_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// logBuffer collects a node's log lines (debug level included) so a test
// can check that each refusal was logged with its reason.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) has(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Contains(b.buf.String(), s)
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// rogue is a peer built from the project's own p2p and wire packages that
// speaks every protocol of the market, and lies.
type rogue struct {
	t *testing.T
	*peerNode
}

// send writes raw bytes on a new stream of proto to p and returns what
// came back (nil when the receiver reset the stream).
func (r *rogue) send(p peer.ID, proto protocol.ID, raw []byte) []byte {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 5*time.Second)
	defer cancel()
	s, err := r.h.NewStream(ctx, p, proto)
	if err != nil {
		r.t.Fatalf("open %s: %v", proto, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write(raw); err != nil {
		return nil
	}
	_ = s.CloseWrite()
	body, err := stream.ReadFrame(bufio.NewReader(s), 1<<20)
	if err != nil {
		return nil
	}
	return body
}

// frame is msg as the receiver expects it: one length-prefixed JSON frame.
func frame(t *testing.T, msg any) []byte {
	var b bytes.Buffer
	if err := stream.WriteMsg(&b, msg); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// ack decodes a reply, failing when the receiver answered nothing.
func ack[T any](t *testing.T, what string, body []byte) T {
	t.Helper()
	var v T
	if body == nil {
		t.Fatalf("%s: no answer", what)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestRoguePeerIsRefused sends each class of forged, unauthorized, stale,
// replayed, oversized, truncated and out-of-order message to a real
// provider and a real requestor (libp2p hosts and gossipsub on an
// in-memory network) while an honest task runs: every one is refused with
// a logged reason, the honest task is untouched, and nothing is persisted
// or held.
func TestRoguePeerIsRefused(t *testing.T) {
	s := newSwarm(t)
	var plog, rlog logBuffer
	pcfg := providerConfig(t, 1)
	pcfg.Logger = plog.logger()
	prov := s.provider(pcfg)
	release := make(chan struct{})
	prov.ex.setRun(func(ctx context.Context, _ executor.Spec) (*executor.Result, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		now := time.Now()
		return &executor.Result{Stdout: []byte("honest"), StdoutSize: 6, StartedAt: now, FinishedAt: now}, nil
	})
	rcfg := fastRequestor()
	rcfg.Logger = rlog.logger()
	req := s.requestor(rcfg)
	bad := &rogue{t: t, peerNode: s.newPeer()}
	if _, err := bad.topic.Subscribe(); err != nil { // as providers do
		t.Fatal(err)
	}
	bad.provider = true
	s.providers++
	s.connect()

	id := req.submit(t, wire.TaskSpec{})
	running := req.waitState(t, id, market.StateRunning, 10*time.Second)
	prov.started(t, time.Second)
	free := prov.p.Free()
	records := len(mustList(t, prov.store))

	spec := wire.TaskSpec{Image: "test:1", Cmd: []string{"run"}}
	result := &wire.Result{ExitCode: 0, Stdout: "forged", Cost: 0}

	// Provider side.
	t.Run("award without a bid", func(t *testing.T) {
		got := ack[wire.AwardReply](t, "award", bad.send(prov.h.ID(), wire.ProtoAward, frame(t, &wire.Award{TaskID: "made-up", Attempt: 1, Spec: spec})))
		if got.Accepted || got.Code != wire.CodeNoReservation {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("award of the honest requestor's task", func(t *testing.T) {
		got := ack[wire.AwardReply](t, "award", bad.send(prov.h.ID(), wire.ProtoAward, frame(t, &wire.Award{TaskID: id, Attempt: running.Attempt, Spec: spec})))
		if got.Accepted || got.Code != wire.CodeNoReservation {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("cancel of the honest requestor's running task", func(t *testing.T) {
		got := ack[wire.Ack](t, "cancel", bad.send(prov.h.ID(), wire.ProtoCancel, frame(t, &wire.Cancel{TaskID: id, Attempt: running.Attempt})))
		if got.OK || got.Code != wire.CodeUnknownTask {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("malformed award", func(t *testing.T) {
		got := ack[wire.AwardReply](t, "award", bad.send(prov.h.ID(), wire.ProtoAward, frame(t, map[string]any{"task": "../etc", "attempt": -1})))
		if got.Accepted || got.Code != wire.CodeBadRequest {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("oversized frame", func(t *testing.T) {
		var hdr [binary.MaxVarintLen64]byte
		n := binary.PutUvarint(hdr[:], 1<<30) // claims 1 GiB, sends 4 bytes
		if got := bad.send(prov.h.ID(), wire.ProtoAward, append(hdr[:n], "{}{}"...)); got != nil {
			t.Fatalf("answered %q", got)
		}
	})
	t.Run("truncated frame", func(t *testing.T) {
		raw := frame(t, &wire.Award{TaskID: "x", Attempt: 1, Spec: spec})
		if got := bad.send(prov.h.ID(), wire.ProtoAward, raw[:len(raw)/2]); got != nil {
			t.Fatalf("answered %q", got)
		}
	})
	t.Run("forged announcement naming the honest requestor", func(t *testing.T) {
		ann := wire.Announce{Version: wire.Version, TaskID: "forged", Attempt: 1, Requestor: req.h.ID().String(),
			Req: wire.RequirementsOf(spec), BidDeadline: time.Now().Add(time.Second).UnixMilli()}
		if err := bad.topic.Publish(t.Context(), mustJSON(t, &ann)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the provider's log of the forged announcement", func() bool {
			return plog.has("signed by another peer than the requestor it names")
		})
	})
	t.Run("junk announcement", func(t *testing.T) {
		if err := bad.topic.Publish(t.Context(), []byte(`{"v":1,"task":"`+strings.Repeat("x", 300)+`"}`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the provider's log of the junk announcement", func() bool {
			return plog.has("announcement refused") && plog.has("task id")
		})
	})

	// Requestor side.
	t.Run("result from a peer never awarded", func(t *testing.T) {
		got := ack[wire.Ack](t, "report", bad.send(req.h.ID(), wire.ProtoReport, frame(t, &wire.Report{TaskID: id, Attempt: running.Attempt, State: wire.ExecCompleted, Result: result})))
		if got.OK || got.Code != wire.CodeInvalidReceipt && got.Code != wire.CodeNotAwarded {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("heartbeat from a peer never awarded", func(t *testing.T) {
		got := ack[wire.Ack](t, "report", bad.send(req.h.ID(), wire.ProtoReport, frame(t, &wire.Report{TaskID: id, Attempt: running.Attempt, State: wire.ExecHeartbeat})))
		if got.OK || got.Code != wire.CodeNotAwarded {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("report of an unknown task", func(t *testing.T) {
		got := ack[wire.Ack](t, "report", bad.send(req.h.ID(), wire.ProtoReport, frame(t, &wire.Report{TaskID: "nope", Attempt: 1, State: wire.ExecRunning})))
		if got.OK || got.Code != wire.CodeUnknownTask {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("bid into no open auction", func(t *testing.T) {
		got := ack[wire.BidAck](t, "bid", bad.send(req.h.ID(), wire.ProtoBid, frame(t, &wire.Bid{TaskID: id, Attempt: running.Attempt, Price: 0})))
		if got.OK || got.Code != wire.CodeAuctionClosed {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("bid with a negative price", func(t *testing.T) {
		got := ack[wire.BidAck](t, "bid", bad.send(req.h.ID(), wire.ProtoBid, frame(t, map[string]any{"task": id, "attempt": 1, "price": -1})))
		if got.OK || got.Code != wire.CodeBadRequest {
			t.Fatalf("got %+v", got)
		}
	})

	// Nothing the rogue sent changed the honest task, was stored or holds
	// capacity; the honest task then completes.
	if cur, _ := req.r.Get(id); cur.State != market.StateRunning || cur.Provider != prov.h.ID().String() || cur.Attempt != running.Attempt ||
		len(cur.Executions) != len(running.Executions) || cur.Result != nil || len(cur.Bids) != len(running.Bids) {
		t.Fatalf("the rogue changed the honest task: %+v (was %+v)", cur, running)
	}
	if n := len(mustList(t, prov.store)); n != records {
		t.Fatalf("the provider stored %d records, had %d", n, records)
	}
	if f := prov.p.Free(); f != free {
		t.Fatalf("the provider's free capacity went from %+v to %+v", free, f)
	}
	if n := len(mustList(t, req.store)); n != 1 {
		t.Fatalf("the requestor stored %d tasks", n)
	}
	for _, reason := range []string{
		"award refused", "no live reservation", "cancel refused", "bad award frame", "message too large", "report refused",
		"not awarded to you", "bid refused", "auction closed", "bad bid", "result refused",
	} {
		if !plog.has(reason) && !rlog.has(reason) {
			t.Errorf("no log line says %q", reason)
		}
	}
	close(release)
	if done := req.wait(t, id, 10*time.Second); done.State != market.StateCompleted || done.Result.Stdout != "honest" {
		t.Fatalf("honest task %s: %+v", done.State, done.Result)
	}
}

func mustList[T any](t *testing.T, s *memStore[T]) []*T {
	t.Helper()
	out, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	return out
}
