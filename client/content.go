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
	"strings"
	"time"
)

// Pin is one root this node keeps.
type Pin struct {
	CID     string    `json:"cid"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

type cidResult struct {
	CID string `json:"cid"`
}

// longOp posts body to path; with progress set it asks the node to stream
// progress lines and calls progress with the bytes done so far.
func (c *Client) longOp(ctx context.Context, path string, body any, progress func(int64), out any) error {
	if progress == nil {
		return c.do(ctx, http.MethodPost, path, body, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+path+sep+"progress=1", bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", ErrNoNode, c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev struct {
			Bytes  int64           `json:"bytes"`
			Result json.RawMessage `json:"result"`
			Error  string          `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("decode progress: %w", err)
		}
		progress(ev.Bytes)
		if ev.Error != "" {
			return &APIError{Status: http.StatusOK, Message: ev.Error}
		}
		if len(ev.Result) > 0 {
			return json.Unmarshal(ev.Result, out)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read progress: %w", err)
	}
	return fmt.Errorf("the node ended the operation without a result")
}

// Add adds a file or directory on the node's machine (an absolute path) and
// returns its CID. cidVersion is 0 or 1. The content is private; see
// AddWith.
func (c *Client) Add(ctx context.Context, path string, cidVersion int, progress func(int64)) (string, error) {
	return c.AddWith(ctx, path, AddOptions{CIDVersion: cidVersion, Progress: progress})
}

// AddOptions tunes AddWith.
type AddOptions struct {
	// CIDVersion is 0 or 1 (raw leaves). As in node.AddOptions, the zero
	// value asks for 0; the CLI defaults to 1.
	CIDVersion int
	// Public publishes the content: any peer may fetch it and its root is
	// announced in the DHT. Without it the content is private: the node
	// serves it only to the providers of tasks that use it.
	Public bool
	// Temporary adds content for a task about to be submitted (then
	// HoldForTask): new content is pinned under a temporary name (released
	// after an hour if never held), and bytes already pinned keep their
	// pin, so that such an add never takes what the user keeps or another
	// task holds.
	Temporary bool
	// Progress, when set, is called with the bytes read so far.
	Progress func(int64)
}

// AddWith adds a file or directory on the node's machine (an absolute
// path) and returns its CID.
func (c *Client) AddWith(ctx context.Context, path string, opts AddOptions) (string, error) {
	var out cidResult
	body := map[string]any{"path": path, "cid_version": opts.CIDVersion}
	if opts.Public {
		body["public"] = true
	}
	if opts.Temporary {
		body["temporary"] = true
	}
	err := c.longOp(ctx, "/api/v1/content/add", body, opts.Progress, &out)
	return out.CID, err
}

// HoldForTask holds content added Temporary (or held for other tasks) for
// the task taskID: the node releases it at its first collection after
// every task it is held for has ended. Content pinned for another reason,
// such as the user's own add of the same bytes, is never taken: an
// *APIError with status 409, and it stays pinned as it is.
func (c *Client) HoldForTask(ctx context.Context, cid, taskID string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/pins/"+url.PathEscape(cid)+"/hold", map[string]string{"task": taskID}, nil)
}

// Publish makes content the node holds completely public: any peer may
// fetch it and its root is announced in the DHT. The node pins it if it
// was not pinned; Remove ends the publication.
func (c *Client) Publish(ctx context.Context, cid string) error {
	var out cidResult
	return c.do(ctx, http.MethodPost, "/api/v1/content/"+url.PathEscape(cid)+"/publish", nil, &out)
}

// AddReader streams r to the node as one file and returns its CID. The
// content is private; Publish makes it public.
func (c *Client) AddReader(ctx context.Context, r io.Reader, name string, cidVersion int) (string, error) {
	q := url.Values{"name": {name}, "cid_version": {fmt.Sprint(cidVersion)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/content?"+q.Encode(), r)
	if err != nil {
		return "", fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w at %s: %v", ErrNoNode, c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return "", decodeError(resp)
	}
	var out cidResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("decode response: %w", err)
	}
	return out.CID, nil
}

// GetContent writes content to dest (an absolute path on the node's machine).
func (c *Client) GetContent(ctx context.Context, cid, dest string, progress func(int64)) error {
	return c.GetContentWith(ctx, cid, dest, GetOptions{Progress: progress})
}

// GetOptions tunes GetContentWith.
type GetOptions struct {
	// Timeout, when positive, replaces the node's inactivity timeout: the
	// fetch fails when no block arrived for this long (content no peer
	// serves to this node, private content among it, never arrives).
	Timeout time.Duration
	// Progress, when set, is called with the bytes written so far.
	Progress func(int64)
}

// GetContentWith writes content to dest (an absolute path on the node's
// machine).
func (c *Client) GetContentWith(ctx context.Context, cid, dest string, opts GetOptions) error {
	var out cidResult
	path := "/api/v1/content/" + url.PathEscape(cid) + "/get"
	if opts.Timeout > 0 {
		path += "?" + url.Values{"timeout": {opts.Timeout.String()}}.Encode()
	}
	return c.longOp(ctx, path, map[string]string{"dest": dest}, opts.Progress, &out)
}

// Cat streams one file's bytes.
func (c *Client) Cat(ctx context.Context, cid string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1/content/"+url.PathEscape(cid), nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNoNode, c.BaseURL, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp.Body, nil
}

// Pins lists pinned content.
func (c *Client) Pins(ctx context.Context) ([]Pin, error) {
	var out []Pin
	return out, c.do(ctx, http.MethodGet, "/api/v1/pins", nil, &out)
}

// Remove unpins content and collects unreferenced blocks.
func (c *Client) Remove(ctx context.Context, cid string) (int, error) {
	var out struct {
		Removed int `json:"removed_blocks"`
	}
	return out.Removed, c.do(ctx, http.MethodDelete, "/api/v1/pins/"+url.PathEscape(cid), nil, &out)
}

// PushImage adds a local Docker image as content and returns its CID. The
// image is private (served only to the providers of tasks that run it);
// see PushImageWith.
func (c *Client) PushImage(ctx context.Context, ref string, progress func(int64)) (string, error) {
	return c.PushImageWith(ctx, ref, PushOptions{Progress: progress})
}

// PushOptions tunes PushImageWith.
type PushOptions struct {
	// Public publishes the image's tarball (see AddOptions.Public).
	Public bool
	// Progress, when set, is called with the bytes read so far.
	Progress func(int64)
}

// PushImageWith adds a local Docker image as content and returns its CID.
func (c *Client) PushImageWith(ctx context.Context, ref string, opts PushOptions) (string, error) {
	var out cidResult
	body := map[string]any{"ref": ref}
	if opts.Public {
		body["public"] = true
	}
	err := c.longOp(ctx, "/api/v1/images/push", body, opts.Progress, &out)
	return out.CID, err
}

// Results writes a task's outputs to dest and returns their CID.
func (c *Client) Results(ctx context.Context, id, dest string, progress func(int64)) (string, error) {
	var out cidResult
	err := c.longOp(ctx, "/api/v1/tasks/"+url.PathEscape(id)+"/results", map[string]string{"dest": dest}, progress, &out)
	return out.CID, err
}

// BuildRequest is the body of POST /api/v1/images/build: a build of the
// Dockerfile in Context (a directory on the node's disk) on a provider
// that builds.
type BuildRequest struct {
	// Context is an absolute directory on the node's disk.
	Context string `json:"context"`
	// Dockerfile is its path inside the context (default "Dockerfile").
	Dockerfile string `json:"dockerfile,omitempty"`
	// TimeoutMS bounds the whole build (0: the provider's default).
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// Memory bounds each RUN step, in bytes (0: the provider's default).
	Memory int64 `json:"memory,omitempty"`
	// Tag names the build task.
	Tag string `json:"tag,omitempty"`
	// BuildArgs are values of the Dockerfile's ARGs.
	BuildArgs map[string]string `json:"build_args,omitempty"`
	// Network asks for a provider whose RUN steps may use a network (one
	// started with --build-network); by default builds have none.
	Network bool `json:"network,omitempty"`
	// Labels are provider labels the build needs (as a task's labels).
	Labels map[string]string `json:"labels,omitempty"`
}

// BuildImage submits a build and returns its task as soon as it is
// stored; wait for it (Wait) and read the image's CID from Task.Image.
func (c *Client) BuildImage(ctx context.Context, req BuildRequest) (*Task, error) {
	var out Task
	return &out, c.do(ctx, http.MethodPost, "/api/v1/images/build", req, &out)
}
