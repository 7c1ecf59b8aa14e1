package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Tunnel is a local listener forwarding connections to a port of a running
// service.
type Tunnel struct {
	ID   string `json:"id"`
	Task string `json:"task"`
	Port int    `json:"port"`
	// Local is the address the node listens on (host:port).
	Local string `json:"local"`
}

// TunnelRequest is the body of POST /api/v1/tasks/{id}/tunnels.
type TunnelRequest struct {
	Port int `json:"port"`
	// Local is a loopback host:port; port 0 picks a free one.
	Local string `json:"local,omitempty"`
}

// ExecRequest is the body of POST /api/v1/tasks/{id}/exec.
type ExecRequest struct {
	Cmd []string `json:"cmd"`
}

// ExecEvent is one line of the exec answer (newline-delimited JSON):
// output as it comes, then a last event with exit_code or error.
type ExecEvent struct {
	Stdout   []byte `json:"stdout,omitempty"`
	Stderr   []byte `json:"stderr,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Volume is one of the requestor's portable volumes.
type Volume struct {
	Name    string    `json:"name"`
	CID     string    `json:"cid"`
	Size    int64     `json:"size"`
	Updated time.Time `json:"updated"`
}

// OpenTunnel asks the node to listen on local (e.g. "127.0.0.1:0") and
// forward connections to port of the running service id.
func (c *Client) OpenTunnel(ctx context.Context, id string, port int, local string) (*Tunnel, error) {
	var out Tunnel
	return &out, c.do(ctx, http.MethodPost, "/api/v1/tasks/"+url.PathEscape(id)+"/tunnels", TunnelRequest{Port: port, Local: local}, &out)
}

// Tunnels lists the node's open tunnels.
func (c *Client) Tunnels(ctx context.Context) ([]Tunnel, error) {
	var out []Tunnel
	return out, c.do(ctx, http.MethodGet, "/api/v1/tunnels", nil, &out)
}

// CloseTunnel closes a tunnel.
func (c *Client) CloseTunnel(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tunnels/"+url.PathEscape(id), nil, nil)
}

// Exec runs cmd inside the running service id, writing its output to
// stdout and stderr as it arrives, and returns the command's exit code.
func (c *Client) Exec(ctx context.Context, id string, cmd []string, stdout, stderr io.Writer) (int, error) {
	b, err := json.Marshal(ExecRequest{Cmd: cmd})
	if err != nil {
		return -1, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/tasks/"+url.PathEscape(id)+"/exec", bytes.NewReader(b))
	if err != nil {
		return -1, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return -1, fmt.Errorf("%w at %s: %v", ErrNoNode, c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return -1, decodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev ExecEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return -1, fmt.Errorf("decode exec event: %w", err)
		}
		if _, err := stdout.Write(ev.Stdout); err != nil {
			return -1, fmt.Errorf("write stdout: %w", err)
		}
		if _, err := stderr.Write(ev.Stderr); err != nil {
			return -1, fmt.Errorf("write stderr: %w", err)
		}
		switch {
		case ev.Error != "":
			return -1, &APIError{Status: http.StatusOK, Message: ev.Error}
		case ev.ExitCode != nil:
			return *ev.ExitCode, nil
		}
	}
	if err := sc.Err(); err != nil {
		return -1, fmt.Errorf("read exec output: %w", err)
	}
	return -1, fmt.Errorf("the node ended the exec without an exit code")
}

// Volumes lists the node's volumes.
func (c *Client) Volumes(ctx context.Context) ([]Volume, error) {
	var out []Volume
	return out, c.do(ctx, http.MethodGet, "/api/v1/volumes", nil, &out)
}

// RemoveVolume forgets a volume and releases its content.
func (c *Client) RemoveVolume(ctx context.Context, name string) (*Volume, error) {
	var out Volume
	return &out, c.do(ctx, http.MethodDelete, "/api/v1/volumes/"+url.PathEscape(name), nil, &out)
}
