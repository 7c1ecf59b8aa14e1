// Package market is the marketplace protocol: task announcements on
// gossipsub, bids, awards, reports and cancels on libp2p streams, and the
// state machines of both roles.
//
// A Requestor announces a task, collects bids until every provider it knows
// on the task topic has answered (a bid or a decline with a reason) or a
// short window closes, awards the cheapest acceptable bid, falls back to the
// next one on a decline, and records the result. A Provider bids only within
// its free capacity (a bid reserves capacity for a short TTL), accepts an
// award while the reservation holds, runs the task through an
// executor.Executor, and keeps the result in a persistent outbox until the
// requestor acknowledges it.
//
// Both roles persist every transition through small store interfaces
// (TaskStore, ExecStore) before acting, so a node killed at any point
// resumes where it was. The package never touches Docker or Badger
// directly.
//
// Discovery: every node runs a Pool, its view of the providers in the
// swarm; a provider also runs an Advertiser. The Advertiser signs a
// capability record (wire.CapRecord: hardware, executors, price, free
// capacity, a sequence number and an expiry) with the host key and gossips
// it on wire.TopicCaps at start, when free capacity changes and every 30 s
// (valid 2 min); it also announces DHT provider records under capability
// terms (TermCID of "executor:docker", "gpu:nvidia", "label:k=v", ...). The
// Pool's topic validator rejects forged, malformed and oversized records at
// the first hop (lowering the sender's peer score) and ignores stale,
// expired and rate-limited ones, counting each (Pool.Stats). On every new
// connection the Pool asks the peer for the records it lacks
// (wire.ProtoCaps), so a node that joins late sees the pool within one
// round trip; Discover finds providers through the DHT alone. The requestor
// expects bids from the pool's matching providers (Pool.KnownProviders), so
// a bid window closes as soon as they all answered.
//
// Live tasks: a service task runs until its timeout or cancel on the
// provider (service.go), which answers tunnel and exec streams from the
// task's requestor only (live.go is the requestor's side); volumes follow
// the requestor by CID (volume.go); a task may be held until a start time
// (schedule.go).
package market
