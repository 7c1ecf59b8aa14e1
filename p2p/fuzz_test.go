package p2p_test

import (
	"strings"
	"testing"

	"github.com/offload-project/offload/p2p"
)

// FuzzParseAddrs feeds --bootstrap values (one per line) to ParseAddrs: it
// must not panic, and every peer it returns has an id.
func FuzzParseAddrs(f *testing.F) {
	f.Add("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBFUaXgBqVKpRbdLu92VQ1f8HkGjX2pyJAWLZmSoLuGbS")
	f.Add("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBFUaXgBqVKpRbdLu92VQ1f8HkGjX2pyJAWLZmSoLuGbS\n/ip6/::1/udp/4001/quic-v1/p2p/12D3KooWBFUaXgBqVKpRbdLu92VQ1f8HkGjX2pyJAWLZmSoLuGbS")
	f.Add("/dns4/example.com/tcp/443/wss/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN")
	f.Add("/p2p/12D3KooWBFUaXgBqVKpRbdLu92VQ1f8HkGjX2pyJAWLZmSoLuGbS")
	f.Add("/ip4/127.0.0.1/tcp/4001")
	f.Add("/ip4/999.0.0.1/tcp/70000/p2p/x")
	f.Add("")
	f.Add("  \n\t")
	f.Fuzz(func(t *testing.T, s string) {
		infos, err := p2p.ParseAddrs(strings.Split(s, "\n"))
		if err != nil {
			return
		}
		for _, in := range infos {
			if in.ID == "" {
				t.Fatalf("peer without id from %q", s)
			}
		}
	})
}

// FuzzParseSwarmKey feeds swarm.key file contents to ParseSwarmKey: it
// must not panic, and a key it accepts is 32 bytes.
func FuzzParseSwarmKey(f *testing.F) {
	good, err := p2p.NewSwarmKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base16/\nzz\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base64/\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/bin/\n0123456789abcdef0123456789abcdef\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + strings.Repeat("ab", 32) + "\r\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		psk, err := p2p.ParseSwarmKey(data)
		if err == nil && len(psk) != 32 {
			t.Fatalf("accepted a %d-byte key from %q", len(psk), data)
		}
		if err == nil && p2p.SwarmID(psk) == "" {
			t.Fatalf("accepted key has no swarm id")
		}
	})
}
