// Package client is the Go client of an offload node's local HTTP API and
// holds the API's JSON types. The CLI uses it for every command that talks
// to a running node; Go programs that do not embed a node can use it too.
//
// A running node writes the URL its API listens on to $home/api and its
// bearer token to $home/api.token (mode 0600); FromHome reads both. An API
// served over HTTPS (always so beyond loopback) also has the SHA-256
// fingerprint of its certificate in $home/api.fingerprint; FromHome pins
// it, or the one in $OFFLOAD_API_FINGERPRINT, and Client.Pin pins one
// given by the caller.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoNode is returned when no node is running for a home.
var ErrNoNode = errors.New("no offload node is running")

// APIFile and TokenFile are the names, under a node's home, of the files
// holding its API URL and token.
const (
	APIFile   = "api"
	TokenFile = "api.token"
)

// Client talks to one node's API.
type Client struct {
	// BaseURL is the API's URL (http://127.0.0.1:5050, https://host:5050).
	BaseURL string
	// Token is the API's bearer token.
	Token string
	// HTTP sends the requests; Pin replaces it with one that pins the
	// API's certificate.
	HTTP *http.Client
}

// New returns a client for the API at baseURL (e.g. http://127.0.0.1:5050).
// An https URL is verified against the system's certificate authorities
// until Pin sets a fingerprint.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{}}
}

// Option changes how FromHome builds a client.
type Option func(*options)

type options struct {
	fingerprint string
}

// WithFingerprint pins the API's certificate to fingerprint (see Pin),
// over $OFFLOAD_API_FINGERPRINT and the home's api.fingerprint. An empty
// fingerprint changes nothing.
func WithFingerprint(fingerprint string) Option {
	return func(o *options) { o.fingerprint = fingerprint }
}

// FromHome returns a client for the node running with the given home. It
// pins the API's certificate to the first fingerprint it finds: the one
// given WithFingerprint, $OFFLOAD_API_FINGERPRINT, then the home's
// api.fingerprint (written by a node serving HTTPS).
func FromHome(home string, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	api, err := os.ReadFile(filepath.Join(home, APIFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w for home %s: start one with `offload node --home %s` (add --provider to sell compute)", ErrNoNode, home, home)
	}
	if err != nil {
		return nil, fmt.Errorf("read node address: %w", err)
	}
	token, err := os.ReadFile(filepath.Join(home, TokenFile))
	if err != nil {
		return nil, fmt.Errorf("read api token: %w", err)
	}
	c := New(strings.TrimSpace(string(api)), strings.TrimSpace(string(token)))
	fp := o.fingerprint
	if fp == "" {
		fp = os.Getenv(FingerprintEnv)
	}
	if fp == "" {
		b, err := os.ReadFile(filepath.Join(home, FingerprintFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read api fingerprint: %w", err)
		}
		fp = string(b)
	}
	if strings.TrimSpace(fp) != "" {
		if err := c.Pin(fp); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// APIError is an error response from the node.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("node answered %d: %s", e.Status, e.Message) }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	var e Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	return &APIError{Status: resp.StatusCode, Message: e.Error}
}

// ID returns the node's identity.
func (c *Client) ID(ctx context.Context) (*Identity, error) {
	var out Identity
	return &out, c.do(ctx, http.MethodGet, "/api/v1/id", nil, &out)
}

// Peers lists connected peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var out []Peer
	return out, c.do(ctx, http.MethodGet, "/api/v1/peers", nil, &out)
}

// Submit stores a task on the node and returns it as soon as it is stored.
func (c *Client) Submit(ctx context.Context, spec TaskSpec) (*Task, error) {
	var out Task
	return &out, c.do(ctx, http.MethodPost, "/api/v1/tasks", spec, &out)
}

// Get returns one task.
func (c *Client) Get(ctx context.Context, id string) (*Task, error) {
	var out Task
	return &out, c.do(ctx, http.MethodGet, "/api/v1/tasks/"+url.PathEscape(id), nil, &out)
}

// List returns every task, newest first; with states, only the tasks in
// one of them ("running", "failed", ...).
func (c *Client) List(ctx context.Context, states ...string) ([]Task, error) {
	var out []Task
	path := "/api/v1/tasks"
	if len(states) > 0 {
		path += "?" + url.Values{"state": {strings.Join(states, ",")}}.Encode()
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Cancel cancels a task.
func (c *Client) Cancel(ctx context.Context, id string) (*Task, error) {
	var out Task
	return &out, c.do(ctx, http.MethodPost, "/api/v1/tasks/"+url.PathEscape(id)+"/cancel", nil, &out)
}

// Watch streams the task's snapshots (server-sent events) to fn until the
// task is terminal, fn returns an error, or ctx is done. It returns the last
// snapshot.
func (c *Client) Watch(ctx context.Context, id string, fn func(*Task) error) (*Task, error) {
	return c.watch(ctx, id, "", fn)
}

// watch reads the task's event stream (with query q) until its terminal
// snapshot.
func (c *Client) watch(ctx context.Context, id, q string, fn func(*Task) error) (*Task, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1/tasks/"+url.PathEscape(id)+"/events"+q, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, decodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var last *Task
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var t Task
		if err := json.Unmarshal([]byte(data), &t); err != nil {
			return last, fmt.Errorf("decode event: %w", err)
		}
		last = &t
		if fn != nil {
			if err := fn(&t); err != nil {
				return last, err
			}
		}
		if t.Terminal() {
			return last, nil
		}
	}
	if err := sc.Err(); err != nil {
		return last, fmt.Errorf("read events: %w", err)
	}
	if ctx.Err() != nil {
		return last, ctx.Err()
	}
	return last, errors.New("event stream ended before the task finished (did the node stop?)")
}

// Wait blocks until the task is terminal and returns it. It asks the
// node for the terminal snapshot only (?final=true), not every change.
func (c *Client) Wait(ctx context.Context, id string) (*Task, error) {
	return c.watch(ctx, id, "?final=true", nil)
}
