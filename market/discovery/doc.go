// Package discovery is how a node learns which providers exist and what
// they offer: the Pool (every node's view of the providers in its swarm),
// the Advertiser (a provider's signed capability record), and matching of
// task requirements against records (Matches, PoolFilter).
//
// The Advertiser signs a capability record (wire.CapRecord: hardware,
// executors, price, free capacity, a sequence number and an expiry) with
// the host key and gossips it on wire.TopicCaps at start, when free
// capacity changes and every 30 s (valid 2 min); it also announces DHT
// provider records under capability terms (TermCID of "executor:docker",
// "gpu:nvidia", "label:k=v", ...). The capability topic's validator
// (a p2p.TopicRule whose check is Pool.CheckGossip, registered by the node
// with every other topic's) rejects forged, malformed and oversized records
// at the first hop (lowering the sender's peer score) and ignores stale,
// expired and rate-limited ones, counting each (Pool.Stats). The pool is
// bounded: at most PoolConfig.MaxEntries providers (default 16,384) and
// MaxBytes of estimated memory (default 128 MiB; one entry costs at most
// about 33 KiB, a typical one 3 KiB); when full, expired entries leave
// first, then entries never renewed, then those seen longest ago, so a
// flood of records from fresh identities displaces itself before any
// provider that keeps advertising. The per-peer record rate table is
// bounded too (p2p.PeerRate). On every new connection the Pool asks the
// peer for the records it lacks (wire.ProtoCaps), so a node that joins late
// sees the pool within one round trip; Discover finds providers through the
// DHT alone. The requestor (package market) expects bids from the pool's
// matching providers (Pool.KnownProviders), so a bid window closes as soon
// as they all answered.
//
// The package takes the libp2p interfaces (Network: host.Host, pubsub and
// an optional content routing), so it runs on an in-memory network in
// tests.
package discovery
