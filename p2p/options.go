package p2p

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// resourceManager bounds connections, streams and memory with libp2p's
// default limits scaled to this machine (and libp2p's own services' limits),
// reporting to go-libp2p's metrics only when metrics is set
// (Config.Libp2pMetrics).
func resourceManager(metrics bool) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	var opts []rcmgr.Option
	if !metrics {
		opts = append(opts, rcmgr.WithMetricsDisabled())
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), opts...)
	if err != nil {
		return nil, fmt.Errorf("build resource manager: %w", err)
	}
	return rm, nil
}

// natTraversal says whether the public-swarm reachability services run: not
// when disabled, not in a private swarm, not when only loopback is listened
// on (tests, local swarms: nothing may leave the machine).
func natTraversal(cfg Config, listen []string) bool {
	if cfg.DisableNAT || len(cfg.SwarmKey) > 0 {
		return false
	}
	return beyondLoopback(listen)
}

// beyondLoopback says whether some listen address is not loopback.
func beyondLoopback(listen []string) bool {
	for _, s := range listen {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		if !manet.IsIPLoopback(m) {
			return true
		}
	}
	return false
}

// DefaultAutoRelayBootDelay is how long a node behind NAT waits to gather
// more relay candidates before it reserves a slot on the ones it has.
// libp2p waits 3 minutes for 4 candidates; a community swarm often has
// one or two relays, and a node behind NAT is unreachable until it holds
// a reservation.
const DefaultAutoRelayBootDelay = 5 * time.Second

// natOptions turn on AutoNAT (v1 and v2, client and service), port mapping,
// the circuit relay v2 service (running only while AutoNAT finds the node
// publicly reachable, with cfg.RelayLimits), the relay client with
// auto-relay (candidate relays are the peers we are connected to; one is
// enough) and hole punching (DCUtR).
func natOptions(ref interface{ Load() *host.Host }, cfg Config) []libp2p.Option {
	peerSource := func(ctx context.Context, num int) <-chan peer.AddrInfo {
		ch := make(chan peer.AddrInfo)
		go func() {
			defer close(ch)
			hp := ref.Load()
			if hp == nil {
				return
			}
			h := *hp
			for _, p := range h.Network().Peers() {
				if num <= 0 {
					return
				}
				select {
				case ch <- h.Peerstore().PeerInfo(p):
					num--
				case <-ctx.Done():
					return
				}
			}
		}()
		return ch
	}
	boot := cfg.AutoRelayBootDelay
	if boot <= 0 {
		boot = DefaultAutoRelayBootDelay
	}
	opts := []libp2p.Option{
		libp2p.NATPortMap(),
		libp2p.EnableNATService(),
		libp2p.EnableAutoNATv2(),
		libp2p.EnableRelay(),
		libp2p.EnableAutoRelayWithPeerSource(peerSource,
			autorelay.WithMinCandidates(1),
			autorelay.WithBootDelay(boot),
			autorelay.WithMinInterval(boot),
			autorelay.WithBackoff(time.Minute),
		),
		libp2p.EnableHolePunching(),
	}
	if !cfg.DisableRelayService {
		opts = append(opts, libp2p.EnableRelayService(cfg.RelayLimits.options()...))
	}
	switch cfg.Reachability {
	case "public":
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case "private":
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	return opts
}

// Gossipsub peer score thresholds: permissive enough that a small swarm (a
// few nodes on one machine) never crosses them by being quiet, strict
// enough that a peer sending a handful of invalid messages stops being
// gossiped with and, after a few more, is ignored.
var (
	// DefaultScoreThresholds are the thresholds used with peerScoreParams.
	DefaultScoreThresholds = pubsub.PeerScoreThresholds{
		GossipThreshold:             -100,
		PublishThreshold:            -200,
		GraylistThreshold:           -400,
		AcceptPXThreshold:           0,
		OpportunisticGraftThreshold: 1,
	}
)

// TopicScoreParams returns the score parameters given to every scored
// topic: a small reward for time in the mesh and first deliveries, and a
// heavy, slowly decaying penalty for messages the topic's validator rejects
// (10 points squared per invalid message). Mesh delivery rate penalties are
// off: our topics are quiet by design.
func TopicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		SkipAtomicValidation:           true,
		TopicWeight:                    1,
		TimeInMeshWeight:               0.01,
		TimeInMeshQuantum:              time.Second,
		TimeInMeshCap:                  300,
		FirstMessageDeliveriesWeight:   1,
		FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(10 * time.Minute),
		FirstMessageDeliveriesCap:      5,
		InvalidMessageDeliveriesWeight: -10,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
	}
}

// peerScoreParams builds the peer score parameters for the scored topics of
// swarm ns. IP colocation is penalized above 10 peers per address, except on
// loopback (local swarms and tests).
func peerScoreParams(ns string, topics []string) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	ts := map[string]*pubsub.TopicScoreParams{}
	for _, t := range topics {
		name := t
		if ns != "" {
			name = t + "/" + ns
		}
		ts[name] = TopicScoreParams()
	}
	_, v4, _ := net.ParseCIDR("127.0.0.0/8")
	_, v6, _ := net.ParseCIDR("::1/128")
	params := &pubsub.PeerScoreParams{
		Topics:                      ts,
		TopicScoreCap:               10,
		AppSpecificScore:            func(peer.ID) float64 { return 0 },
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -5,
		IPColocationFactorThreshold: 10,
		IPColocationFactorWhitelist: []*net.IPNet{v4, v6},
		BehaviourPenaltyWeight:      -1,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               time.Second,
		DecayToZero:                 pubsub.DefaultDecayToZero,
		RetainScore:                 10 * time.Minute,
		SeenMsgTTL:                  SeenMessagesTTL,
	}
	th := DefaultScoreThresholds
	return params, &th
}

// MDNSServiceName is the mDNS service of swarm ns: peers of other swarms
// (another key, or the public swarm) are not even dialed.
func MDNSServiceName(ns string) string {
	if ns == "" {
		return "_offload._udp"
	}
	return "_offload-" + ns + "._udp"
}

type mdnsNotifee struct{ h *Host }

// HandlePeerFound dials a peer announced on the local network.
func (m mdnsNotifee) HandlePeerFound(info peer.AddrInfo) {
	h := m.h
	if info.ID == h.ID() || h.Network().Connectedness(info.ID) == network.Connected {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		defer cancel()
		if err := h.Host.Connect(ctx, info); err != nil {
			h.log.Debug("mdns dial failed", "peer", info.ID, "err", err)
		}
	}()
}

func (h *Host) startMDNS() error {
	svc := mdns.NewMdnsService(h.Host, MDNSServiceName(h.Namespace), mdnsNotifee{h})
	if err := svc.Start(); err != nil {
		return fmt.Errorf("start mdns: %w", err)
	}
	h.mdns = svc
	return nil
}
