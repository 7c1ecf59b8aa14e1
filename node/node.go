// Package node is offload's composition root and its embeddable API. New
// builds a node from a Config: the libp2p host (p2p), the Badger database
// (storage), the executors (executor/docker, executor/wasm), the market's
// requestor and, for a provider, its provider side; it also serves the
// local HTTP API that the CLI talks to (routes.go lists every route; the
// OpenAPI description is at /openapi.json, Prometheus metrics at /metrics
// and a web dashboard at /).
//
//	n, err := node.New(ctx, node.Config{Home: dir, Provider: true})
//	defer n.Close()
//	t, err := n.Submit(ctx, node.TaskSpec{Image: "hello:1", Cmd: []string{"/hello", "echo", "hi"}})
//	t, err = n.Wait(ctx, t.ID)
//
// The start order is host → database → block store → requestor → provider
// → API; Close
// tears down in reverse.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/hardware"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
	"github.com/offload-project/offload/storage"
	"github.com/offload-project/offload/storage/content"
)

// TaskSpec is what to run (see wire.TaskSpec).
type TaskSpec = wire.TaskSpec

// Task is a task's status as the API and CLI show it.
type Task = client.Task

// MarketTask is the requestor's full record of a task (what verify
// callbacks receive).
type MarketTask = market.Task

// Files under a node's home.
const (
	IdentityFile = "identity.key"
	SwarmKeyFile = "swarm.key"
	DBDir        = "db"
)

// Config describes a node. Only Home is required.
type Config struct {
	// Home holds the node's identity, database and API files.
	Home string
	// Listen multiaddrs (default p2p.DefaultListen); port 0 picks a free port.
	Listen []string
	// Bootstrap peers to join (multiaddrs with /p2p/ID).
	Bootstrap []string
	// SwarmKeyPath joins a private swarm; $Home/swarm.key is used when it
	// exists and this is empty.
	SwarmKeyPath string
	// APIAddr is where the HTTP API listens (host:port; port 0 picks one).
	// Empty means no API server.
	APIAddr string
	// AllowRemoteAPI must be set to listen on a non-loopback APIAddr; such
	// an API always serves HTTPS (see APITLSCert).
	AllowRemoteAPI bool
	// APITLS serves the API over HTTPS on a loopback APIAddr too.
	APITLS bool
	// APITLSCert and APITLSKey are PEM files of the certificate the API
	// serves (both or neither); given, the API serves HTTPS on any
	// address. Where HTTPS is needed and none is given, the node generates
	// a self-signed certificate once and keeps it in its home (api.crt,
	// api.key, mode 0600). The served certificate's SHA-256 fingerprint is
	// written to $Home/api.fingerprint for clients to pin.
	APITLSCert, APITLSKey string
	// MetricsAddr, when set, serves GET /metrics without the bearer token
	// on a listener of its own (host:port; port 0 picks one): the operator
	// chose who can reach that address. The API's /metrics always needs
	// the token.
	MetricsAddr string
	// AllowRemoteMetrics must be set to listen on a non-loopback MetricsAddr.
	AllowRemoteMetrics bool
	// Provider makes the node sell compute.
	Provider bool
	// Executors names the runtimes a provider offers ("docker", "wasm",
	// "build"). Empty: docker when an engine answers, and wasm.
	Executors []string
	// Build offers image builds (the "build" runtime: Dockerfiles built in
	// the task sandbox, executor/docker's Builder) on top of Executors; it
	// needs a Docker engine. Off by default.
	Build bool
	// BuildNetwork lets the RUN steps of image builds join this Docker
	// network (e.g. "bridge", or one the operator created for builds; see
	// docker.WithBuildNetwork); empty, the default, gives them none. It
	// needs Build (or "build" in Executors) and a network of that name on
	// the engine when the node starts. The provider then advertises the
	// hardware label build-network=NAME (LabelBuildNetwork), which
	// requestors of network builds require.
	BuildNetwork string
	// ExecutorImpls, when set, replaces Executors (for embedding and tests).
	ExecutorImpls []executor.Executor
	// Labels describe the provider (e.g. fpga=xilinx). The key
	// build-network (LabelBuildNetwork) is the node's: a label of that key
	// must name the builder's network (BuildNetwork), or New fails.
	Labels map[string]string
	// NvidiaSMI is the nvidia-smi command GPUs are detected with (default
	// nvidia-smi on PATH; "-" detects none).
	NvidiaSMI string
	// MDNS finds peers of the same swarm on the local network.
	MDNS bool
	// DisableNAT turns NAT traversal off (see p2p.Config.DisableNAT).
	DisableNAT bool
	// Public joins the public libp2p/IPFS network through its standard
	// bootstrap list (p2p.PublicBootstrap); also on when $Home/public
	// exists (offload init --public). Off, the node dials only Bootstrap.
	Public bool
	// Reach tunes the DHT mode, AutoNAT and the relay service (see
	// p2p.ReachOptions; the zero value is the default).
	Reach p2p.ReachOptions
	// Price in credits per CPU-second.
	Price float64
	// Capacity overrides the detected capacity offered by a provider.
	Capacity *market.Capacity
	// BidWindow caps the bid collection window (default market.DefaultBidWindow).
	BidWindow time.Duration
	// ProviderWait bounds how long an auction waits for a first provider.
	ProviderWait time.Duration
	// WASMCacheDir holds compiled WASM modules (default: the user's cache
	// directory, shared by the user's nodes).
	WASMCacheDir string
	// WASMCacheBytes bounds the compiled code kept in WASMCacheDir; the
	// least recently used modules no task runs are removed to make room
	// (default wasm.DefaultCacheBytes, 2 GiB).
	WASMCacheBytes int64
	// RequireGVisor runs every Docker task of this provider under gVisor
	// (the engine must have runsc registered; see SECURITY.md).
	RequireGVisor bool
	// AllowImages are the local Docker images requestors may run by name
	// or ID on this provider (path.Match patterns, e.g. "python:3.*").
	// Images given by CID are always allowed: they are loaded untagged and
	// run by content. Default: none.
	AllowImages []string
	// OutputsQuota bounds the disk one task may write (/outputs, /work and
	// its volumes together, enforced while it writes where the provider can
	// mount quota filesystems) and what it may return (default 1 GiB).
	OutputsQuota int64
	// MaxFetchBytes bounds each fetch of a task's image, inputs and
	// volumes on a provider (and each fetch of outputs this node makes for
	// a verify), measured as the content's DAG size and enforced while
	// fetching; a smaller size declared by the task bounds it instead
	// (default market.DefaultMaxFetchBytes, 16 GiB).
	MaxFetchBytes int64
	// ImageCacheBytes bounds the images and WASM modules a provider keeps
	// after loading them by CID, together; the least recently used that
	// no task uses are removed to make room, and one larger than the
	// whole budget is refused (default market.DefaultImageCacheBytes,
	// 20 GiB).
	ImageCacheBytes int64
	// ContentTimeout is how long a content fetch may go without receiving a
	// block before it fails (default: the content store's).
	ContentTimeout time.Duration
	// GCInterval is how often the block store collects what no pin holds
	// (the blocks a provider fetched for tasks, those of fetches refused
	// over their bound, unpinned outputs): DefaultGCInterval when zero,
	// never when negative.
	GCInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Node is a running offload node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	host    *p2p.Host
	db      *storage.DB
	content *content.Store
	ledger  *storage.Table[market.LedgerEntry]
	// holdMu orders the holds of content for tasks and their release
	// (buildpins.go).
	holdMu    sync.Mutex
	local     *localExecutors // verify steps on this node
	req       *market.Requestor
	prov      *market.Provider
	pool      *discovery.Pool       // every node's view of the providers
	adv       *discovery.Advertiser // a provider's capability adverts
	executors []executor.Executor
	isolation []string // stronger sandboxes the executors offer ("gvisor")
	api       *apiServer
	metrics   *metrics       // Prometheus registry; also the market's Observer
	metricsLn *metricsServer // unauthenticated /metrics (Config.MetricsAddr)
	tunnels   tunnelSet      // tunnels opened through the API (service.go)
	gc        *gcLoop        // periodic collection of the block store

	closeOnce sync.Once
	closeErr  error
}

// New starts a node. On error everything started so far is stopped.
func New(ctx context.Context, cfg Config) (_ *Node, err error) {
	if cfg.Home == "" {
		return nil, errors.New("node: home is required")
	}
	// Paths under the home are handed to Docker, which needs them absolute.
	home, err := filepath.Abs(cfg.Home)
	if err != nil {
		return nil, fmt.Errorf("node: home: %w", err)
	}
	cfg.Home = home
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("node: create home: %w", err)
	}
	// The home holds the identity key, the API token and the databases:
	// only this user may enter it, however it was created.
	if err := os.Chmod(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("node: restrict home: %w", err)
	}
	if err := checkBuildNetwork(cfg); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger}
	n.local = &localExecutors{n: n}
	n.metrics = newMetrics(n)
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	key, err := p2p.LoadOrCreateIdentity(filepath.Join(cfg.Home, IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	hcfg := p2p.Config{Identity: key, Listen: cfg.Listen, Bootstrap: cfg.Bootstrap, Logger: cfg.Logger,
		MDNS: cfg.MDNS, DisableNAT: cfg.DisableNAT, ScoredTopics: []string{wire.TopicTasks, wire.TopicCaps},
		Public: cfg.Public || publicMarked(cfg.Home), ReachOptions: cfg.Reach}
	if hcfg.SwarmKey, err = loadSwarmKey(cfg); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.host, err = p2p.New(ctx, hcfg); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.db, err = storage.Open(filepath.Join(cfg.Home, DBDir), cfg.Logger); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.content, err = openContent(ctx, n); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	cs := contentAdapter{s: n.content, timeout: cfg.ContentTimeout, maxBytes: cfg.MaxFetchBytes}
	n.ledger = storage.NewTable[market.LedgerEntry](n.db, "ledger")
	topic, err := n.host.PubSub.Join(n.host.Topic(wire.TopicTasks))
	if err != nil {
		return nil, fmt.Errorf("node: join task topic: %w", err)
	}
	if err := n.startPool(); err != nil {
		return nil, fmt.Errorf("node: pool: %w", err)
	}
	// The task table is wrapped so that offload_tasks{state} follows every
	// write instead of scanning the table at each scrape.
	tasks, err := n.metrics.countTasks(storage.NewTable[market.Task](n.db, "tasks"))
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.req, err = market.NewRequestor(n.host, tasks, topic, market.RequestorConfig{
		BidWindow: cfg.BidWindow, ProviderWait: cfg.ProviderWait, Logger: cfg.Logger, Content: cs, Ledger: n.ledger,
		VerifyRunner: n.local.run, WorkDir: filepath.Join(cfg.Home, "work"),
		Candidates: n.pool.Candidates, Discover: n.pool.Lookup, Observer: n.metrics,
		Volumes: storage.NewTable[market.VolumeRecord](n.db, "volumes"),
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	// After the requestor: the collection releases the content held for
	// ended tasks, which it asks the requestor about.
	n.gc = startGC(n.content, cfg.GCInterval, n.releaseTaskContent, n.log)
	if cfg.Provider {
		if n.executors, err = buildExecutors(ctx, cfg); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		if n.isolation, err = isolationOf(ctx, cfg, n.executors); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		var labels map[string]string
		if labels, err = providerLabels(cfg.Labels, n.executors); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		info, herr := hardware.Detect(ctx, hardware.Options{Dir: cfg.Home, Labels: labels, NvidiaSMI: cfg.NvidiaSMI})
		if herr != nil {
			n.log.Debug("hardware detection incomplete", "err", herr)
		}
		capacity := capacityOf(info)
		if cfg.Capacity != nil {
			capacity = *cfg.Capacity
		}
		n.prov, err = market.NewProvider(n.host, storage.NewTable[market.ExecRecord](n.db, "executions"), topic, n.executors, market.ProviderConfig{
			Capacity: capacity, GPUs: gpuDevices(info, capacity), Hardware: advertHardware(info), Price: cfg.Price, Logger: cfg.Logger,
			WorkDir: filepath.Join(cfg.Home, "work"), Content: cs, Ledger: n.ledger,
			Images:   storage.NewTable[market.CachedImage](n.db, "images"),
			OnChange: n.advertChanged, Observer: n.metrics, OutputsQuota: cfg.OutputsQuota,
			MaxFetchBytes: cfg.MaxFetchBytes, AllowedImages: cfg.AllowImages, DiskQuota: diskQuota(n.log),
			Isolation: n.isolation, IsolationRequired: cfg.RequireGVisor, ImageCacheBytes: cfg.ImageCacheBytes,
		})
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		if err := n.newAdvertiser(advertHardware(info), capacity); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		if err := n.prov.Start(); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		if err := n.adv.Start(); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	if err := n.req.Start(); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	// Gossip from the peers this node has done business with (requestors
	// whose tasks ran on its provider, providers its requestor heard from) never
	// waits in the budget strangers share (p2p/budget.go).
	prov, req := n.prov, n.req
	n.host.SetTrust(func(p peer.ID) bool { return (prov != nil && prov.Knows(p)) || req.HeardFrom(p) })
	if cfg.APIAddr != "" {
		if n.api, err = startAPI(n, cfg.APIAddr, cfg.AllowRemoteAPI); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	if cfg.MetricsAddr != "" {
		if n.metricsLn, err = startMetrics(n, cfg.MetricsAddr, cfg.AllowRemoteMetrics); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	n.log.Info("node started", "peer", n.host.ID(), "provider", cfg.Provider, "addrs", n.host.Addrs())
	return n, nil
}

func loadSwarmKey(cfg Config) ([]byte, error) {
	path := cfg.SwarmKeyPath
	if path == "" {
		path = filepath.Join(cfg.Home, SwarmKeyFile)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	return p2p.ReadSwarmKey(path)
}

// Close stops the node: API, provider, requestor, database, host. Tasks in
// flight stay stored and resume on the next start.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.metricsLn != nil {
			errs = append(errs, n.metricsLn.close())
		}
		if n.api != nil {
			errs = append(errs, n.api.close())
		}
		n.tunnels.closeAll()
		n.gc.stop()
		if n.prov != nil {
			errs = append(errs, n.prov.Close())
		}
		if n.req != nil {
			errs = append(errs, n.req.Close())
		}
		errs = append(errs, n.closePool())
		n.local.close()
		for _, e := range n.executors {
			if c, ok := e.(interface{ Close() error }); ok {
				errs = append(errs, c.Close())
			}
		}
		if n.content != nil {
			errs = append(errs, n.content.Close())
		}
		if n.db != nil {
			errs = append(errs, n.db.Close())
		}
		if n.host != nil {
			errs = append(errs, n.host.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Identity returns the node's ID and full multiaddrs.
func (n *Node) Identity() client.Identity {
	return client.Identity{ID: n.host.ID().String(), Addrs: n.host.FullAddrs(), Reachability: string(n.host.Reachability())}
}

// Host returns the node's libp2p host (for embedding programs that add
// their own protocols).
func (n *Node) Host() *p2p.Host { return n.host }

// Connect dials another node by multiaddr (with /p2p/ID).
func (n *Node) Connect(ctx context.Context, addr string) error {
	infos, err := p2p.ParseAddrs([]string{addr})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := n.host.Connect(ctx, info); err != nil {
			return fmt.Errorf("connect %s: %w", info.ID, err)
		}
	}
	return nil
}

// Peers lists connected peers.
func (n *Node) Peers() []client.Peer {
	var out []client.Peer
	for _, p := range n.host.Network().Peers() {
		if n.host.Network().Connectedness(p) != network.Connected {
			continue
		}
		var addrs []string
		for _, c := range n.host.Network().ConnsToPeer(p) {
			addrs = append(addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, client.Peer{ID: p.String(), Addrs: addrs})
	}
	return out
}

// Submit stores a task and starts working on it; it returns as soon as the
// task is stored.
func (n *Node) Submit(ctx context.Context, spec TaskSpec) (*Task, error) {
	t, err := n.req.Submit(ctx, spec)
	if err != nil {
		return nil, err
	}
	return view(t), nil
}

// Get returns a task's status.
func (n *Node) Get(id string) (*Task, error) {
	t, err := n.req.Get(id)
	if err != nil {
		return nil, err
	}
	return view(t), nil
}

// List returns every task, newest first.
func (n *Node) List() ([]*Task, error) {
	ts, err := n.req.List()
	if err != nil {
		return nil, err
	}
	out := make([]*Task, len(ts))
	for i, t := range ts {
		out[i] = view(t)
	}
	return out, nil
}

// Wait blocks until the task is completed, failed or canceled.
func (n *Node) Wait(ctx context.Context, id string) (*Task, error) {
	t, err := n.req.Wait(ctx, id)
	if err != nil {
		return nil, err
	}
	return view(t), nil
}

// Watch calls fn with the task's status after every change until it is
// terminal, fn returns an error or ctx is done.
func (n *Node) Watch(ctx context.Context, id string, fn func(*Task) error) error {
	ch, stop, err := n.req.Watch(id)
	if err != nil {
		return err
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case t := <-ch:
			if err := fn(view(t)); err != nil {
				return err
			}
			if t.State.IsTerminal() {
				return nil
			}
		}
	}
}

// Cancel cancels a task and stops it on its provider.
func (n *Node) Cancel(ctx context.Context, id string) (*Task, error) {
	t, err := n.req.Cancel(ctx, id)
	if err != nil {
		return nil, err
	}
	return view(t), nil
}

// EnsureToken returns the API token stored in home, creating it (mode 0600)
// when missing.
func EnsureToken(home string) (string, error) {
	path := filepath.Join(home, client.TokenFile)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("generate api token: %w", err)
	}
	token := hex.EncodeToString(buf)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", fmt.Errorf("create home: %w", err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write api token: %w", err)
	}
	return token, nil
}

// Logs calls fn with a task's output as its provider sends it, from
// offset from of attempt on (attempt -1: the current one), following it
// as it is written when follow is set, until the task ends, fn returns an
// error or ctx is done (see market.Requestor.Logs).
func (n *Node) Logs(ctx context.Context, id string, attempt int, from int64, follow bool, fn func(client.LogChunk) error) error {
	return n.req.Logs(ctx, id, attempt, from, follow, func(attempt int, c wire.LogChunk) error {
		next := c.Offset + int64(len(c.Data))
		return fn(client.LogChunk{Attempt: attempt, Offset: c.Offset, Stream: c.Stream, Text: strings.ToValidUTF8(string(c.Data), "\uFFFD"),
			Skipped: c.Skipped, Note: c.Error, Next: fmt.Sprintf("%d:%d", attempt, next)})
	})
}
