package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ErrLogsInterrupted is returned by Logs when the stream broke before its
// end (the node stopped, the connection dropped): call Logs again from the
// position it returned.
var ErrLogsInterrupted = errors.New("log stream interrupted")

// Logs reads a task's output from GET /api/v1/tasks/{id}/logs, from
// position from ("" for the start of the current attempt, else a
// LogChunk.Next), calling fn with each chunk; with follow it goes on as
// the task writes, until the task ends. It returns the position to resume
// from; the error wraps ErrLogsInterrupted when the stream broke early.
func (c *Client) Logs(ctx context.Context, id, from string, follow bool, fn func(LogChunk) error) (string, error) {
	q := url.Values{}
	if follow {
		q.Set("follow", "true")
	}
	if from != "" {
		q.Set("from", from)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1/tasks/"+url.PathEscape(id)+"/logs?"+q.Encode(), nil)
	if err != nil {
		return from, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return from, fmt.Errorf("%w: %w", ErrLogsInterrupted, c.connError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return from, decodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		switch event {
		case "log":
			var ch LogChunk
			if err := json.Unmarshal([]byte(data), &ch); err != nil {
				return from, fmt.Errorf("decode log chunk: %w", err)
			}
			from = ch.Next
			if fn != nil {
				if err := fn(ch); err != nil {
					return from, err
				}
			}
		case "error":
			var e struct{ Error string }
			_ = json.Unmarshal([]byte(data), &e)
			return from, errors.New(e.Error)
		case "end":
			return from, nil
		}
	}
	if ctx.Err() != nil {
		return from, ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return from, fmt.Errorf("%w: %w", ErrLogsInterrupted, err)
	}
	return from, fmt.Errorf("%w: the stream ended before its end event (did the node stop?)", ErrLogsInterrupted)
}
