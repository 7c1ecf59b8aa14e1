package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"

	"github.com/offload-project/offload/client"
)

// Live tasks through the node: tunnels to a service's ports, commands run
// inside it, and the requestor's volumes.

// ErrTunnelNotFound is returned for an unknown tunnel id.
var ErrTunnelNotFound = errors.New("tunnel not found")

// Tunnel forwards TCP connections accepted on a local address to a port of
// a running service: one libp2p stream to the provider per connection. It
// closes itself when the task ends.
type Tunnel struct {
	id, task string
	port     int
	ln       net.Listener
	n        *Node

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Info describes the tunnel as the API shows it.
func (t *Tunnel) Info() client.Tunnel {
	return client.Tunnel{ID: t.id, Task: t.task, Port: t.port, Local: t.ln.Addr().String()}
}

// Addr is the local address the tunnel listens on.
func (t *Tunnel) Addr() string { return t.ln.Addr().String() }

// Close stops listening, ends every forwarded connection and waits for
// them.
func (t *Tunnel) Close() error {
	t.once.Do(func() {
		t.cancel()
		t.ln.Close()
		t.n.tunnels.forget(t.id)
	})
	t.wg.Wait()
	return nil
}

// OpenTunnel listens on local (a loopback host:port; port 0 picks one) and
// forwards each connection to port of the running service task id. Only
// this node, the task's requestor, may do so (its provider checks).
func (n *Node) OpenTunnel(ctx context.Context, id string, port int, local string) (*Tunnel, error) {
	if err := n.req.CheckTunnel(id, port); err != nil {
		return nil, err
	}
	if local == "" {
		local = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(local)
	if err != nil {
		return nil, fmt.Errorf("tunnel: local address %q: %w", local, err)
	}
	if !isLoopback(host) {
		return nil, fmt.Errorf("tunnel: local address %q is not loopback: a tunnel has no authentication of its own", local)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", local)
	if err != nil {
		return nil, fmt.Errorf("tunnel: listen on %s: %w", local, err)
	}
	tctx, cancel := context.WithCancel(context.Background())
	t := &Tunnel{id: newTunnelID(), task: id, port: port, ln: ln, n: n, ctx: tctx, cancel: cancel}
	watch, stop, err := n.req.Watch(id)
	if err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	n.tunnels.add(t)
	t.wg.Add(2)
	go func() {
		// End with the task: a tunnel to a stopped service is useless.
		defer t.wg.Done()
		defer stop()
		for {
			select {
			case <-tctx.Done():
				return
			case cur := <-watch:
				if cur.State.IsTerminal() {
					n.log.Debug("tunnel closed with its task", "tunnel", t.id, "task", id, "state", cur.State)
					go t.Close()
					return
				}
			}
		}
	}()
	go func() {
		defer t.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				if err := n.req.ServeTunnel(tctx, id, port, conn); err != nil {
					n.log.Info("tunnel connection failed", "tunnel", t.id, "task", id, "port", port, "err", err)
				}
			}()
		}
	}()
	n.log.Info("tunnel open", "tunnel", t.id, "task", id, "port", port, "local", ln.Addr())
	return t, nil
}

func newTunnelID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tunnelSet holds the node's open tunnels so that the API can list and
// close them and Close ends them all.
type tunnelSet struct {
	mu   sync.Mutex
	byID map[string]*Tunnel
}

func (s *tunnelSet) add(t *Tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]*Tunnel{}
	}
	s.byID[t.id] = t
}

func (s *tunnelSet) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

func (s *tunnelSet) get(id string) *Tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

func (s *tunnelSet) list() []client.Tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []client.Tunnel{}
	for _, t := range s.byID {
		out = append(out, t.Info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *tunnelSet) closeAll() {
	s.mu.Lock()
	ts := make([]*Tunnel, 0, len(s.byID))
	for _, t := range s.byID {
		ts = append(ts, t)
	}
	s.mu.Unlock()
	for _, t := range ts {
		t.Close()
	}
}

// Tunnels lists the open tunnels.
func (n *Node) Tunnels() []client.Tunnel { return n.tunnels.list() }

// CloseTunnel closes one open tunnel.
func (n *Node) CloseTunnel(id string) (client.Tunnel, error) {
	t := n.tunnels.get(id)
	if t == nil {
		return client.Tunnel{}, fmt.Errorf("%w: %s", ErrTunnelNotFound, id)
	}
	info := t.Info()
	return info, t.Close()
}

// Exec runs cmd inside the running service task id and returns its exit
// code; its output goes to stdout and stderr as it comes.
func (n *Node) Exec(ctx context.Context, id string, cmd []string, stdout, stderr io.Writer) (int, error) {
	return n.req.Exec(ctx, id, cmd, stdout, stderr)
}

// Volumes lists this node's volumes.
func (n *Node) Volumes() ([]client.Volume, error) {
	vs, err := n.req.Volumes()
	if err != nil {
		return nil, err
	}
	out := make([]client.Volume, 0, len(vs))
	for _, v := range vs {
		out = append(out, client.Volume(*v))
	}
	return out, nil
}

// RemoveVolume forgets a volume and releases its content.
func (n *Node) RemoveVolume(ctx context.Context, name string) (client.Volume, error) {
	v, err := n.req.RemoveVolume(ctx, name)
	if err != nil {
		return client.Volume{}, err
	}
	return client.Volume(*v), nil
}
