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

// maxProviderConns bounds a provider's peers other than requestors. Every
// node of the harness lives in one process, which has one file-descriptor
// limit (20,000 here) and spends two descriptors per connection (one at
// each end); a node on its own keeps up to 400 connections (p2p's
// connection manager), and 513 such nodes ran out of descriptors, as did
// refusing only dials beyond 16 peers (dials in flight overshoot). With
// connections refused both ways beyond 24 peers, N=512 holds 12,000-15,000
// descriptors; an accepted connection refused after its handshake costs
// both ends that handshake.
const maxProviderConns = 24

// requestorSet is the requestors of one swarm (the measured one and the
// fresh ones of the discovery runs): every provider accepts them whatever
// its connection count, as a requestor's direct asks need a connection to
// each candidate.
type requestorSet struct{ ids sync.Map }

func (s *requestorSet) add(id peer.ID)      { s.ids.Store(id, true) }
func (s *requestorSet) has(id peer.ID) bool { _, ok := s.ids.Load(id); return ok }

// connCap is a provider's connection gater: it refuses connections to and
// from peers other than requestors once the provider has
// maxProviderConns peers. Its host is set once p2p.New returned it.
type connCap struct {
	h          atomic.Pointer[host.Host]
	requestors *requestorSet
}

var _ connmgr.ConnectionGater = (*connCap)(nil)

func (c *connCap) setHost(h host.Host) { c.h.Store(&h) }

// full reports whether a connection with p would go beyond the cap.
func (c *connCap) full(p peer.ID) bool {
	hp := c.h.Load()
	if hp == nil || c.requestors.has(p) {
		return false
	}
	return len((*hp).Network().Peers()) >= maxProviderConns
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
