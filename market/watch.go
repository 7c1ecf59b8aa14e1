package market

import (
	"context"
	"errors"
	"sync"
)

// ErrFeedClosed is returned by TaskFeed.Next once the feed or its
// requestor closed.
var ErrFeedClosed = errors.New("task feed closed")

// TaskFeed delivers the changes of every task of a Requestor, for
// dashboards and event streams. It coalesces per task: when a task changes
// several times before Next is called, only its latest snapshot is kept
// (in the place of its first pending change), so a slow reader never
// blocks the requestor and never misses a task's final state. Memory is
// bounded by the number of distinct tasks changed between two calls.
//
// A TaskFeed is used by one goroutine; Close may be called from any.
type TaskFeed struct {
	r    *Requestor
	wake chan struct{} // one slot: something is pending

	mu      sync.Mutex
	pending map[string]*Task
	order   []string
	closed  bool
}

// allWatchers is the set of open TaskFeeds of a Requestor; the zero value
// is ready to use.
type allWatchers struct {
	mu    sync.Mutex
	feeds map[*TaskFeed]struct{}
}

// WatchAll opens a feed of every task change from now on. Call Close on it
// when done. Tasks that do not change are not delivered: list them first
// (List) to start from a full picture.
func (r *Requestor) WatchAll() *TaskFeed {
	f := &TaskFeed{r: r, wake: make(chan struct{}, 1), pending: map[string]*Task{}}
	r.all.mu.Lock()
	if r.all.feeds == nil {
		r.all.feeds = map[*TaskFeed]struct{}{}
	}
	r.all.feeds[f] = struct{}{}
	r.all.mu.Unlock()
	return f
}

// Next blocks until at least one task changed, then returns the latest
// snapshot of each changed task in the order they first changed. It
// returns ctx's error when ctx ends, and ErrFeedClosed after Close or once
// the requestor closed.
func (f *TaskFeed) Next(ctx context.Context) ([]*Task, error) {
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return nil, ErrFeedClosed
		}
		if len(f.order) > 0 {
			out := make([]*Task, 0, len(f.order))
			for _, id := range f.order {
				out = append(out, f.pending[id])
			}
			f.order = f.order[:0]
			clear(f.pending)
			f.mu.Unlock()
			return out, nil
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.r.ctx.Done():
			return nil, ErrFeedClosed
		case <-f.wake:
		}
	}
}

// Close stops the feed; a blocked Next returns ErrFeedClosed.
func (f *TaskFeed) Close() {
	f.r.all.mu.Lock()
	delete(f.r.all.feeds, f)
	f.r.all.mu.Unlock()
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// publish hands t to every open feed without blocking.
func (a *allWatchers) publish(t *Task) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for f := range a.feeds {
		f.mu.Lock()
		if _, ok := f.pending[t.ID]; !ok {
			f.order = append(f.order, t.ID)
		}
		f.pending[t.ID] = t
		f.mu.Unlock()
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}
