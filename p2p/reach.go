package p2p

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// DHTMode says whether the node answers DHT queries (server) or only asks
// them (client).
type DHTMode string

// DHT modes.
const (
	// DHTAuto is a client until AutoNAT finds the node publicly reachable,
	// then a server (and a client again if that changes).
	DHTAuto DHTMode = "auto"
	// DHTAutoServer is a server until AutoNAT finds the node behind NAT
	// (a client then, a server again if that changes): on a LAN, where
	// AutoNAT cannot decide, the node keeps serving its swarm's DHT.
	DHTAutoServer DHTMode = "auto-server"
	// DHTClient only asks: the right mode for a node other peers cannot dial.
	DHTClient DHTMode = "client"
	// DHTServer answers queries and stores provider records for others.
	DHTServer DHTMode = "server"
)

// ParseDHTMode reads "auto", "auto-server", "client" or "server" ("" is
// "").
func ParseDHTMode(s string) (DHTMode, error) {
	switch m := DHTMode(strings.ToLower(strings.TrimSpace(s))); m {
	case "", DHTAuto, DHTAutoServer, DHTClient, DHTServer:
		return m, nil
	}
	return "", fmt.Errorf("dht mode %q: want auto, auto-server, client or server", s)
}

func (m DHTMode) kad() dht.ModeOpt {
	switch m {
	case DHTClient:
		return dht.ModeClient
	case DHTServer:
		return dht.ModeServer
	case DHTAutoServer:
		return dht.ModeAutoServer
	}
	return dht.ModeAuto
}

// Reachability is what the node knows about whether other peers can dial
// it (Host.Reachability).
type Reachability string

// Reachability values, as `offload id` prints them.
const (
	// ReachLocal: NAT traversal is off (loopback only, a private swarm, or
	// Config.DisableNAT): the node does not probe its reachability.
	ReachLocal Reachability = "local"
	// ReachUnknown: AutoNAT has not decided yet.
	ReachUnknown Reachability = "unknown"
	// ReachPublic: AutoNAT peers dialed the node back.
	ReachPublic Reachability = "public"
	// ReachPrivate: behind NAT or a firewall, no relay address yet.
	ReachPrivate Reachability = "behind-nat"
	// ReachRelayed: behind NAT, reachable through relay addresses.
	ReachRelayed Reachability = "relayed"
)

// ParseReachability reads a forced reachability for Config.Reachability:
// "" (let AutoNAT decide), "public" or "private".
func ParseReachability(s string) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "", "auto":
		return "", nil
	case "public", "private":
		return v, nil
	}
	return "", fmt.Errorf("reachability %q: want auto, public or private", s)
}

// RelayLimits bound the circuit relay v2 service a publicly reachable node
// offers (Config.RelayLimits). Zero fields take the Default values below;
// a negative Duration or Data means no limit of that kind.
//
// What a relayed connection carries depends on them: with any limit the
// relay tells both ends, libp2p marks the connection limited, and only
// protocols that ask for it use it (the market's streams do; bitswap,
// gossipsub and the DHT do not), so content waits for hole punching to
// give a direct connection. With both Duration and Data negative the
// relay sends no limit, the connection is an ordinary one, and content
// moves through the relay when hole punching fails.
type RelayLimits struct {
	// Duration a relayed connection may last before the relay resets it.
	Duration time.Duration
	// Data each direction of a relayed connection may carry.
	Data int64
	// MaxReservations is how many peers may hold a reservation at once.
	MaxReservations int
	// MaxCircuits is how many relayed connections one peer may have open.
	MaxCircuits int
}

// Relay defaults: enough for the market's control messages (bids, awards,
// reports, a result's inline tail) and a hole punch to start; content
// moves over relays only when an operator raises Data and Duration.
const (
	DefaultRelayDuration        = 2 * time.Minute
	DefaultRelayData            = 1 << 20
	DefaultRelayMaxReservations = 128
	DefaultRelayMaxCircuits     = 16
)

func (l RelayLimits) options() []relayv2.Option {
	return []relayv2.Option{relayv2.WithResources(l.resources())}
}

func (l RelayLimits) resources() relayv2.Resources {
	res := relayv2.DefaultResources()
	res.MaxReservations = orDefault(l.MaxReservations, DefaultRelayMaxReservations)
	res.MaxCircuits = orDefault(l.MaxCircuits, DefaultRelayMaxCircuits)
	d := l.Duration
	if d == 0 {
		d = DefaultRelayDuration
	}
	data := l.Data
	if data == 0 {
		data = DefaultRelayData
	}
	if d < 0 && data < 0 {
		res.Limit = nil
		return res
	}
	// The relay has no "unlimited" per field: a year and 2^63 bytes are.
	if d < 0 {
		d = 365 * 24 * time.Hour
	}
	if data < 0 {
		data = math.MaxInt64
	}
	res.Limit = &relayv2.RelayLimit{Duration: d, Data: data}
	return res
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// usefulAddrs is the host's address factory: a node that has any address
// beyond loopback never offers its loopback addresses (identify, signed
// peer records, DHT provider records and capability adverts all read
// Host.Addrs), since no remote peer can use them. A node listening on
// loopback only keeps them: it is a local swarm.
func usefulAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		if !manet.IsIPLoopback(a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return addrs
	}
	return out
}

// dhtAddrFilter filters the addresses the public DHT advertises for this
// node and stores for others: no loopback ever, and no private (LAN)
// address once a public or relay address exists, since a DHT record is
// read by anyone on the network and a LAN address works only on its LAN.
func dhtAddrFilter(addrs []ma.Multiaddr) []ma.Multiaddr {
	var public, private []ma.Multiaddr
	for _, a := range addrs {
		switch {
		case manet.IsIPLoopback(a):
		case manet.IsPublicAddr(a):
			public = append(public, a)
		default:
			private = append(private, a)
		}
	}
	if len(public) > 0 {
		return public
	}
	return private
}

// AdvertAddrs filters a node's addresses (Host.Addrs) for records that
// every peer of the swarm reads, such as capability adverts: its public
// and relay addresses when it has any (a LAN address then only tells
// strangers about the node's network, and dialing it from elsewhere
// fails), else its LAN addresses, else, on a node listening on loopback
// only (a local swarm), its loopback ones.
func AdvertAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	if out := dhtAddrFilter(addrs); len(out) > 0 {
		return out
	}
	return usefulAddrs(addrs)
}

// watchReachability follows AutoNAT's verdict (EvtLocalReachabilityChanged)
// until the host closes.
func (h *Host) watchReachability() error {
	sub, err := h.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged), eventbus.Name("offload reachability"))
	if err != nil {
		return fmt.Errorf("subscribe to reachability: %w", err)
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-h.ctx.Done():
				return
			case ev, ok := <-sub.Out():
				if !ok {
					return
				}
				r := ev.(event.EvtLocalReachabilityChanged).Reachability
				h.reach.Store(int32(r))
				h.log.Info("reachability changed", "reachability", r.String())
			}
		}
	}()
	return nil
}

// Reachability says whether other peers can dial this node: public (AutoNAT
// peers dialed it back), behind-nat (they could not), relayed (behind NAT
// and reachable through a relay address), unknown (not decided yet), or
// local (NAT traversal is off: loopback, a private swarm, --no-nat).
func (h *Host) Reachability() Reachability {
	if !h.nat {
		return ReachLocal
	}
	for _, a := range h.Addrs() {
		if isRelayAddr(a) {
			return ReachRelayed
		}
	}
	switch network.Reachability(h.reach.Load()) {
	case network.ReachabilityPublic:
		return ReachPublic
	case network.ReachabilityPrivate:
		return ReachPrivate
	}
	return ReachUnknown
}

func isRelayAddr(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// NewStream opens a stream to p, over a relayed connection too when no
// direct one exists: bids, awards and reports between two nodes behind
// NAT travel through a relay until hole punching gives them a direct
// connection, which the swarm then prefers. Bulk transfers over a relay
// stop at the relay's limits (RelayLimits).
func (h *Host) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	return h.Host.NewStream(network.WithAllowLimitedConn(ctx, "offload"), p, pids...)
}

// Direct says whether p is connected over at least one connection that
// does not pass through a relay.
func (h *Host) Direct(p peer.ID) bool {
	for _, c := range h.Network().ConnsToPeer(p) {
		if !c.Stat().Limited && !isRelayAddr(c.RemoteMultiaddr()) {
			return true
		}
	}
	return false
}
