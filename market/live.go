package market

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// Live tasks on the requestor side: tunnels to a running service's ports
// and commands run inside it. Both open a stream to the provider that holds
// the task; the provider checks that the stream comes from the task's
// requestor.

// ErrNotLive: the task is not a service running now (not a service, not
// started yet, or already ended), or the port is not one of its ports.
var ErrNotLive = errors.New("task is not a running service")

// ErrRefused: the provider refused the tunnel or exec (the reason follows).
var ErrRefused = errors.New("refused by the provider")

// liveTarget returns the provider and attempt holding a running service.
func (r *Requestor) liveTarget(id string, port int) (peer.ID, int, error) {
	t, err := r.Get(id)
	if err != nil {
		return "", 0, err
	}
	switch {
	case !t.Spec.Service:
		return "", 0, fmt.Errorf("%w: task %s was not started with --service", ErrNotLive, id)
	case t.State != StateRunning && t.State != StateAwarded:
		return "", 0, fmt.Errorf("%w: task %s is %s (%s)", ErrNotLive, id, t.State, t.Reason)
	case port != 0 && !slices.Contains(t.Spec.Ports, port):
		return "", 0, fmt.Errorf("%w: port %d is not one of task %s's ports %v", ErrNotLive, port, id, t.Spec.Ports)
	}
	pid, err := peer.Decode(t.Provider)
	if err != nil {
		return "", 0, fmt.Errorf("%w: task %s has no provider yet", ErrNotLive, id)
	}
	return pid, t.Attempt, nil
}

// CheckTunnel reports whether a tunnel to port of task id could be opened
// now (ErrNotLive or ErrTaskNotFound when not), without opening one.
func (r *Requestor) CheckTunnel(id string, port int) error {
	_, _, err := r.liveTarget(id, port)
	return err
}

// ServeTunnel carries one local connection to port of the running service
// id, over a ProtoTunnel stream to its provider, until either side ends or
// ctx is done; it closes conn.
func (r *Requestor) ServeTunnel(ctx context.Context, id string, port int, conn net.Conn) error {
	defer conn.Close()
	pid, attempt, err := r.liveTarget(id, port)
	if err != nil {
		return err
	}
	s, br, err := DialTunnel(ctx, r.h, pid, wire.TunnelRequest{TaskID: id, Attempt: attempt, Port: port})
	if err != nil {
		return err
	}
	pipe(ctx, s, br, conn)
	return nil
}

// DialTunnel opens a tunnel stream to provider for req and waits for its
// answer. On success the stream carries the connection's bytes: write to
// s, read through the returned reader (it may hold bytes already received).
func DialTunnel(ctx context.Context, h host.Host, provider peer.ID, req wire.TunnelRequest) (network.Stream, *bufio.Reader, error) {
	s, br, err := stream.Open(ctx, h, provider, wire.ProtoTunnel, &req)
	if err != nil {
		return nil, nil, err
	}
	body, err := stream.ReadFrame(br, wire.MaxAckSize)
	if err != nil {
		s.Reset()
		return nil, nil, fmt.Errorf("tunnel to %s: read answer: %w", provider.ShortString(), err)
	}
	reply, err := wire.Decode[wire.TunnelReply](body)
	if err != nil {
		s.Reset()
		return nil, nil, fmt.Errorf("tunnel to %s: %w", provider.ShortString(), err)
	}
	if !reply.OK {
		s.Close()
		return nil, nil, fmt.Errorf("tunnel to %s: %w: %s", provider.ShortString(), ErrRefused, reply.Reason)
	}
	_ = s.SetDeadline(time.Time{})
	return s, br, nil
}

// Exec runs cmd inside the running service id, writing its output to
// stdout and stderr as it comes, and returns its exit code.
func (r *Requestor) Exec(ctx context.Context, id string, cmd []string, stdout, stderr io.Writer) (int, error) {
	pid, attempt, err := r.liveTarget(id, 0)
	if err != nil {
		return -1, err
	}
	return ExecOn(ctx, r.h, pid, wire.ExecRequest{TaskID: id, Attempt: attempt, Cmd: cmd}, stdout, stderr)
}

// ExecOn sends req to provider over a ProtoExec stream and relays the
// output frames until the last one. A refusal or failure on the provider
// wraps ErrRefused.
func ExecOn(ctx context.Context, h host.Host, provider peer.ID, req wire.ExecRequest, stdout, stderr io.Writer) (int, error) {
	if err := req.Validate(); err != nil {
		return -1, err
	}
	s, br, err := stream.Open(ctx, h, provider, wire.ProtoExec, &req)
	if err != nil {
		return -1, err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return -1, fmt.Errorf("exec: close write: %w", err)
	}
	_ = s.SetDeadline(time.Time{})
	for {
		body, err := stream.ReadFrame(br, wire.MaxExecFrameSize)
		if err != nil {
			s.Reset()
			if ctx.Err() != nil {
				return -1, fmt.Errorf("exec in %s: %w", req.TaskID, ctx.Err())
			}
			return -1, fmt.Errorf("exec in %s: the provider ended the stream: %w", req.TaskID, err)
		}
		f, err := wire.Decode[wire.ExecFrame](body)
		if err != nil {
			s.Reset()
			return -1, fmt.Errorf("exec in %s: %w", req.TaskID, err)
		}
		if len(f.Stdout) > 0 {
			if _, err := stdout.Write(f.Stdout); err != nil {
				s.Reset()
				return -1, fmt.Errorf("exec in %s: write stdout: %w", req.TaskID, err)
			}
		}
		if len(f.Stderr) > 0 {
			if _, err := stderr.Write(f.Stderr); err != nil {
				s.Reset()
				return -1, fmt.Errorf("exec in %s: write stderr: %w", req.TaskID, err)
			}
		}
		switch {
		case f.Error != "":
			s.Close()
			return -1, fmt.Errorf("exec in %s: %w: %s", req.TaskID, ErrRefused, f.Error)
		case f.Exit != nil:
			s.Close()
			return *f.Exit, nil
		}
	}
}
