package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/discovery"
)

// This file holds what the harness puts in place of a node's disk and
// engine (in-memory stores, an executor that returns at once) and the
// counters of what crosses the network.

// instantExec is an executor whose runs end at once with exit 0, so that a
// task costs only what the market spends on it.
type instantExec struct{ runs atomic.Int64 }

var _ executor.Executor = (*instantExec)(nil)

// Name is "docker", the default runtime of a task spec.
func (e *instantExec) Name() string { return "docker" }

// Available always answers.
func (e *instantExec) Available(context.Context) error { return nil }

// Run returns exit code 0 and "ok" on stdout without doing anything.
func (e *instantExec) Run(_ context.Context, _ executor.Spec) (*executor.Result, error) {
	e.runs.Add(1)
	now := time.Now()
	out := []byte("ok")
	return &executor.Result{Stdout: out, StdoutSize: int64(len(out)), StartedAt: now, FinishedAt: now}, nil
}

// memTable is an in-memory market.TaskStore and market.ExecStore. Records
// are copied through JSON on the way in and out, as the Badger table
// copies them, so no caller shares memory with the store; nothing is
// written to disk (no fsync per transition, unlike a node).
type memTable[T any] struct {
	mu   sync.Mutex
	recs map[string][]byte
}

var (
	_ market.TaskStore = (*memTable[market.Task])(nil)
	_ market.ExecStore = (*memTable[market.ExecRecord])(nil)
)

func newMemTable[T any]() *memTable[T] { return &memTable[T]{recs: map[string][]byte{}} }

// Create stores v under key, which must be new.
func (s *memTable[T]) Create(key string, v *T) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[key]; ok {
		return fmt.Errorf("%s exists", key)
	}
	s.recs[key] = b
	return nil
}

// Get returns a copy of the record under key.
func (s *memTable[T]) Get(key string) (*T, error) {
	s.mu.Lock()
	b, ok := s.recs[key]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s not found", key)
	}
	v := new(T)
	return v, json.Unmarshal(b, v)
}

// Update applies fn to a copy of the record under key and stores the
// result, all under the table's lock (a conditional write, as in Badger).
func (s *memTable[T]) Update(key string, fn func(*T) error) (*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.recs[key]
	if !ok {
		return nil, fmt.Errorf("%s not found", key)
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", key, err)
	}
	if err := fn(v); err != nil {
		return nil, err
	}
	nb, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", key, err)
	}
	s.recs[key] = nb
	return v, nil
}

// Delete removes the record under key, if any.
func (s *memTable[T]) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, key)
	return nil
}

// List returns a copy of every record.
func (s *memTable[T]) List() ([]*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*T, 0, len(s.recs))
	for k, b := range s.recs {
		v := new(T)
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", k, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// memPool is an in-memory discovery.PoolStore.
type memPool struct {
	mu   sync.Mutex
	recs map[string]*discovery.PoolEntry
}

var _ discovery.PoolStore = (*memPool)(nil)

func newMemPool() *memPool { return &memPool{recs: map[string]*discovery.PoolEntry{}} }

// PutMany stores every entry, replacing those with the same key.
func (s *memPool) PutMany(entries map[string]*discovery.PoolEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range entries {
		c := *e
		s.recs[k] = &c
	}
	return nil
}

// Delete removes the entry under k, if any.
func (s *memPool) Delete(k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, k)
	return nil
}

// List returns a copy of every entry.
func (s *memPool) List() ([]*discovery.PoolEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*discovery.PoolEntry, 0, len(s.recs))
	for _, e := range s.recs {
		c := *e
		out = append(out, &c)
	}
	return out, nil
}

// counters counts, over every node of one swarm, the gossip messages the
// nodes' topic validators saw and the market and discovery streams.
type counters struct {
	// gossip counts validator runs by base topic: one per node per
	// distinct message that reached it (gossipsub drops duplicates before
	// validation), the author's own validation of what it publishes
	// included. Duplicate deliveries, IHAVE/IWANT/GRAFT/PRUNE control
	// traffic, DHT and identify are not counted.
	gossipMu sync.Mutex
	gossip   map[string]*atomic.Int64
	// streams counts streams opened by protocol (outbound side), msgs the
	// Write calls on those streams at both ends (stream.WriteMsg issues
	// one Write per message, so this is messages sent).
	streamMu sync.Mutex
	streams  map[protocol.ID]*atomic.Int64
	msgs     map[protocol.ID]*atomic.Int64
}

func newCounters() *counters {
	return &counters{gossip: map[string]*atomic.Int64{}, streams: map[protocol.ID]*atomic.Int64{}, msgs: map[protocol.ID]*atomic.Int64{}}
}

func counterOf[K comparable](mu *sync.Mutex, m map[K]*atomic.Int64, k K) *atomic.Int64 {
	mu.Lock()
	defer mu.Unlock()
	c, ok := m[k]
	if !ok {
		c = new(atomic.Int64)
		m[k] = c
	}
	return c
}

// countCheck wraps a topic validator so that each run is counted.
func (c *counters) countCheck(topic string, check func(context.Context, *pubsub.Message) (pubsub.ValidationResult, string)) func(context.Context, *pubsub.Message) (pubsub.ValidationResult, string) {
	n := counterOf(&c.gossipMu, c.gossip, topic)
	return func(ctx context.Context, msg *pubsub.Message) (pubsub.ValidationResult, string) {
		n.Add(1)
		return check(ctx, msg)
	}
}

// snapshot is the counters' values at one moment.
type snapshot struct {
	Gossip  map[string]int64      `json:"gossip"`
	Streams map[protocol.ID]int64 `json:"streams"`
	Msgs    map[protocol.ID]int64 `json:"msgs"`
}

func load[K comparable](mu *sync.Mutex, m map[K]*atomic.Int64) map[K]int64 {
	mu.Lock()
	defer mu.Unlock()
	out := make(map[K]int64, len(m))
	for k, v := range m {
		out[k] = v.Load()
	}
	return out
}

func (c *counters) snapshot() snapshot {
	return snapshot{Gossip: load(&c.gossipMu, c.gossip), Streams: load(&c.streamMu, c.streams), Msgs: load(&c.streamMu, c.msgs)}
}

// sub returns s minus an earlier snapshot.
func (s snapshot) sub(before snapshot) snapshot {
	d := func(a, b map[string]int64) map[string]int64 {
		out := map[string]int64{}
		for k, v := range a {
			out[k] = v - b[k]
		}
		return out
	}
	dp := func(a, b map[protocol.ID]int64) map[protocol.ID]int64 {
		out := map[protocol.ID]int64{}
		for k, v := range a {
			out[k] = v - b[k]
		}
		return out
	}
	return snapshot{Gossip: d(s.Gossip, before.Gossip), Streams: dp(s.Streams, before.Streams), Msgs: dp(s.Msgs, before.Msgs)}
}

// add returns s plus another process's snapshot.
func (s snapshot) add(o snapshot) snapshot {
	out := snapshot{Gossip: map[string]int64{}, Streams: map[protocol.ID]int64{}, Msgs: map[protocol.ID]int64{}}
	for _, x := range []snapshot{s, o} {
		for k, v := range x.Gossip {
			out.Gossip[k] += v
		}
		for k, v := range x.Streams {
			out.Streams[k] += v
		}
		for k, v := range x.Msgs {
			out.Msgs[k] += v
		}
	}
	return out
}

func sum[K comparable](m map[K]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// countingHost is the host the market and discovery are given: it counts
// the streams they open and the messages written on those streams and on
// the streams their handlers accept. Everything else goes to the node's
// p2p.Host unchanged.
type countingHost struct {
	host.Host
	c *counters
}

// NewStream opens a stream as the wrapped host does and counts it.
func (h *countingHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	proto := s.Protocol()
	counterOf(&h.c.streamMu, h.c.streams, proto).Add(1)
	return &countingStream{Stream: s, n: counterOf(&h.c.streamMu, h.c.msgs, proto)}, nil
}

// SetStreamHandler registers handler so that it gets counting streams.
func (h *countingHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	n := counterOf(&h.c.streamMu, h.c.msgs, pid)
	h.Host.SetStreamHandler(pid, func(s network.Stream) {
		handler(&countingStream{Stream: s, n: n})
	})
}

// countingStream counts its Write calls.
type countingStream struct {
	network.Stream
	n *atomic.Int64
}

// Write writes b and counts one message.
func (s *countingStream) Write(b []byte) (int, error) {
	s.n.Add(1)
	return s.Stream.Write(b)
}
