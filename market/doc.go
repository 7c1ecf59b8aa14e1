// Package market is the marketplace protocol: task announcements on
// gossipsub, bids, awards, reports and cancels on libp2p streams, and the
// state machines of both roles.
//
// A Requestor asks a few of the providers its pool knows to match a task
// (a targeted auction, targeted.go: the candidates are ranked by free
// capacity, recent answers, price and image locality, with random ties),
// directly on ask streams that carry each bid or decline back; it asks
// more only when those decline or stay silent, and announces the task on
// gossipsub to every provider only when the pool knows none (then it
// collects bids until every provider on the topic answered or a short
// window closed). It awards the cheapest acceptable bid, falls back to
// the next one on a decline, and records the result. A Provider bids only
// within its free capacity (a bid reserves capacity for a short TTL),
// accepts an award while the reservation holds, runs the task through an
// executor.Executor, and keeps the result in a persistent outbox until
// the requestor acknowledges it.
//
// Both roles persist every transition through small store interfaces
// (TaskStore, ExecStore) before acting, so a node killed at any point
// resumes where it was. The package never touches Docker or Badger
// directly.
//
// Discovery (the pool of providers, capability adverts, matching) is
// package market/discovery; the requestor only asks it, through
// RequestorConfig.Candidates, which providers may take a task (a targeted
// auction asks a few of them: targeted.go).
//
// Live tasks: a service task runs until its timeout or cancel on the
// provider (service.go), which answers tunnel and exec streams from the
// task's requestor only (live.go is the requestor's side); volumes follow
// the requestor by CID (volume.go); a task may be held until a start time
// (schedule.go).
package market
