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
package market
