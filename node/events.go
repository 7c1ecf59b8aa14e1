package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/offload-project/offload/market"
)

// WatchAll calls fn with every task after each of its changes, from now on,
// until fn returns an error or ctx is done (it then returns that error).
// Changes of one task that come faster than fn returns are coalesced: fn
// sees the latest snapshot, never misses the last one. With snapshot set,
// fn first gets every stored task, newest first (changes racing with that
// listing are delivered after it, so nothing is lost).
func (n *Node) WatchAll(ctx context.Context, snapshot bool, fn func(*Task) error) error {
	feed := n.req.WatchAll()
	defer feed.Close()
	return n.watchFeed(ctx, feed, snapshot, fn)
}

// watchFeed is WatchAll on a feed opened by the caller.
func (n *Node) watchFeed(ctx context.Context, feed *market.TaskFeed, snapshot bool, fn func(*Task) error) error {
	if snapshot {
		ts, err := n.List()
		if err != nil {
			return err
		}
		for _, t := range ts {
			if err := fn(t); err != nil {
				return err
			}
		}
	}
	for {
		ts, err := feed.Next(ctx)
		if err != nil {
			return fmt.Errorf("watch tasks: %w", err)
		}
		for _, t := range ts {
			if err := fn(view(t)); err != nil {
				return err
			}
		}
	}
}

// sseKeepAlive is how often an idle event stream gets a comment line, so
// that proxies and browsers keep it open.
const sseKeepAlive = 15 * time.Second

// sseWriter writes server-sent events.
type sseWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

// startSSE answers 200 with an event stream, or 500 when the connection
// cannot stream.
func startSSE(w http.ResponseWriter) (*sseWriter, bool) {
	f, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return nil, false
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	return &sseWriter{w: w, f: f}, true
}

// event writes one event whose data is v as JSON and flushes it.
func (s *sseWriter) event(name string, v any) error { return s.eventID("", name, v) }

// eventID is event with an event id ("" for none), which a reader that
// reconnects sends back as Last-Event-ID.
func (s *sseWriter) eventID(id, name string, v any) error {
	if err := s.write(id, name, v); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// write writes one event without flushing it: for the last event of a
// response, which the server flushes with the response's end in one write
// when the handler returns.
func (s *sseWriter) write(id, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if id != "" {
		if _, err := fmt.Fprintf(s.w, "id: %s\n", id); err != nil {
			return fmt.Errorf("write event: %w", err)
		}
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, b); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	return nil
}

// allEvents streams every task change as server-sent `task` events. With
// ?snapshot=1 every stored task is sent first. The stream ends when the
// client goes away or the node closes; a comment line every 15 s keeps it
// open while nothing changes.
func (s *apiServer) allEvents(w http.ResponseWriter, r *http.Request) {
	snapshot := r.URL.Query().Get("snapshot")
	if snapshot != "" && snapshot != "0" && snapshot != "1" {
		writeError(w, http.StatusBadRequest, "snapshot must be 0 or 1")
		return
	}
	// Subscribe before answering: a client that saw the response headers
	// and then submits a task does not miss its events.
	feed := s.n.req.WatchAll()
	defer feed.Close()
	sse, ok := startSSE(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	tasks := make(chan *Task)
	errc := make(chan error, 1)
	go func() {
		errc <- s.n.watchFeed(ctx, feed, snapshot == "1", func(t *Task) error {
			select {
			case tasks <- t:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	defer func() {
		cancel()
		<-errc // the watcher goroutine is gone before the handler returns
	}()
	ping := time.NewTicker(sseKeepAlive)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			errc <- err // for the deferred wait
			if ctx.Err() == nil {
				s.n.log.Debug("event stream ended", "err", err)
			}
			return
		case t := <-tasks:
			if err := sse.event("task", t); err != nil {
				return
			}
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			sse.f.Flush()
		}
	}
}
