package p2p

import (
	"slices"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

func addrs(t *testing.T, ss ...string) []ma.Multiaddr {
	t.Helper()
	out := make([]ma.Multiaddr, len(ss))
	for i, s := range ss {
		out[i] = ma.StringCast(s)
	}
	return out
}

func strs(as []ma.Multiaddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// TestAddressHygiene: loopback addresses are offered only by a node that
// has nothing else; the DHT carries public (and relay) addresses when the
// node has any, LAN addresses otherwise, loopback never; adverts carry
// what the DHT does, or loopback on a loopback-only node.
func TestAddressHygiene(t *testing.T) {
	const (
		lo    = "/ip4/127.0.0.1/tcp/4001"
		lan   = "/ip4/192.168.1.5/tcp/4001"
		pub   = "/ip4/7.7.7.7/tcp/4001"
		relay = "/ip4/7.7.7.8/tcp/4001/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE/p2p-circuit"
	)
	for _, tc := range []struct {
		name      string
		in        []string
		host, dht []string
		advert    []string
	}{
		{"loopback only", []string{lo}, []string{lo}, nil, []string{lo}},
		{"lan", []string{lo, lan}, []string{lan}, []string{lan}, []string{lan}},
		{"public", []string{lo, lan, pub}, []string{lan, pub}, []string{pub}, []string{pub}},
		{"behind nat with relay", []string{lo, lan, relay}, []string{lan, relay}, []string{relay}, []string{relay}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strs(usefulAddrs(addrs(t, tc.in...))); !slices.Equal(got, tc.host) {
				t.Errorf("host addrs %v, want %v", got, tc.host)
			}
			if got := strs(dhtAddrFilter(addrs(t, tc.in...))); !slices.Equal(got, tc.dht) && len(got)+len(tc.dht) > 0 {
				t.Errorf("dht addrs %v, want %v", got, tc.dht)
			}
			if got := strs(AdvertAddrs(addrs(t, tc.in...))); !slices.Equal(got, tc.advert) {
				t.Errorf("advert addrs %v, want %v", got, tc.advert)
			}
		})
	}
}

func TestRelayLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		l       RelayLimits
		limited bool
		d       time.Duration
		data    int64
	}{
		{"defaults", RelayLimits{}, true, DefaultRelayDuration, DefaultRelayData},
		{"operator", RelayLimits{Duration: time.Hour, Data: 64 << 20}, true, time.Hour, 64 << 20},
		{"no data limit", RelayLimits{Data: -1}, true, DefaultRelayDuration, 1<<63 - 1},
		{"none", RelayLimits{Duration: -1, Data: -1}, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := len(tc.l.options()); n != 1 {
				t.Fatalf("%d options", n)
			}
			// The options are opaque; read back what they were built from.
			res := tc.l.resources()
			if (res.Limit != nil) != tc.limited {
				t.Fatalf("limited = %v, want %v", res.Limit != nil, tc.limited)
			}
			if res.Limit != nil && (res.Limit.Duration != tc.d || res.Limit.Data != tc.data) {
				t.Errorf("limit %+v, want %s %d", *res.Limit, tc.d, tc.data)
			}
			if res.MaxReservations != DefaultRelayMaxReservations || res.MaxCircuits != DefaultRelayMaxCircuits {
				t.Errorf("reservations %d circuits %d", res.MaxReservations, res.MaxCircuits)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	for _, s := range []string{"", "auto", "auto-server", "client", "SERVER"} {
		if _, err := ParseDHTMode(s); err != nil {
			t.Errorf("ParseDHTMode(%q): %v", s, err)
		}
	}
	if _, err := ParseDHTMode("both"); err == nil {
		t.Error("ParseDHTMode accepted both")
	}
	for s, want := range map[string]string{"": "", "auto": "", "public": "public", "Private": "private"} {
		if got, err := ParseReachability(s); err != nil || got != want {
			t.Errorf("ParseReachability(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseReachability("sometimes"); err == nil {
		t.Error("ParseReachability accepted sometimes")
	}
}

func TestDefaultDHTMode(t *testing.T) {
	for _, tc := range []struct {
		name                                 string
		private, nat, public, beyondLoopback bool
		want                                 DHTMode
	}{
		{"loopback", false, false, false, false, DHTServer},
		{"private swarm", true, false, false, true, DHTServer},
		{"public network", false, true, true, true, DHTAuto},
		{"lan or community swarm", false, true, false, true, DHTAutoServer},
		{"nat disabled beyond loopback", false, false, false, true, DHTClient},
	} {
		if got := defaultDHTMode(tc.private, tc.nat, tc.public, tc.beyondLoopback); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
