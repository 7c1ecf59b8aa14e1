package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

// Provider and announcement settings of the harness's nodes.
const (
	// providerCPUs and providerMemory are what each provider offers: as
	// bench/run's providers, two task slots of one CPU.
	providerCPUs   = 2
	providerMemory = 2 << 30
	// announceRate and announceBurst are node/validate.go's bound on the
	// announcements one requestor may have relayed.
	announceRate  = 500
	announceBurst = 1000
	// buildParallel is how many nodes are built at once.
	buildParallel = 16
	// bootPeers is how many nodes already up a new provider bootstraps to.
	bootPeers = 3
)

// scaleImage is the image every task names; providers allow it by name.
const scaleImage = "scale:1"

// node is one libp2p host with what node.New runs on it: the capability
// pool, a requestor, and for providers a provider and its advertiser.
type node struct {
	h    *p2p.Host
	ch   *countingHost
	pool *discovery.Pool
	req  *market.Requestor
	prov *market.Provider
	adv  *discovery.Advertiser
	exec *instantExec
}

// swarm is a requestor in this process and its providers in worker
// processes.
type swarm struct {
	c *counters
	// requestors is every requestor of the swarm: the measured one and the
	// discovery runs' fresh ones, whose keys (fresh) are made up front so
	// that the workers' peer caps let them in.
	requestors *requestorSet
	requestor  *node
	fresh      []crypto.PrivKey
	workers    []*worker
	// addrs is every provider's addresses.
	addrs [][]string
	dir   string
	// stopProfile ends this process's running CPU profile, if any.
	stopProfile func()
}

// nodeConfig says how to build one node.
type nodeConfig struct {
	provider  bool
	bootstrap []string
	workDir   string
	// key is the node's identity; a fresh one when nil.
	key crypto.PrivKey
	log *slog.Logger
	// requestors is the swarm's requestors: a requestor joins it, a
	// provider's connections to others are capped (connCap).
	requestors *requestorSet
}

// newNode builds and starts a node as node.New does (p2p host with DHT and
// gossipsub, topic validators registered before any subscription, pool,
// requestor, provider with its advertiser), with in-memory stores, no
// content store and the instant executor. The market and discovery get
// the counting host.
func newNode(ctx context.Context, c *counters, cfg nodeConfig) (n *node, err error) {
	key := cfg.key
	if key == nil {
		if key, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	var gate *connCap
	if cfg.provider {
		gate = &connCap{requestors: cfg.requestors, max: cfg.requestors.peerCap}
	} else {
		cfg.requestors.add(id)
	}
	pcfg := p2p.Config{
		Identity: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: cfg.bootstrap, Logger: cfg.log,
		ScoredTopics: []string{wire.TopicTasks, wire.TopicCaps},
	}
	if gate != nil {
		pcfg.Gater = gate
	}
	h, err := p2p.New(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	if gate != nil {
		gate.setHost(h)
	}
	n = &node{h: h, ch: &countingHost{Host: h, c: c}}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	tasks, err := h.PubSub.Join(h.Topic(wire.TopicTasks))
	if err != nil {
		return nil, fmt.Errorf("join task topic: %w", err)
	}
	caps, err := h.PubSub.Join(h.Topic(wire.TopicCaps))
	if err != nil {
		return nil, fmt.Errorf("join capability topic: %w", err)
	}
	n.pool, err = discovery.NewPool(discovery.Network{Host: n.ch, PubSub: h.PubSub, Routing: h.DHT, Namespace: h.Namespace},
		caps, newMemPool(), discovery.PoolConfig{Logger: cfg.log})
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	if err := h.RegisterTopicRules(
		p2p.TopicRule{Topic: wire.TopicTasks, MaxSize: wire.MaxAnnounceSize, Rate: announceRate, Burst: announceBurst,
			Check: c.countCheck(wire.TopicTasks, checkAnnounce)},
		p2p.TopicRule{Topic: wire.TopicCaps, MaxSize: wire.MaxCapRecordSize, Check: c.countCheck(wire.TopicCaps, n.pool.CheckGossip)},
	); err != nil {
		return nil, fmt.Errorf("topic validators: %w", err)
	}
	if err := n.pool.Start(); err != nil {
		return nil, fmt.Errorf("start pool: %w", err)
	}
	if n.req, err = market.NewRequestor(n.ch, newMemTable[market.Task](), tasks, market.RequestorConfig{
		Logger: cfg.log, WorkDir: cfg.workDir, Candidates: n.pool.Candidates, Discover: n.pool.Lookup,
	}); err != nil {
		return nil, err
	}
	if cfg.provider {
		capacity := market.Capacity{CPUs: providerCPUs, MemoryBytes: providerMemory}
		n.exec = &instantExec{}
		if n.prov, err = market.NewProvider(n.ch, newMemTable[market.ExecRecord](), tasks, []executor.Executor{n.exec}, market.ProviderConfig{
			Capacity: capacity, Price: 1, Logger: cfg.log, WorkDir: cfg.workDir,
			AllowedImages: []string{scaleImage}, OnChange: n.advertChanged,
		}); err != nil {
			return nil, err
		}
		if n.adv, err = discovery.NewAdvertiser(n.pool, discovery.AdvertiserConfig{
			Hardware: wire.Hardware{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: providerCPUs, MemoryBytes: providerMemory,
				GPUs: []wire.GPU{}, Labels: map[string]string{}},
			Executors: []string{n.exec.Name()}, Price: 1, Capacity: wire.Resources(capacity),
			Free:     func() wire.Resources { return wire.Resources(n.prov.Free()) },
			Software: "offload/scale-harness", Logger: cfg.log,
		}); err != nil {
			return nil, err
		}
		if err := n.prov.Start(); err != nil {
			return nil, err
		}
		if err := n.adv.Start(); err != nil {
			return nil, err
		}
	}
	if err := n.req.Start(); err != nil {
		return nil, err
	}
	return n, nil
}

// advertChanged is the provider's OnChange hook (node.advertChanged).
func (n *node) advertChanged() {
	if n.adv != nil {
		n.adv.Changed()
	}
}

// close stops the node in node.Close's order: provider side, requestor,
// pool, host.
func (n *node) close() {
	if n.adv != nil {
		n.adv.Close()
	}
	if n.prov != nil {
		n.prov.Close()
	}
	if n.req != nil {
		n.req.Close()
	}
	if n.pool != nil {
		n.pool.Close()
	}
	n.h.Close()
}

// checkAnnounce is node/validate.go's check of a task announcement: it
// decodes and validates, and its requestor is its author.
func checkAnnounce(_ context.Context, msg *pubsub.Message) (pubsub.ValidationResult, string) {
	ann, err := wire.Decode[wire.Announce](msg.Data)
	if err != nil {
		return pubsub.ValidationReject, "malformed announcement"
	}
	if ann.Requestor != msg.GetFrom().String() {
		return pubsub.ValidationReject, "requestor is not the author"
	}
	if time.UnixMilli(ann.BidDeadline).Before(time.Now().Add(-time.Minute)) {
		return pubsub.ValidationIgnore, "bid deadline passed"
	}
	return pubsub.ValidationAccept, ""
}

// buildSwarm starts n providers in worker processes of at most perProc
// each (as evenly filled as that allows) and one requestor here, on
// loopback TCP: the first worker, whose first provider bootstraps to
// nobody and whose others bootstrap to 3 random providers of it already
// up; then the requestor, bootstrapped to that first provider; then each
// other worker in turn, its providers bootstrapped to 3 drawn from 64
// random providers of the workers before it and its own already up (as
// nodes join a real swarm through whichever peers they know; the DHT and
// gossip do the rest), so that no node holds a connection to every other.
func buildSwarm(ctx context.Context, o options, n int, log *slog.Logger, stderr io.Writer) (*swarm, error) {
	dir, err := os.MkdirTemp("", "offload-scale-")
	if err != nil {
		return nil, err
	}
	s := &swarm{c: newCounters(), requestors: &requestorSet{}, dir: dir}
	var ids []peer.ID
	keys := make([]crypto.PrivKey, 1+o.discover)
	for i := range keys {
		if keys[i], _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		id, err := peer.IDFromPrivateKey(keys[i])
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		ids = append(ids, id)
		s.requestors.add(id)
	}
	s.fresh = keys[1:]
	procs := (n + o.perProc - 1) / o.perProc
	for i := range procs {
		count := n/procs + btoi(i < n%procs)
		var boot []string
		for _, j := range mrand.Perm(len(s.addrs))[:min(64, len(s.addrs))] {
			boot = append(boot, s.addrs[j]...)
		}
		w, err := startWorker(ctx, workerConfig{Count: count, Swarm: n, Boot: boot, Requestors: ids, Verbose: o.verbose}, stderr)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("worker %d of %d: %w", i+1, procs, err)
		}
		s.workers = append(s.workers, w)
		s.addrs = append(s.addrs, w.addrs...)
		if i == 0 {
			wd := filepath.Join(dir, "req")
			if err := os.MkdirAll(wd, 0o700); err != nil {
				s.close()
				return nil, err
			}
			if s.requestor, err = newNode(ctx, s.c, nodeConfig{key: keys[0], bootstrap: w.addrs[0], workDir: wd, log: log, requestors: s.requestors}); err != nil {
				s.close()
				return nil, fmt.Errorf("requestor: %w", err)
			}
		}
	}
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// status is the swarm's counters and its providers' adverts so far; with
// heap, also the live heap the workers' nodes hold (less what each held
// before) and their goroutines.
type status struct {
	counters   snapshot
	adverts    uint64
	heapDelta  int64
	goroutines int
}

func (s *swarm) status(heap bool) (status, error) {
	st := status{counters: s.c.snapshot()}
	op := "status"
	if heap {
		op = "heap"
	}
	replies := make([]workerReply, len(s.workers))
	errs := make([]error, len(s.workers))
	var wg sync.WaitGroup
	for i, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = w.call(workerCommand{Op: op})
		}()
	}
	wg.Wait()
	for _, r := range replies {
		st.counters = st.counters.add(r.Counters)
		st.adverts += r.Adverts
		st.heapDelta += r.HeapDelta
		st.goroutines += r.Goroutines
	}
	return st, errors.Join(errs...)
}

// cpu is the swarm's CPU so far: this process's and every worker's, read
// at once; a worker whose CPU cannot be read (it is gone) counts nothing.
func (s *swarm) cpu() time.Duration {
	c := cpuTime()
	for _, w := range s.workers {
		if d, err := w.cpu(); err == nil {
			c += d
		}
	}
	return c
}

// profile ends the CPU profiles running in this process and the workers
// and, unless phase is "", starts new ones into dir/cpu-N-PHASE.pprof
// (this process) and dir/cpu-N-PHASE-wI.pprof (worker I).
func (s *swarm) profile(dir string, n int, phase string) error {
	if s.stopProfile != nil {
		s.stopProfile()
		s.stopProfile = nil
	}
	if phase != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		stop, err := startProfileFile(filepath.Join(dir, fmt.Sprintf("cpu-%d-%s.pprof", n, phase)))
		if err != nil {
			return err
		}
		s.stopProfile = stop
	}
	// All at once: a saturated worker takes tens of seconds to flush a
	// profile, and the next phase waits for the slowest.
	errs := make([]error, len(s.workers))
	var wg sync.WaitGroup
	for i, w := range s.workers {
		cmd := workerCommand{Op: "profile-stop"}
		if phase != "" {
			cmd = workerCommand{Op: "profile", Path: filepath.Join(dir, fmt.Sprintf("cpu-%d-%s-w%d.pprof", n, phase, i))}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = w.call(cmd)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// known is how many providers the requestor's pool lists for the task.
func (s *swarm) known() int {
	return len(s.requestor.pool.KnownProviders(wire.RequirementsOf(taskSpec())))
}

// waitReady waits until the requestor's pool lists want providers (all of
// them when the swarm has fewer), or d.
func (s *swarm) waitReady(ctx context.Context, want int, d time.Duration) bool {
	want = min(want, len(s.addrs))
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s.known() >= want {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s.known() >= want
}

// close stops the requestor and every worker (at once), then removes the
// work directory.
func (s *swarm) close() {
	var wg sync.WaitGroup
	if s.requestor != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.requestor.close()
		}()
	}
	for _, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.close()
		}()
	}
	wg.Wait()
	os.RemoveAll(s.dir)
}
