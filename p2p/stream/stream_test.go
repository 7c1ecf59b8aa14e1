package stream_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/offload-project/offload/p2p/stream"
)

func TestMsgRoundTripAndLimit(t *testing.T) {
	var buf bytes.Buffer
	in := map[string]string{"hello": "world"}
	if err := stream.WriteMsg(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := stream.ReadMsg(bufio.NewReader(bytes.NewReader(buf.Bytes())), 1024, &out); err != nil || out["hello"] != "world" {
		t.Fatalf("round trip: %v %v", err, out)
	}
	err := stream.ReadMsg(bufio.NewReader(bytes.NewReader(buf.Bytes())), 4, &out)
	if !errors.Is(err, stream.ErrMessageTooLarge) {
		t.Fatalf("want ErrMessageTooLarge, got %v", err)
	}
	// A length prefix claiming a huge body must fail before allocating it.
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	if _, err := stream.ReadFrame(bufio.NewReader(bytes.NewReader(huge)), 1<<20); !errors.Is(err, stream.ErrMessageTooLarge) {
		t.Fatalf("want ErrMessageTooLarge for huge prefix, got %v", err)
	}
	// Truncated body.
	if _, err := stream.ReadFrame(bufio.NewReader(bytes.NewReader([]byte{10, 'a'})), 1<<20); err == nil {
		t.Fatal("want error for truncated body")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{5, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := stream.ReadFrame(bufio.NewReader(bytes.NewReader(data)), 4096)
		if err == nil && len(body) > 4096 {
			t.Fatalf("frame of %d bytes exceeds the limit", len(body))
		}
	})
}

// TestFrameAllocatedAsBytesArrive: a frame that claims far more than it
// carries fails at the end of its bytes without having allocated its
// claimed length.
func TestFrameAllocatedAsBytesArrive(t *testing.T) {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], 1<<30)
	data := append(hdr[:n], []byte("only a few bytes")...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := stream.ReadFrame(bufio.NewReader(bytes.NewReader(data)), 1<<30)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a short frame was accepted")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<10 {
		t.Fatalf("reading a 16-byte frame that claims 1 GiB allocated %d bytes", grew)
	}
	// Frames of every size around the growth steps still read whole.
	for _, size := range []int{0, 1, 4095, 4096, 4097, 8193, 65535, 65537, 300 << 10} {
		want := bytes.Repeat([]byte{'x'}, size)
		n := binary.PutUvarint(hdr[:], uint64(size))
		got, err := stream.ReadFrame(stream.NewReader(bytes.NewReader(append(hdr[:n:n], want...))), 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame of %d bytes: %v, read %d", size, err, len(got))
		}
	}
}

// TestRequestEndsAtContextEnd: a request to a peer that reads it and never
// answers returns once its context ends.
func TestRequestEndsAtContextEnd(t *testing.T) {
	mn, err := mocknet.FullMeshConnected(2)
	if err != nil {
		t.Fatal(err)
	}
	defer mn.Close()
	hs := mn.Hosts()
	const proto = "/test/silent/1.0.0"
	release := make(chan struct{})
	served := make(chan struct{})
	hs[1].SetStreamHandler(proto, func(s network.Stream) {
		defer close(served)
		defer s.Reset()
		var v map[string]string
		_ = stream.ReadMsg(stream.NewReader(s), 1<<10, &v)
		<-release
	})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	var resp map[string]string
	err = stream.Request(ctx, hs[0], hs[1].ID(), proto, map[string]string{"q": "1"}, 1<<10, &resp)
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request to a silent peer: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("request returned after %v, its context ended after 300ms", d)
	}
	<-served
}
