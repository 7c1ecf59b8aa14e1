package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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

// swarm is a requestor and its providers in this process.
type swarm struct {
	c          *counters
	requestors *requestorSet
	requestor  *node
	providers  []*node
	dir        string
}

// nodeConfig says how to build one node.
type nodeConfig struct {
	provider  bool
	bootstrap []string
	workDir   string
	log       *slog.Logger
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
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
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

// buildSwarm starts n providers and one requestor on loopback TCP: the
// first provider, then the requestor bootstrapped to it, then the other
// providers buildParallel at a time, each bootstrapped to bootPeers nodes
// drawn at random among those already up (as nodes join a real swarm
// through whichever peers they know; the DHT and gossip do the rest), so
// that no node holds a connection to every other.
func buildSwarm(ctx context.Context, n int, fdLimit uint64, log *slog.Logger) (*swarm, error) {
	dir, err := os.MkdirTemp("", "offload-scale-")
	if err != nil {
		return nil, err
	}
	s := &swarm{c: newCounters(), requestors: &requestorSet{peerCap: peerCap(n, fdLimit)}, dir: dir}
	mk := func(provider bool, boot []string, name string) (*node, error) {
		wd := filepath.Join(dir, name)
		if err := os.MkdirAll(wd, 0o700); err != nil {
			return nil, err
		}
		return newNode(ctx, s.c, nodeConfig{provider: provider, bootstrap: boot, workDir: wd, log: log, requestors: s.requestors})
	}
	first, err := mk(true, nil, "p0")
	if err != nil {
		s.close()
		return nil, fmt.Errorf("bootstrap provider: %w", err)
	}
	s.providers = append(s.providers, first)
	if s.requestor, err = mk(false, first.h.FullAddrs()[:1], "req"); err != nil {
		s.close()
		return nil, fmt.Errorf("requestor: %w", err)
	}
	var (
		upMu sync.Mutex
		up   = [][]string{first.h.FullAddrs()[:1]} // providers up, the requestor aside
	)
	bootFor := func() []string {
		upMu.Lock()
		defer upMu.Unlock()
		var boot []string
		for _, i := range mrand.Perm(len(up))[:min(bootPeers, len(up))] {
			boot = append(boot, up[i]...)
		}
		return boot
	}
	rest := make([]*node, n-1)
	errs := make([]error, n-1)
	sem := make(chan struct{}, buildParallel)
	var wg sync.WaitGroup
	for i := range rest {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rest[i], errs[i] = mk(true, bootFor(), fmt.Sprintf("p%d", i+1))
			if errs[i] == nil {
				upMu.Lock()
				up = append(up, rest[i].h.FullAddrs()[:1])
				upMu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, p := range rest {
		if p != nil {
			s.providers = append(s.providers, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.close()
		return nil, fmt.Errorf("providers: %w", err)
	}
	return s, nil
}

// known is how many providers the requestor's pool lists for the task.
func (s *swarm) known() int {
	return len(s.requestor.pool.KnownProviders(wire.RequirementsOf(taskSpec())))
}

// waitReady waits until the requestor's pool lists want providers (all of
// them when the swarm has fewer), or d.
func (s *swarm) waitReady(ctx context.Context, want int, d time.Duration) bool {
	want = min(want, len(s.providers))
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s.known() >= want {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s.known() >= want
}

// close stops every node, buildParallel at a time, then removes the work
// directories.
func (s *swarm) close() {
	nodes := s.providers
	if s.requestor != nil {
		nodes = append([]*node{s.requestor}, nodes...)
	}
	sem := make(chan struct{}, buildParallel)
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n.close()
		}()
	}
	wg.Wait()
	os.RemoveAll(s.dir)
}
