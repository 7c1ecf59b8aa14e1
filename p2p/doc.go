// Package p2p owns the node's libp2p side: the host (a persistent Ed25519
// identity, TCP and QUIC listeners, an optional pre-shared key for private
// swarms, the connection and resource managers), bootstrap dialing, the
// Kademlia DHT and gossipsub. Its subpackage stream holds the helpers for
// length-delimited protocol messages with deadlines, size limits and
// per-peer rate limits that every protocol shares.
//
// It knows nothing about tasks: the market package registers its own
// protocols and topics on the Host built here.
//
// Choices:
//   - The public swarm's DHT is the public IPFS DHT (Amino,
//     /ipfs/kad/1.0.0): CIDs held anywhere on IPFS resolve, published
//     content is provided there, and offload nodes meet there (every member
//     announces itself under RendezvousCID of its swarm and dials a few of
//     the members it finds; capability terms have keys of their own). A
//     node on the public network (Config.Public) is a DHT client until
//     AutoNAT finds it reachable (DHTAuto); another swarm beyond loopback
//     (a LAN, a community's bootstrap node) has it serve until AutoNAT
//     finds it behind NAT (DHTAutoServer); a private swarm, and a swarm on
//     loopback only, run a server (private swarms with their own protocol
//     prefix /offload/private/<id>, seeing nothing of the public DHT).
//   - With a swarm key only TCP is used: QUIC cannot carry a pre-shared key.
//   - Messages on streams are a uvarint length followed by JSON; a reader
//     refuses any message above its size limit before allocating it.
//   - Public swarm reachability (AutoNAT v1 and v2, UPnP/NAT-PMP port
//     mapping, a circuit relay v2 service with RelayLimits while the node
//     is publicly reachable, auto-relay through connected peers, hole
//     punching with DCUtR) is on only when some listen address is not
//     loopback, no swarm key is set and Config.DisableNAT is false: tests
//     and local swarms never send traffic beyond loopback. Host.NewStream
//     accepts relayed (limited) connections, so the market's messages
//     cross a relay until hole punching gives a direct connection, which
//     the swarm then prefers. Host.Reachability says which case holds.
//   - Addresses: a node with any address beyond loopback never offers its
//     loopback ones; the DHT carries its public and relay addresses when
//     it has some, LAN ones otherwise (identify on the receiving side
//     drops what the receiver cannot use).
//   - Host.ContentRouting is the DHT, or with Config.DelegatedRouting the
//     DHT and HTTP delegated routers (Delegated Routing V1) asked together;
//     announcements go to the DHT only.
//   - Bootstrap: a node dials only what it was given (Config.Bootstrap)
//     and, when Config.Public is set, PublicBootstrap (the standard libp2p
//     list); mDNS is opt-in (Config.MDNS) with a service name per swarm.
//   - The resource manager uses libp2p's default limits scaled to the
//     machine. Gossipsub peer scoring is on: topics in Config.ScoredTopics
//     penalize messages their validator rejects (-10 x count^2 per topic, so
//     seven invalid messages put a peer below the graylist threshold, after
//     which gossipsub ignores everything it sends); thresholds are
//     permissive enough for small quiet swarms, and loopback is exempt from
//     the IP-colocation penalty (tests and local swarms run every node on
//     127.0.0.1). Host.PeerScore reads the scores.
//   - Gossipsub signs strictly (every message carries its author and the
//     author's signature) and drops RPC frames over MaxPubSubMessage. Every
//     topic gets a TopicRule (Host.RegisterTopicRules): a per-topic size
//     limit, a per-author token bucket (PeerRate, bounded in peers and
//     dropped when idle) and the topic's own check; malformed or forged
//     messages are rejected (the sender's score drops), over-rate or stale
//     ones ignored. The node lists its rules in node/validate.go.
package p2p
