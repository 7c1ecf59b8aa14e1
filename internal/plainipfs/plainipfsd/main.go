// Command plainipfsd runs one plain IPFS node (package plainipfs: the
// standard IPFS DHT in server mode and bitswap, nothing of offload) until
// its standard input closes. The NAT lab (cmd/offload) starts a few in its
// "public" network namespace as the public network's DHT servers. It
// prints the node's multiaddrs with /p2p/ID, one a line, then "ready".
//
//	plainipfsd -listen /ip4/7.77.0.2/tcp/4001 [-bootstrap MA]...
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/offload-project/offload/internal/plainipfs"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var listen, boot list
	flag.Var(&listen, "listen", "listen multiaddr (repeatable)")
	flag.Var(&boot, "bootstrap", "bootstrap multiaddr with /p2p/ID (repeatable)")
	flag.Parse()
	if len(listen) == 0 {
		listen = list{"/ip4/127.0.0.1/tcp/0"}
	}
	n, err := plainipfs.New(context.Background(), listen, boot)
	if err != nil {
		fmt.Fprintln(os.Stderr, "plainipfsd:", err)
		os.Exit(1)
	}
	for _, a := range n.Addrs() {
		fmt.Println(a)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := n.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "plainipfsd: close:", err)
	}
}
