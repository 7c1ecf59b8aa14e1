package p2p

import "testing"

func TestNATTraversalOnlyBeyondLoopback(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		listen []string
		want   bool
	}{
		{"loopback only", Config{}, []string{"/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"}, false},
		{"all interfaces", Config{}, []string{"/ip4/0.0.0.0/tcp/4001"}, true},
		{"disabled", Config{DisableNAT: true}, []string{"/ip4/0.0.0.0/tcp/4001"}, false},
		{"private swarm", Config{SwarmKey: make([]byte, 32)}, []string{"/ip4/0.0.0.0/tcp/4001"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := natTraversal(tc.cfg, tc.listen); got != tc.want {
				t.Errorf("natTraversal = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPeerScoreParamsValidate(t *testing.T) {
	params, th := peerScoreParams("abc", []string{"/offload/caps/1", "/offload/tasks/1"})
	if _, ok := params.Topics["/offload/caps/1/abc"]; !ok {
		t.Fatalf("topics not namespaced: %v", params.Topics)
	}
	if th.GraylistThreshold >= th.PublishThreshold || th.PublishThreshold >= th.GossipThreshold {
		t.Errorf("thresholds out of order: %+v", th)
	}
	if MDNSServiceName("") == MDNSServiceName("abc") {
		t.Error("a private swarm needs its own mDNS service name")
	}
}
