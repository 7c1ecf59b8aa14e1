package p2p_test

import (
	"testing"

	"github.com/offload-project/offload/p2p"
)

func TestSwarmKey(t *testing.T) {
	k, err := p2p.NewSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	psk, err := p2p.ParseSwarmKey(k)
	if err != nil || len(psk) != 32 {
		t.Fatalf("parse new key: %v (%d bytes)", err, len(psk))
	}
	if _, err := p2p.ParseSwarmKey([]byte("/key/swarm/psk/1.0.0/\n/base16/\nzz\n")); err == nil {
		t.Fatal("bad key must be refused")
	}
	if p2p.SwarmID(psk) == "" || p2p.SwarmID(nil) != "" {
		t.Fatal("swarm id")
	}
}
