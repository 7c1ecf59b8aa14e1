package main

import (
	"fmt"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/offload-project/offload/node"
	"github.com/offload-project/offload/p2p"
)

// reachFlags are `offload node`'s flags for the public network: joining
// it, the DHT mode, AutoNAT and the relay service.
type reachFlags struct {
	dhtMode, reachability, relayData, relayDuration string
}

func addReachFlags(f *pflag.FlagSet, cfg *node.Config) *reachFlags {
	r := &reachFlags{}
	f.BoolVar(&cfg.Public, "public", false, "join the public libp2p/IPFS network through its standard bootstrap list (also on after 'offload init --public')")
	f.StringVar(&r.dhtMode, "dht-mode", "", "auto (a DHT client until AutoNAT finds the node reachable), auto-server (a server until AutoNAT finds it behind NAT), client or server; default: auto with --public, auto-server for other swarms beyond loopback, server on loopback and in a private swarm")
	f.StringVar(&r.reachability, "reachability", "auto", "auto (AutoNAT decides), or force public (a server with a known public address) or private")
	f.BoolVar(&cfg.Reach.DisableRelayService, "no-relay-service", false, "do not offer a circuit relay to nodes behind NAT when this node is publicly reachable")
	f.StringVar(&r.relayDuration, "relay-max-duration", "", "longest a connection relayed by this node may last (default 2m; 'none': no limit)")
	f.StringVar(&r.relayData, "relay-max-data", "", "most bytes each direction of a relayed connection may carry (default 1MiB; 'none': no limit). With both 'none' the relay's connections are unlimited and carry content (bitswap) too; with any limit they carry only control messages (bids, awards, reports) until hole punching makes a direct connection")
	f.IntVar(&cfg.Reach.RelayLimits.MaxReservations, "relay-max-reservations", 0, "most peers holding a relay reservation at once (default 128)")
	f.IntVar(&cfg.Reach.RelayLimits.MaxCircuits, "relay-max-circuits", 0, "most relayed connections one peer may have open (default 16)")
	f.StringArrayVar(&cfg.Reach.DelegatedRouting, "routing-url", nil, "also find content providers through this HTTP routing endpoint (Delegated Routing V1, e.g. https://delegated-ipfs.dev; repeatable, at most 8; public swarm only)")
	return r
}

// apply validates the flags into cfg.
func (r *reachFlags) apply(cfg *node.Config) error {
	mode, err := p2p.ParseDHTMode(r.dhtMode)
	if err != nil {
		return fmt.Errorf("--dht-mode: %w", err)
	}
	cfg.Reach.DHTMode = mode
	if cfg.Reach.Reachability, err = p2p.ParseReachability(r.reachability); err != nil {
		return fmt.Errorf("--reachability: %w", err)
	}
	switch r.relayDuration {
	case "":
	case "none", "unlimited":
		cfg.Reach.RelayLimits.Duration = -1
	default:
		d, err := time.ParseDuration(r.relayDuration)
		if err != nil || d < time.Second {
			return fmt.Errorf("--relay-max-duration %q: want a duration of at least 1s such as 2m or 1h, or none", r.relayDuration)
		}
		cfg.Reach.RelayLimits.Duration = d
	}
	switch r.relayData {
	case "":
	case "none", "unlimited":
		cfg.Reach.RelayLimits.Data = -1
	default:
		n, err := units.RAMInBytes(r.relayData)
		if err != nil || n < 1<<10 {
			return fmt.Errorf("--relay-max-data %q: want a size of at least 1KiB such as 1MiB or 64MiB, or none", r.relayData)
		}
		cfg.Reach.RelayLimits.Data = n
	}
	if cfg.Reach.RelayLimits.MaxReservations < 0 || cfg.Reach.RelayLimits.MaxCircuits < 0 {
		return fmt.Errorf("--relay-max-reservations and --relay-max-circuits must not be negative")
	}
	if cfg.Public && cfg.SwarmKeyPath != "" {
		return fmt.Errorf("--public joins the public network; --swarm-key a private swarm: pick one")
	}
	return nil
}
