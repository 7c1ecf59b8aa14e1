package market_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// This file is a test harness: requestors and providers on libp2p's
// in-memory network (mocknet), with gossipsub on top, in-memory stores
// that copy records through JSON (as a real store does), and a fake
// executor the test steers. Timers are short, so a failover takes a
// fraction of a second. Nothing here needs Docker, Badger or a socket.

// memStore is an in-memory TaskStore / ExecStore. Records are copied
// through JSON on the way in and out, so no caller shares memory with the
// store, as with Badger.
type memStore[T any] struct {
	mu   sync.Mutex
	recs map[string][]byte
}

func newMemStore[T any]() *memStore[T] { return &memStore[T]{recs: map[string][]byte{}} }

func (s *memStore[T]) Create(key string, v *T) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[key]; ok {
		return fmt.Errorf("%s exists", key)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.recs[key] = b
	return nil
}

func (s *memStore[T]) Get(key string) (*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.recs[key]
	if !ok {
		return nil, fmt.Errorf("%s not found", key)
	}
	v := new(T)
	return v, json.Unmarshal(b, v)
}

func (s *memStore[T]) Update(key string, fn func(*T) error) (*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.recs[key]
	if !ok {
		return nil, fmt.Errorf("%s not found", key)
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	if err := fn(v); err != nil {
		return nil, err
	}
	if b, err := json.Marshal(v); err != nil {
		return nil, err
	} else {
		s.recs[key] = b
	}
	return v, nil
}

// UpdateHeld is storage.Table.UpdateHeld: fn changes a shallow copy of
// held, written if the record still encodes as held does, else this is
// Update. It panics if fn changed held through the copy (a mutation that
// modifies in place what a shallow copy shares), which would corrupt a
// snapshot shared with other readers.
func (s *memStore[T]) UpdateHeld(key string, held *T, fn func(*T) error) (*T, error) {
	old, err := json.Marshal(held)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	cur, ok := s.recs[key]
	s.mu.Unlock()
	if !ok || !bytes.Equal(cur, old) {
		return s.Update(key, fn)
	}
	v := new(T)
	*v = *held
	ferr := fn(v)
	if after, _ := json.Marshal(held); !bytes.Equal(after, old) {
		panic(fmt.Sprintf("memStore: a held update of %s changed the held value:\n%s\n%s", key, old, after))
	}
	if ferr != nil {
		return nil, ferr
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !bytes.Equal(s.recs[key], old) {
		s.mu.Unlock()
		v, err := s.Update(key, fn)
		s.mu.Lock()
		return v, err
	}
	s.recs[key] = b
	return v, nil
}

func (s *memStore[T]) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, key)
	return nil
}

func (s *memStore[T]) List() ([]*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*T, 0, len(s.recs))
	for _, b := range s.recs {
		v := new(T)
		if err := json.Unmarshal(b, v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// fakeExec is an executor whose runs the test steers: by default a run
// ends at once with exit 0 and "ok from NAME" on stdout; run, when set,
// decides instead. Every run's start is sent on started.
type fakeExec struct {
	name    string
	started chan executor.Spec
	mu      sync.Mutex
	run     func(ctx context.Context, spec executor.Spec) (*executor.Result, error)
	runs    int
}

func newFakeExec(name string) *fakeExec {
	return &fakeExec{name: name, started: make(chan executor.Spec, 64)}
}

func (f *fakeExec) Name() string                    { return f.name }
func (f *fakeExec) Available(context.Context) error { return nil }

func (f *fakeExec) setRun(fn func(ctx context.Context, spec executor.Spec) (*executor.Result, error)) {
	f.mu.Lock()
	f.run = fn
	f.mu.Unlock()
}

func (f *fakeExec) Run(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
	f.mu.Lock()
	fn := f.run
	f.runs++
	f.mu.Unlock()
	select {
	case f.started <- spec:
	default:
	}
	if fn != nil {
		return fn(ctx, spec)
	}
	now := time.Now()
	out := []byte("ok from " + f.name)
	return &executor.Result{Stdout: out, StdoutSize: int64(len(out)), StartedAt: now, FinishedAt: now}, nil
}

// blockUntilCanceled is a run that holds its slot until it is stopped.
func blockUntilCanceled(ctx context.Context, _ executor.Spec) (*executor.Result, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// swarm is a set of nodes on one in-memory network.
type swarm struct {
	n     int // nodes made, for their (never dialed) addresses
	nodes []*peerNode
	// providers counts the nodes subscribed to the task topic.
	providers int
	t         *testing.T
	mn        mocknet.Mocknet
	ctx       context.Context
}

func newSwarm(t *testing.T) *swarm {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	return &swarm{t: t, mn: mn, ctx: t.Context()}
}

// quietLog keeps test output readable; set OFFLOAD_TEST_LOG to see it.
func quietLog() *slog.Logger {
	if os.Getenv("OFFLOAD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// peerNode is one node's libp2p side: a host and its task topic.
type peerNode struct {
	provider bool
	h        host.Host
	ps       *pubsub.PubSub
	topic    *pubsub.Topic
}

func (s *swarm) newPeer() *peerNode {
	s.t.Helper()
	// Ed25519, as real nodes use: the public key is in the peer ID, so
	// receipts verify from the ID alone (mocknet's GenPeer makes RSA keys).
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	s.n++
	h, err := s.mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+s.n)))
	if err != nil {
		s.t.Fatal(err)
	}
	ps, err := pubsub.NewGossipSub(s.ctx, h)
	if err != nil {
		s.t.Fatal(err)
	}
	topic, err := ps.Join(wire.TopicTasks)
	if err != nil {
		s.t.Fatal(err)
	}
	n := &peerNode{h: h, ps: ps, topic: topic}
	s.nodes = append(s.nodes, n)
	return n
}

// connect links and connects every pair of nodes made so far, and waits
// until every node sees every other on the task topic (a requestor
// expects bids from the peers it sees there).
func (s *swarm) connect() {
	s.t.Helper()
	if err := s.mn.LinkAll(); err != nil {
		s.t.Fatal(err)
	}
	if err := s.mn.ConnectAllButSelf(); err != nil {
		s.t.Fatal(err)
	}
	for _, n := range s.nodes {
		want := s.providers
		if n.provider {
			want--
		}
		waitFor(s.t, 5*time.Second, "task topic subscriptions", func() bool { return len(n.topic.ListPeers()) == want })
	}
}

// testRequestor is a requestor node.
type testRequestor struct {
	*peerNode
	r     *market.Requestor
	store *memStore[market.Task]
	cfg   market.RequestorConfig
}

// fastRequestor is the timers of a requestor under test.
func fastRequestor() market.RequestorConfig {
	return market.RequestorConfig{
		BidWindow: 500 * time.Millisecond, ProviderWait: 3 * time.Second,
		HeartbeatTimeout: 800 * time.Millisecond, ResultGrace: 5 * time.Second,
		Logger: quietLog(),
	}
}

func (s *swarm) requestor(cfg market.RequestorConfig) *testRequestor {
	s.t.Helper()
	tr := &testRequestor{peerNode: s.newPeer(), store: newMemStore[market.Task](), cfg: cfg}
	tr.start()
	return tr
}

// start builds and starts a Requestor over the node's host and store (a
// restart after stop keeps both).
func (tr *testRequestor) start() {
	var err error
	if tr.r, err = market.NewRequestor(tr.h, tr.store, tr.topic, tr.cfg); err != nil {
		panic(err)
	}
	if err := tr.r.Start(); err != nil {
		panic(err)
	}
}

// stop closes the Requestor, keeping its host and store.
func (tr *testRequestor) stop() { _ = tr.r.Close() }

// testProvider is a provider node.
type testProvider struct {
	*peerNode
	p     *market.Provider
	ex    *fakeExec
	store *memStore[market.ExecRecord]
}

// providerConfig is a provider offering 2 CPUs and 2 GiB at price, with
// fast heartbeats.
func providerConfig(t *testing.T, price float64) market.ProviderConfig {
	return market.ProviderConfig{
		Capacity: market.Capacity{CPUs: 2, MemoryBytes: 2 << 30}, Price: price,
		Heartbeat: 100 * time.Millisecond, ReservationTTL: 3 * time.Second,
		WorkDir: t.TempDir(), AllowedImages: []string{"*"}, Logger: quietLog(),
	}
}

func (s *swarm) provider(cfg market.ProviderConfig) *testProvider {
	s.t.Helper()
	return s.providerRuntime(cfg, "docker")
}

// providerRuntime is provider with a fake executor of another runtime.
func (s *swarm) providerRuntime(cfg market.ProviderConfig, runtime string) *testProvider {
	s.t.Helper()
	tp := &testProvider{peerNode: s.newPeer(), ex: newFakeExec(runtime), store: newMemStore[market.ExecRecord]()}
	tp.provider = true
	s.providers++
	var err error
	if tp.p, err = market.NewProvider(tp.h, tp.store, tp.topic, []executor.Executor{tp.ex}, cfg); err != nil {
		s.t.Fatal(err)
	}
	if err := tp.p.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = tp.p.Close() })
	return tp
}

// kill takes the provider off the network at once, as a crash would, then
// stops it.
func (tp *testProvider) kill() {
	_ = tp.h.Close()
	_ = tp.p.Close()
}

// submit submits a task running "docker" image test:1 and returns its id.
func (tr *testRequestor) submit(t *testing.T, spec wire.TaskSpec) string {
	t.Helper()
	if spec.Image == "" {
		spec.Image = "test:1"
	}
	if len(spec.Cmd) == 0 {
		spec.Cmd = []string{"run"}
	}
	task, err := tr.r.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return task.ID
}

// wait returns the task once it is terminal, failing the test after d.
func (tr *testRequestor) wait(t *testing.T, id string, d time.Duration) *market.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	task, err := tr.r.Wait(ctx, id)
	if err != nil {
		cur, _ := tr.r.Get(id)
		t.Fatalf("task %s not terminal within %s: %v (now %s: %s)", id, d, err, cur.State, cur.Reason)
	}
	return task
}

// waitState returns the task once it is in state, failing after d.
func (tr *testRequestor) waitState(t *testing.T, id string, state market.State, d time.Duration) *market.Task {
	t.Helper()
	ch, stop, err := tr.r.Watch(id)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var last *market.Task
	for {
		select {
		case last = <-ch:
			if last.State == state {
				return last
			}
			if last.State.IsTerminal() {
				t.Fatalf("task %s ended %s (%s) before reaching %s", id, last.State, last.Reason, state)
			}
		case <-timer.C:
			t.Fatalf("task %s not %s within %s (last %v)", id, state, d, last)
		}
	}
}

// started waits for the provider's executor to start a run.
func (tp *testProvider) started(t *testing.T, d time.Duration) executor.Spec {
	t.Helper()
	select {
	case spec := <-tp.ex.started:
		return spec
	case <-time.After(d):
		t.Fatalf("provider %s started nothing within %s", tp.h.ID().ShortString(), d)
		return executor.Spec{}
	}
}

// execOf returns the task's executions by provider.
func execOf(task *market.Task) map[peer.ID][]market.Execution {
	out := map[peer.ID][]market.Execution{}
	for _, e := range task.Executions {
		id, _ := peer.Decode(e.Provider)
		out[id] = append(out[id], e)
	}
	return out
}

var errUnavailable = fmt.Errorf("engine gone: %w", executor.ErrUnavailable)

// waitFor polls cond every 10 ms until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
