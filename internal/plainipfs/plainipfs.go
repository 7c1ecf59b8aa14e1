// Package plainipfs builds, for tests, a stand-in for a node of the public
// IPFS network: a libp2p host on loopback that runs only the standard
// IPFS DHT (Amino, /ipfs/kad/1.0.0, server mode) and bitswap (serving
// every block it holds to anyone), from go-libp2p-kad-dht and boxo. It
// knows no offload protocol and no gossipsub topic.
package plainipfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	chunk "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Node is one plain IPFS node.
type Node struct {
	Host host.Host
	DHT  *dht.IpfsDHT
	DAG  ipld.DAGService

	bitswap *bitswap.Bitswap
	cancel  context.CancelFunc
}

// Start starts a plain IPFS node listening on loopback and connects it to
// boot (multiaddrs with /p2p/ID). It stops when the test ends.
func Start(t testing.TB, boot ...string) *Node {
	t.Helper()
	n, err := New(context.Background(), []string{"/ip4/127.0.0.1/tcp/0"}, boot)
	if err != nil {
		t.Fatalf("plain ipfs: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// New starts a plain IPFS node listening on listen, connected to boot
// (multiaddrs with /p2p/ID; New returns once they are in its DHT's routing
// table). It runs until Close.
func New(ctx context.Context, listen, boot []string) (_ *Node, err error) {
	var infos []peer.AddrInfo
	for _, b := range boot {
		info, err := peer.AddrInfoFromString(b)
		if err != nil {
			return nil, fmt.Errorf("bootstrap %q: %w", b, err)
		}
		infos = append(infos, *info)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings(listen...), libp2p.DisableRelay())
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	bctx, cancel := context.WithCancel(context.Background())
	n := &Node{Host: h, cancel: cancel}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.DHT, err = dht.New(h, dht.Mode(dht.ModeServer), dht.BootstrapPeers(infos...)); err != nil {
		return nil, fmt.Errorf("dht: %w", err)
	}
	for _, info := range infos {
		if err := h.Connect(ctx, info); err != nil {
			return nil, fmt.Errorf("connect %s: %w", info.ID, err)
		}
	}
	if err := n.DHT.Bootstrap(bctx); err != nil {
		return nil, fmt.Errorf("dht bootstrap: %w", err)
	}
	// The DHT takes a peer into its table once identify has run.
	deadline := time.Now().Add(10 * time.Second)
	for len(infos) > 0 && n.DHT.RoutingTable().Size() == 0 {
		if time.Now().After(deadline) {
			return nil, errors.New("bootstrap peers never entered the DHT's routing table")
		}
		time.Sleep(20 * time.Millisecond)
	}
	bs := blockstore.NewBlockstore(dssync.MutexWrap(datastore.NewMapDatastore()))
	n.bitswap = bitswap.New(bctx, bsnet.NewFromIpfsHost(h), n.DHT, bs)
	n.DAG = merkledag.NewDAGService(blockservice.New(bs, n.bitswap))
	return n, nil
}

// Close stops bitswap, the DHT and the host.
func (n *Node) Close() error {
	n.cancel()
	var errs []error
	if n.bitswap != nil {
		errs = append(errs, n.bitswap.Close())
	}
	if n.DHT != nil {
		errs = append(errs, n.DHT.Close())
	}
	errs = append(errs, n.Host.Close())
	return errors.Join(errs...)
}

// Addrs returns the node's multiaddrs with /p2p/ID.
func (n *Node) Addrs() []string {
	info := peer.AddrInfo{ID: n.Host.ID(), Addrs: n.Host.Addrs()}
	mas, _ := peer.AddrInfoToP2pAddrs(&info)
	out := make([]string, 0, len(mas))
	for _, m := range mas {
		out = append(out, m.String())
	}
	return out
}

// AddDir imports files (name to content) as one unixfs directory (CIDv1,
// as AddFile) and announces its root in the DHT (when it has DHT peers).
func (n *Node) AddDir(ctx context.Context, files map[string][]byte) (cid.Cid, error) {
	dir, err := uio.NewDirectory(n.DAG)
	if err != nil {
		return cid.Undef, fmt.Errorf("plain ipfs: add dir: %w", err)
	}
	prefix, err := merkledag.PrefixForCidVersion(1)
	if err != nil {
		return cid.Undef, err
	}
	dir.SetCidBuilder(prefix)
	for name, data := range files {
		f, err := n.file(data)
		if err != nil {
			return cid.Undef, err
		}
		if err := dir.AddChild(ctx, name, f); err != nil {
			return cid.Undef, fmt.Errorf("plain ipfs: add dir: %w", err)
		}
	}
	root, err := dir.GetNode()
	if err != nil {
		return cid.Undef, fmt.Errorf("plain ipfs: add dir: %w", err)
	}
	if err := n.DAG.Add(ctx, root); err != nil {
		return cid.Undef, fmt.Errorf("plain ipfs: add dir: %w", err)
	}
	if err := n.provide(ctx, root.Cid()); err != nil {
		return cid.Undef, err
	}
	return root.Cid(), nil
}

// AddFile imports data as a unixfs file (CIDv1, raw leaves, 256 KiB
// chunks, as `ipfs add --cid-version 1` does) and announces its root in
// the DHT (when it has DHT peers).
func (n *Node) AddFile(ctx context.Context, data []byte) (cid.Cid, error) {
	root, err := n.file(data)
	if err != nil {
		return cid.Undef, err
	}
	if err := n.provide(ctx, root.Cid()); err != nil {
		return cid.Undef, err
	}
	return root.Cid(), nil
}

func (n *Node) file(data []byte) (ipld.Node, error) {
	prefix, err := merkledag.PrefixForCidVersion(1)
	if err != nil {
		return nil, err
	}
	params := helpers.DagBuilderParams{Dagserv: n.DAG, RawLeaves: true, Maxlinks: helpers.DefaultLinksPerBlock, CidBuilder: prefix}
	db, err := params.New(chunk.NewSizeSplitter(bytes.NewReader(data), 256<<10))
	if err != nil {
		return nil, fmt.Errorf("plain ipfs: add: %w", err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		return nil, fmt.Errorf("plain ipfs: add: %w", err)
	}
	return root, nil
}

// provide announces c in the DHT; a node without DHT peers announces
// nothing (its content is found by other means, e.g. delegated routing).
func (n *Node) provide(ctx context.Context, c cid.Cid) error {
	if n.DHT.RoutingTable().Size() == 0 {
		return nil
	}
	if err := n.DHT.Provide(ctx, c, true); err != nil {
		return fmt.Errorf("plain ipfs: provide: %w", err)
	}
	return nil
}
