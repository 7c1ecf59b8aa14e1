package p2p

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multihash"
)

// Rendezvous: every node of a swarm announces itself in the DHT under one
// well-known key per swarm (RendezvousCID) and looks the key up, dialing a
// few of the members it finds. Two nodes that share nothing but an
// ordinary IPFS bootstrap node meet this way within seconds; gossipsub's
// peer exchange and the capability pool take over from there.
const (
	// DefaultRendezvousInterval is the longest wait between two lookups
	// (and between two announcements) of the swarm's rendezvous key.
	DefaultRendezvousInterval = 5 * time.Minute
	// rendezvousFirst is the wait before the first lookup (the DHT needs
	// its bootstrap peers in its routing table) and the first retry.
	rendezvousFirst = 2 * time.Second
	// rendezvousPeers bounds the members dialed at once and the members
	// connected per lookup.
	rendezvousPeers = 8
	// rendezvousRetry is the longest wait between two attempts while the
	// announcement fails.
	rendezvousRetry = 30 * time.Second
	// rendezvousReact is the shortest time between two rounds caused by
	// changes of the node's own addresses.
	rendezvousReact = 10 * time.Second
	// rendezvousDial bounds one dial of a member.
	rendezvousDial = 5 * time.Second
	// rendezvousTimeout bounds one announcement or one lookup.
	rendezvousTimeout = 30 * time.Second
)

// RendezvousCID is the DHT key under which the members of swarm ns ("" for
// the public swarm) announce themselves.
func RendezvousCID(ns string) cid.Cid {
	mh, _ := multihash.Sum([]byte("offload/swarm/1/"+ns), multihash.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, mh)
}

// rendezvous runs until the host closes: it announces the node under the
// swarm's key and looks for other members, quickly at first (the wait
// doubles from rendezvousFirst after each lookup), then every maxWait. A
// newcomer finds the members already there on its first lookups; they
// find it on theirs or when it dials them.
func (h *Host) rendezvous(maxWait time.Duration, addrs event.Subscription) {
	defer h.wg.Done()
	defer addrs.Close()
	key := RendezvousCID(h.Namespace)
	wait := rendezvousFirst
	var announced, lastRound time.Time
	due := time.Now().Add(wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	schedule := func(at time.Time) {
		due = at
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(time.Until(at))
	}
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-addrs.Out():
			// New addresses (a relay reservation, a public address):
			// the records others hold are stale, and the members this
			// node could not reach may now reach it. Announce again and
			// look again soon, at most once per rendezvousReact.
			announced, wait = time.Time{}, rendezvousFirst
			at := time.Now().Add(rendezvousFirst)
			if next := lastRound.Add(rendezvousReact); at.Before(next) {
				at = next
			}
			if at.Before(due) {
				schedule(at)
			}
			continue
		case <-t.C:
		}
		lastRound = time.Now()
		if announced.IsZero() || time.Since(announced) >= maxWait {
			ctx, cancel := context.WithTimeout(h.ctx, rendezvousTimeout)
			if err := h.DHT.Provide(ctx, key, true); err != nil {
				h.log.Debug("rendezvous announce", "err", err)
			} else {
				announced = time.Now()
			}
			cancel()
		}
		if met := h.meet(key); met > 0 {
			h.log.Debug("rendezvous", "met", met)
		}
		if announced.IsZero() {
			// The DHT is not ready (no peer in its table yet): try again
			// soon, backing off to rendezvousRetry.
			wait = min(2*wait, rendezvousRetry)
		} else {
			wait = min(2*wait, maxWait)
		}
		schedule(time.Now().Add(wait))
	}
}

// meet looks the rendezvous key up and dials the members it finds that
// are not connected yet, rendezvousPeers at a time (stale records of
// members long gone must not hold up the live ones), until rendezvousPeers
// of them answered; it returns how many it connected to.
func (h *Host) meet(key cid.Cid) int {
	ctx, cancel := context.WithTimeout(h.ctx, rendezvousTimeout)
	defer cancel()
	var (
		met  atomic.Int32
		wg   sync.WaitGroup
		slot = make(chan struct{}, rendezvousPeers)
	)
	for info := range h.DHT.FindProvidersAsync(ctx, key, 4*rendezvousPeers) {
		if info.ID == h.ID() || info.ID == "" || h.Network().Connectedness(info.ID) == network.Connected {
			continue
		}
		if int(met.Load()) >= rendezvousPeers || h.yields(info) {
			continue // drain: the channel closes when the lookup ends
		}
		select {
		case slot <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func(info peer.AddrInfo) {
			defer wg.Done()
			defer func() { <-slot }()
			if len(info.Addrs) > 0 {
				h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.TempAddrTTL)
			}
			dctx, dcancel := context.WithTimeout(ctx, rendezvousDial)
			defer dcancel()
			if err := h.Connect(dctx, peer.AddrInfo{ID: info.ID, Addrs: info.Addrs}); err != nil {
				h.log.Debug("rendezvous dial", "peer", info.ID, "err", err)
				return
			}
			met.Add(1)
		}(info)
	}
	wg.Wait()
	return int(met.Load())
}

// yields says whether this node leaves the dial to member info: when both
// are behind NAT (both hold relay addresses), only the one with the
// smaller peer ID dials. Two relayed connections in opposite directions
// defeat hole punching (DCUtR runs on the connection one side sees as
// inbound, and each side would refuse the other's attempt).
func (h *Host) yields(info peer.AddrInfo) bool {
	if h.ID() < info.ID || !slices.ContainsFunc(info.Addrs, isRelayAddr) {
		return false
	}
	return slices.ContainsFunc(h.Addrs(), isRelayAddr)
}
