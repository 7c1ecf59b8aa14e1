// Package stream holds the helpers every protocol of the node shares on
// libp2p streams: one length-delimited JSON message per frame with a size
// limit read incrementally (WriteMsg, ReadMsg, ReadFrame), a client's
// request/response exchange bounded by a deadline (Request, Open), and the
// serving side's first read under a per-peer rate limit (Limiter, Accept).
package stream

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// DefaultStreamTimeout bounds a request/response exchange when the caller's
// context has no earlier deadline.
const DefaultStreamTimeout = 30 * time.Second

// frameChunk is the most of a frame allocated ahead of its bytes; a frame
// starts at frameStart bytes and doubles as its bytes arrive.
const (
	frameChunk = 64 << 10
	frameStart = 4 << 10
)

// readerSize is the buffer of the reader a request/response exchange
// reads its one frame through: a frame's body is read past the buffer
// (io.ReadFull into the frame), so a small one serves, and a peer that
// opens many streams makes this node hold little for each.
const readerSize = 512

// NewReader returns the reader ReadMsg and ReadFrame want for a stream.
func NewReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, readerSize) }

// ErrMessageTooLarge is returned by ReadMsg for a message above its limit.
var ErrMessageTooLarge = errors.New("message too large")

// WriteMsg writes v as one length-delimited JSON message.
func WriteMsg(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(body)))
	buf := make([]byte, 0, n+len(body))
	buf = append(buf, hdr[:n]...)
	buf = append(buf, body...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	return nil
}

// ReadMsg reads one length-delimited JSON message into v, refusing messages
// larger than max bytes before reading their body.
func ReadMsg(r *bufio.Reader, max int, v any) error {
	body, err := ReadFrame(r, max)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	return nil
}

// ReadFrame reads one length-delimited frame of at most max bytes.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read message length: %w", err)
	}
	if size > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrMessageTooLarge, size, max)
	}
	// Allocate as the bytes arrive, not at the length the prefix claims:
	// a peer that announces a large frame and sends nothing holds little.
	body := make([]byte, 0, min(size, frameStart))
	for uint64(len(body)) < size {
		step := uint64(len(body)) // double what arrived so far
		if step < frameStart {
			step = frameStart
		}
		n := min(size-uint64(len(body)), step, frameChunk)
		body = slices.Grow(body, int(n))
		if _, err := io.ReadFull(r, body[len(body):len(body)+int(n)]); err != nil {
			return nil, fmt.Errorf("read message body: %w", err)
		}
		body = body[:len(body)+int(n)]
	}
	return body, nil
}

// Request opens a stream to p on proto, sends req, half-closes, reads one
// response of at most max bytes into resp, and closes the stream. The
// exchange is bounded by ctx and by DefaultStreamTimeout.
func Request(ctx context.Context, h interface {
	NewStream(context.Context, peer.ID, ...protocol.ID) (network.Stream, error)
}, p peer.ID, proto protocol.ID, req any, max int, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultStreamTimeout)
	defer cancel()
	s, err := h.NewStream(network.WithAllowLimitedConn(ctx, string(proto)), p, proto)
	if err != nil {
		return fmt.Errorf("open %s stream to %s: %w", proto, p.ShortString(), err)
	}
	// The exchange ends at ctx's end (its deadline, at most
	// DefaultStreamTimeout away, or its cancellation) by a reset, which
	// unblocks any read or write: no stream deadline (two more timers) is
	// set besides.
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if err := WriteMsg(s, req); err != nil {
		s.Reset()
		return err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return fmt.Errorf("close write: %w", err)
	}
	if resp == nil {
		s.Close()
		return nil
	}
	if err := ReadMsg(NewReader(s), max, resp); err != nil {
		s.Reset()
		if ctx.Err() != nil {
			return fmt.Errorf("%s to %s: %w", proto, p.ShortString(), ctx.Err())
		}
		return err
	}
	return s.Close()
}

// Open opens a stream to p on proto and sends req as its first message,
// for exchanges longer than one request and one response (tunnels, exec).
// Opening and the first answer must come within DefaultStreamTimeout; the
// caller clears the deadline once the exchange is under way.
func Open(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, req any) (network.Stream, *bufio.Reader, error) {
	octx, cancel := context.WithTimeout(ctx, DefaultStreamTimeout)
	defer cancel()
	s, err := h.NewStream(network.WithAllowLimitedConn(octx, string(proto)), p, proto)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s stream to %s: %w", proto, p.ShortString(), err)
	}
	_ = s.SetDeadline(time.Now().Add(DefaultStreamTimeout))
	if err := WriteMsg(s, req); err != nil {
		s.Reset()
		return nil, nil, err
	}
	return s, NewReader(s), nil
}
