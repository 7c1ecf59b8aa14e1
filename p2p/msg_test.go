package p2p_test

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/offload-project/offload/p2p"
)

func TestMsgRoundTripAndLimit(t *testing.T) {
	var buf bytes.Buffer
	in := map[string]string{"hello": "world"}
	if err := p2p.WriteMsg(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := p2p.ReadMsg(bufio.NewReader(bytes.NewReader(buf.Bytes())), 1024, &out); err != nil || out["hello"] != "world" {
		t.Fatalf("round trip: %v %v", err, out)
	}
	err := p2p.ReadMsg(bufio.NewReader(bytes.NewReader(buf.Bytes())), 4, &out)
	if !errors.Is(err, p2p.ErrMessageTooLarge) {
		t.Fatalf("want ErrMessageTooLarge, got %v", err)
	}
	// A length prefix claiming a huge body must fail before allocating it.
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	if _, err := p2p.ReadFrame(bufio.NewReader(bytes.NewReader(huge)), 1<<20); !errors.Is(err, p2p.ErrMessageTooLarge) {
		t.Fatalf("want ErrMessageTooLarge for huge prefix, got %v", err)
	}
	// Truncated body.
	if _, err := p2p.ReadFrame(bufio.NewReader(bytes.NewReader([]byte{10, 'a'})), 1<<20); err == nil {
		t.Fatal("want error for truncated body")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{5, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := p2p.ReadFrame(bufio.NewReader(bytes.NewReader(data)), 4096)
		if err == nil && len(body) > 4096 {
			t.Fatalf("frame of %d bytes exceeds the limit", len(body))
		}
	})
}

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
