// Package discovery is how a node learns which providers exist and what
// they offer: the Pool (every node's view of the providers in its swarm),
// the Advertiser (a provider's signed capability record), and matching of
// task requirements against records (PoolFilter, FilterFor).
//
// The Advertiser signs a capability record (wire.CapRecord: hardware,
// executors, price, free capacity, a sequence number and an expiry) with
// the host key and gossips it on wire.TopicCaps at start, when free
// capacity changes in a way that matters (FreeChangeMatters: the provider
// fills up or frees again, or free CPUs, GPUs or memory move by more than
// half of what it offers)
// and otherwise every 4 minutes (the first time one minute after start,
// for peers that missed the first advert), jittered by ±20 % so providers
// started together drift apart; records are valid 10 minutes. Two adverts of one
// provider are never less than MinGap apart (1 minute), so a provider
// sends at most 1 advert a minute however many tasks come and go: every node
// checks the signature of every advert, and this bound is what keeps that
// cost O(providers), not O(providers × tasks). A record's free capacity is
// therefore approximate; requestors refine it from bids and declines. The
// Advertiser also announces DHT provider records under capability terms
// (TermCID of "executor:docker", "gpu:nvidia", "isolation:gvisor",
// "label:k=v", ...).
//
// The capability topic's validator (a p2p.TopicRule whose check is
// Pool.CheckGossip, registered by the node with every other topic's)
// rejects forged, malformed and oversized records at the first hop
// (lowering the sender's peer score) and ignores stale, expired and
// rate-limited ones, counting each (Pool.Stats); stale and expired records
// are dropped before their signature is checked. The pool is bounded: at
// most PoolConfig.MaxEntries providers (default 16,384) and MaxBytes of
// estimated memory (default 128 MiB; one entry costs at most about 33 KiB,
// a typical one 2-3 KiB: 10,000 typical records hold about 19 MiB of heap,
// TestPoolTenThousandProviders); when full, expired entries leave first,
// then entries never renewed, then those seen longest ago, so a flood of
// records from fresh identities displaces itself before any provider that
// keeps advertising. The per-peer record rate table is bounded too
// (p2p.PeerRate).
//
// Records are also exchanged over streams (wire.ProtoCaps): a request
// carries a bound (Max) and optionally a filter, and the answer is the
// responder's own record followed by a uniform random sample of the
// matching records it holds, so neither side's cost grows with the pool.
// While its pool is small (under 64 providers) a node asks each peer it
// connects to for a sample of 16, so a node that joins late has candidates
// within one round trip; gossip completes its view within a refresh
// interval. When a task needs more candidates than the pool holds,
// Pool.Lookup asks a few connected peers for records matching the task's
// requirements and the providers the DHT lists under the most specific
// term of those requirements (LookupTerm), sharing one search among
// concurrent callers. The requestor (package market) takes its candidates
// from the pool (Pool.Candidates) and asks a few of them directly.
//
// The package takes the libp2p interfaces (Network: host.Host, pubsub and
// an optional content routing), so it runs on an in-memory network in
// tests.
package discovery
