package main

import (
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// minPeerCap is the least peerCap allows a provider (non-requestor peers).
const minPeerCap = 24

// peerCap bounds a provider's peers other than requestors, for a process
// that holds local of the swarm's providers. A process has one
// file-descriptor limit and spends up to two descriptors per connection of
// its nodes (both ends, when both nodes live in it); a node on its own
// keeps up to 400 connections (p2p's connection manager), and 513 such
// nodes in one process ran out of 20,000 descriptors, as did refusing only
// dials beyond 16 peers (dials in flight overshoot). The cap leaves 40 % of
// the limit spare; it never goes under minPeerCap (24 peers held 513 nodes
// in one process at 12,000-15,000 descriptors) and is not binding when the
// limit lets every node reach every other of the swarm's (raiseFileLimit
// lifts the limit as far as the kernel allows). A binding cap costs CPU
// that a real swarm does not spend: connections accepted and refused after
// their handshake, and the DHT's redials; spreading the providers over
// worker processes (-per-proc) is what lifts it.
func peerCap(local, swarm int, fdLimit uint64) int {
	perNode := int(fdLimit*6/10) / (2 * (local + 2))
	return max(minPeerCap, min(perNode, swarm+8))
}

// requestorSet is the requestors of one swarm (the measured one and the
// fresh ones of the discovery runs): every provider accepts them whatever
// its connection count, as a requestor's direct asks need a connection to
// each candidate.
type requestorSet struct {
	ids sync.Map
	// peerCap is the providers' connCap bound in this swarm.
	peerCap int
}

func (s *requestorSet) add(id peer.ID)      { s.ids.Store(id, true) }
func (s *requestorSet) has(id peer.ID) bool { _, ok := s.ids.Load(id); return ok }

// connCap is a provider's connection gater: it refuses connections to and
// from peers other than requestors once the provider has max peers. Its
// host is set once p2p.New returned it.
type connCap struct {
	h          atomic.Pointer[host.Host]
	requestors *requestorSet
	max        int
}

var _ connmgr.ConnectionGater = (*connCap)(nil)

func (c *connCap) setHost(h host.Host) { c.h.Store(&h) }

// full reports whether a connection with p would go beyond the cap.
func (c *connCap) full(p peer.ID) bool {
	hp := c.h.Load()
	if hp == nil || c.requestors.has(p) {
		return false
	}
	return len((*hp).Network().Peers()) >= c.max
}

// InterceptPeerDial refuses to dial a non-requestor when full.
func (c *connCap) InterceptPeerDial(p peer.ID) bool { return !c.full(p) }

// InterceptAddrDial allows every address.
func (c *connCap) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept allows every inbound connection until its peer is known.
func (c *connCap) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses an inbound non-requestor when full.
func (c *connCap) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return dir == network.DirOutbound || !c.full(p)
}

// InterceptUpgraded allows every connection that got this far.
func (c *connCap) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
