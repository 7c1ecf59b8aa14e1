package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/amino"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	coreconnmgr "github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	routedhost "github.com/libp2p/go-libp2p/p2p/host/routed"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/time/rate"
)

// Defaults used when Config leaves a field empty.
var (
	// DefaultListen listens on every interface, TCP and QUIC, port 4001.
	DefaultListen = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}
)

const (
	// DefaultProtocolPrefix is the DHT protocol prefix of the public swarm:
	// the public IPFS DHT (Amino, /ipfs/kad/1.0.0), so that CIDs held
	// anywhere on IPFS resolve and offload nodes meet through it.
	DefaultProtocolPrefix = amino.ProtocolPrefix
	// MaxPubSubMessage bounds one gossipsub RPC frame (gossipsub's own
	// WithMaxMessageSize): a larger frame is dropped before it is parsed.
	// A frame may batch several messages and control entries, so it sits
	// well above every topic's own limit (TopicRule.MaxSize), which the
	// topic validators apply per message.
	MaxPubSubMessage = 1 << 20
	// SeenMessagesTTL is how long gossipsub remembers a message it saw (to
	// drop duplicates, and its deliveries for the peer score). Gossip
	// reaches every node within seconds and the task topic's messages are
	// stale after their bid window, so 30 s is ample; gossipsub's default
	// (2 minutes) made a flood of valid messages cost four times the memory.
	SeenMessagesTTL = 30 * time.Second
	// validateQueue is how many received messages may wait for validation.
	validateQueue = 4096
	// scoreInspectPeriod is how often PeerScore's snapshot is refreshed.
	scoreInspectPeriod = time.Second
	// bootstrapRetry is how often unconnected bootstrap peers are dialed again.
	bootstrapRetry = 5 * time.Second
)

// Config describes the host to build. Only Identity is required.
type Config struct {
	Identity crypto.PrivKey
	// Listen multiaddrs; port 0 picks a free port. Default DefaultListen.
	Listen []string
	// Bootstrap peers (multiaddrs ending in /p2p/ID), dialed at start and
	// again whenever the connection to them is lost.
	Bootstrap []string
	// SwarmKey makes the node a member of a private swarm: peers without the
	// same key cannot connect. Only TCP is used in that mode.
	SwarmKey pnet.PSK
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MDNS finds and dials peers of the same swarm on the local network
	// (multicast DNS, a service name per swarm). Off by default: it sends
	// multicast traffic on every interface.
	MDNS bool
	// DisableNAT turns off NAT traversal (AutoNAT service, UPnP/NAT-PMP port
	// mapping, auto-relay and hole punching). It is off anyway in a private
	// swarm and when every listen address is loopback, so that tests and
	// local swarms never send traffic beyond loopback.
	DisableNAT bool
	// Libp2pMetrics keeps go-libp2p's own metrics (swarm, identify,
	// resource manager, relay, hole punching), which it registers with
	// prometheus.DefaultRegisterer, for a program embedding the node that
	// serves that registry. Off by default: the node serves only its own
	// registry (node.Metrics), and keeping them cost a few percent of the
	// CPU of every stream (the resource manager reports each stream's and
	// each reservation's opening and closing to them).
	Libp2pMetrics bool
	// ScoredTopics are base topic names (see Topic) given the default
	// gossipsub topic score parameters (TopicScoreParams).
	ScoredTopics []string
	// UntrustedGossipRate and UntrustedGossipBurst bound the gossip
	// messages a second taken from all peers the node does not trust,
	// together (see Host.SetTrust); DefaultUntrustedGossipRate and
	// DefaultUntrustedGossipBurst when zero.
	UntrustedGossipRate  rate.Limit
	UntrustedGossipBurst int
	// Gater, when set, decides which peers may connect (a test knob: keep
	// two hosts of a test apart so that gossip must pass through a third).
	Gater coreconnmgr.ConnectionGater
	// Public adds PublicBootstrap to Bootstrap: the node joins the public
	// libp2p/IPFS network. Tests set it only after replacing
	// PublicBootstrap with addresses of their own; benchmarks and examples
	// never do.
	Public bool
	// ReachOptions tune the DHT mode, AutoNAT, the relay service, the
	// rendezvous and delegated routing.
	ReachOptions
}

// ReachOptions tune how a public node makes itself reachable and finds
// others: the DHT mode, AutoNAT's verdict, the relay service it offers and
// the relays it uses, the rendezvous and delegated routing. The zero value
// is the default.
type ReachOptions struct {
	// DHTMode, when empty, is DHTServer in a private swarm and on loopback
	// (a local swarm needs routing tables and nothing leaves the machine);
	// with NAT traversal, DHTAuto on the public network (Public: a client
	// until AutoNAT finds the node publicly reachable) and DHTAutoServer
	// otherwise (a LAN or community swarm: a server until AutoNAT finds the
	// node behind NAT); DHTClient when NAT traversal is disabled beyond
	// loopback.
	DHTMode DHTMode
	// Reachability forces AutoNAT's verdict: "public" (an operator's
	// server with a known public address: it serves the DHT and the relay
	// at once) or "private"; "" lets AutoNAT decide.
	Reachability string
	// DisableRelayService stops a publicly reachable node from offering a
	// circuit relay v2 service to nodes behind NAT.
	DisableRelayService bool
	// RelayLimits bound the relay service (see RelayLimits).
	RelayLimits RelayLimits
	// RendezvousInterval is the longest wait between two lookups of the
	// swarm's rendezvous key in the DHT (RendezvousCID): DefaultRendezvousInterval
	// when zero, off when negative. When zero it is on only where NAT
	// traversal is on or Public is set: a swarm on loopback is made of
	// --bootstrap and mDNS peers.
	RendezvousInterval time.Duration
	// DelegatedRouting are HTTP routing endpoints (the Delegated Routing
	// V1 API, e.g. https://delegated-ipfs.dev) asked for content providers
	// beside the DHT (Host.ContentRouting); at most 8, public swarm only.
	DelegatedRouting []string
	// AutoRelayBootDelay is how long a node behind NAT waits for more relay
	// candidates before it takes a reservation with the ones it has
	// (DefaultAutoRelayBootDelay when zero).
	AutoRelayBootDelay time.Duration
}

// PublicBootstrap is the standard public libp2p bootstrap list (the one
// IPFS nodes use), dialed only when Config.Public is set (`offload init
// --public`, `offload node --public`). Tests replace it with addresses of
// their own before they set Public; nothing else may dial it.
var PublicBootstrap = publicBootstrap()

func publicBootstrap() []string {
	out := make([]string, 0, len(dht.DefaultBootstrapPeers))
	for _, a := range dht.DefaultBootstrapPeers {
		out = append(out, a.String())
	}
	return out
}

// DefaultBootstrap is the bootstrap list of a node that names none and did
// not ask for the public network: empty, so that a node never dials beyond
// what it was told (it joins through --bootstrap, --public, mDNS or peers
// that dial it).
var DefaultBootstrap = []string{}

// Host bundles the libp2p host with the DHT and gossipsub that run on it.
type Host struct {
	host.Host
	DHT *dht.IpfsDHT
	// ContentRouting finds content providers: the DHT and the delegated
	// routers of Config.DelegatedRouting; it announces in the DHT only.
	ContentRouting routing.ContentRouting
	PubSub         *pubsub.PubSub
	// Namespace is "" in the public swarm and the swarm ID in a private one;
	// protocols and topics are suffixed with it (see Topic).
	Namespace string

	mdns interface{ Close() error }
	log  *slog.Logger
	// scores is gossipsub's latest peer score snapshot (PeerScore).
	scores *atomic.Pointer[map[peer.ID]float64]
	// budget bounds the gossip taken from untrusted peers (budget.go).
	budget *gossipBudget
	// validators are the registered topic rules by full topic name.
	valMu      sync.Mutex
	validators map[string]*topicValidator
	bootstrap  []peer.AddrInfo
	// nat: the reachability services run (natTraversal); reach is the
	// latest network.Reachability AutoNAT reported.
	nat       bool
	reach     atomic.Int32
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New builds and starts a host with its DHT and gossipsub. The returned host
// owns background goroutines until Close.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Identity == nil {
		return nil, errors.New("p2p: identity is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = DefaultListen
	}
	if len(cfg.SwarmKey) > 0 {
		// QUIC cannot carry a pre-shared key: keep TCP listeners only.
		var tcp []string
		for _, a := range listen {
			if !strings.Contains(a, "/udp/") {
				tcp = append(tcp, a)
			}
		}
		if len(tcp) == 0 {
			return nil, fmt.Errorf("p2p: a private swarm needs a TCP listen address (got %v)", listen)
		}
		listen = tcp
	}
	if cfg.Public && len(cfg.SwarmKey) > 0 {
		return nil, errors.New("p2p: the public network and a private swarm key exclude each other")
	}
	if len(cfg.DelegatedRouting) > 0 && len(cfg.SwarmKey) > 0 {
		return nil, errors.New("p2p: a private swarm sees nothing of the public network: no delegated routing")
	}
	bootAddrs := cfg.Bootstrap
	if cfg.Public {
		bootAddrs = append(slices.Clone(PublicBootstrap), bootAddrs...)
	}
	boot, err := ParseAddrs(bootAddrs)
	if err != nil {
		return nil, fmt.Errorf("p2p: bootstrap: %w", err)
	}
	cm, err := connmgr.NewConnManager(100, 400, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	rm, err := resourceManager(cfg.Libp2pMetrics)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(cfg.Identity),
		libp2p.ListenAddrStrings(listen...),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.AddrsFactory(usefulAddrs),
	}
	if !cfg.Libp2pMetrics {
		opts = append(opts, libp2p.DisableMetrics())
	}
	if cfg.Gater != nil {
		opts = append(opts, libp2p.ConnectionGater(cfg.Gater))
	}
	if len(cfg.SwarmKey) > 0 {
		// libp2p falls back to its private transports (TCP, websocket).
		opts = append(opts, libp2p.PrivateNetwork(cfg.SwarmKey))
	}
	var hostRef atomic.Pointer[host.Host]
	nat := natTraversal(cfg, listen)
	if nat {
		opts = append(opts, natOptions(&hostRef, cfg)...)
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		// libp2p closes the resource manager it was given.
		return nil, fmt.Errorf("p2p: start host: %w", err)
	}
	hostRef.Store(&h)
	ns := SwarmID(cfg.SwarmKey)
	prefix := DefaultProtocolPrefix
	if ns != "" {
		prefix = protocol.ID("/offload/private/" + ns)
	}
	mode := cfg.DHTMode
	if mode == "" {
		mode = defaultDHTMode(ns != "", nat, cfg.Public, beyondLoopback(listen))
	}
	dhtOpts := []dht.Option{dht.Mode(mode.kad()), dht.ProtocolPrefix(protocol.ID(prefix)), dht.BootstrapPeers(boot...),
		// What strangers put on this node while it is a DHT server.
		dht.Datastore(newBoundedStore(DefaultDHTStoreRecords, DefaultDHTStoreBytes))}
	if ns == "" && beyondLoopback(listen) {
		dhtOpts = append(dhtOpts, dht.AddressFilter(dhtAddrFilter))
	}
	kad, err := dht.New(h, dhtOpts...)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("p2p: start dht: %w", err)
	}
	cr, err := newContentRouting(kad, cfg.DelegatedRouting)
	if err != nil {
		kad.Close()
		h.Close()
		return nil, fmt.Errorf("p2p: %w", err)
	}
	scores := new(atomic.Pointer[map[peer.ID]float64])
	budget := newGossipBudget(cfg.UntrustedGossipRate, cfg.UntrustedGossipBurst)
	budget.fixed = map[peer.ID]bool{}
	for _, b := range boot {
		budget.fixed[b.ID] = true
	}
	budget.graylisted = func(p peer.ID) bool {
		m := scores.Load()
		if m == nil {
			return false
		}
		s, ok := (*m)[p]
		return ok && s < DefaultScoreThresholds.GraylistThreshold
	}
	ps, err := pubsub.NewGossipSub(ctx, h,
		// Before anything else: what untrusted peers may make this node
		// verify and remember (budget.go).
		pubsub.WithAppSpecificRpcInspector(budget.inspect),
		// StrictSign: every message carries its author (From), a sequence
		// number and the author's signature; gossipsub drops unsigned or
		// badly signed messages (and penalizes their sender) before any
		// topic validator runs.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithMaxMessageSize(MaxPubSubMessage),
		// Every message seen is remembered (its id, its deliveries for the
		// peer score) for SeenMessagesTTL: the memory a flood of valid
		// messages costs is its rate times this.
		pubsub.WithSeenMessagesTTL(SeenMessagesTTL),
		// Messages waiting for their topic validator: gossipsub's default
		// (32) drops honest messages at random under a flood of valid
		// ones; the per-author rates bound what the queue holds.
		pubsub.WithValidateQueueSize(validateQueue),
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerExchange(true),
		pubsub.WithPeerScore(peerScoreParams(ns, cfg.ScoredTopics)),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(func(m map[peer.ID]float64) { scores.Store(&m) }), scoreInspectPeriod),
	)
	if err != nil {
		kad.Close()
		h.Close()
		return nil, fmt.Errorf("p2p: start gossipsub: %w", err)
	}
	hctx, cancel := context.WithCancel(context.Background())
	n := &Host{
		// The routed host finds a peer's addresses in the DHT when a stream
		// is opened to a peer we only heard of through gossip.
		Host: routedhost.Wrap(h, kad), DHT: kad, ContentRouting: cr, PubSub: ps, Namespace: ns,
		log: log, bootstrap: boot, ctx: hctx, cancel: cancel,
		scores: scores, validators: map[string]*topicValidator{}, budget: budget, nat: nat,
	}
	if nat {
		if err := n.watchReachability(); err != nil {
			n.Close()
			return nil, fmt.Errorf("p2p: %w", err)
		}
	}
	if cfg.MDNS {
		if err := n.startMDNS(); err != nil {
			n.Close()
			return nil, fmt.Errorf("p2p: mdns: %w", err)
		}
	}
	n.connectBootstrap(ctx)
	if err := kad.Bootstrap(hctx); err != nil {
		log.Debug("dht bootstrap", "err", err)
	}
	n.wg.Add(1)
	go n.keepBootstrapped()
	if rv := cfg.RendezvousInterval; rv > 0 || rv == 0 && (nat || cfg.Public) {
		if rv == 0 {
			rv = DefaultRendezvousInterval
		}
		sub, err := h.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated), eventbus.Name("offload rendezvous"))
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("p2p: rendezvous: %w", err)
		}
		n.wg.Add(1)
		go n.rendezvous(rv, sub)
	}
	return n, nil
}

// Topic returns the gossipsub topic name for base in this host's swarm.
func (h *Host) Topic(base string) string {
	if h.Namespace == "" {
		return base
	}
	return base + "/" + h.Namespace
}

// FullAddrs returns the host's listen addresses with its /p2p/ID suffix, loopback
// and private ones included (the caller filters for what it needs).
func (h *Host) FullAddrs() []string {
	info := peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
	mas, err := peer.AddrInfoToP2pAddrs(&info)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(mas))
	for _, a := range mas {
		out = append(out, a.String())
	}
	return out
}

// Connect dials a peer by multiaddr (with /p2p/ID). A relayed connection
// satisfies it (see NewStream): a peer behind NAT is reached through its
// relay addresses, and hole punching may then make the connection direct.
func (h *Host) Connect(ctx context.Context, info peer.AddrInfo) error {
	if info.ID == h.ID() {
		return errors.New("p2p: refusing to dial self")
	}
	return h.Host.Connect(network.WithAllowLimitedConn(ctx, "offload"), info)
}

// Close stops background work, gossipsub, the DHT and the host.
func (h *Host) Close() error {
	var err error
	h.closeOnce.Do(func() {
		h.cancel()
		h.wg.Wait()
		if h.mdns != nil {
			err = h.mdns.Close()
		}
		err = errors.Join(err, h.DHT.Close(), h.Host.Close())
	})
	return err
}

func (h *Host) connectBootstrap(ctx context.Context) {
	var wg sync.WaitGroup
	for _, info := range h.bootstrap {
		if info.ID == h.ID() || h.Network().Connectedness(info.ID) == network.Connected {
			continue
		}
		wg.Add(1)
		go func(info peer.AddrInfo) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := h.Host.Connect(cctx, info); err != nil {
				h.log.Warn("bootstrap dial failed", "peer", info.ID, "err", err)
			}
		}(info)
	}
	wg.Wait()
}

// keepBootstrapped re-dials bootstrap peers that are not connected, so a
// node started before its bootstrap peer (or that lost it) joins when it can.
func (h *Host) keepBootstrapped() {
	defer h.wg.Done()
	if len(h.bootstrap) == 0 {
		return
	}
	t := time.NewTicker(bootstrapRetry)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
			h.connectBootstrap(h.ctx)
		}
	}
}

// ParseAddrs parses multiaddrs that end in /p2p/ID and merges those of one
// peer.
func ParseAddrs(addrs []string) ([]peer.AddrInfo, error) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("invalid multiaddr %q: %w", s, err)
		}
		mas = append(mas, m)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("multiaddr without a /p2p/ peer id: %w", err)
	}
	return infos, nil
}

// defaultDHTMode is ReachOptions.DHTMode's default (see there).
func defaultDHTMode(private, nat, public, beyondLoopback bool) DHTMode {
	switch {
	case private || !nat && !beyondLoopback:
		return DHTServer
	case nat && public:
		return DHTAuto
	case nat:
		return DHTAutoServer
	}
	return DHTClient
}
