package market

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// Live logs. While a task runs, its provider keeps the latest output of
// the run in a bounded ring (runLog) and serves it, and what follows as it
// is written, to the task's requestor on wire.ProtoLogs streams
// (handleLogs). The requestor's Logs follows the task across failovers and
// restarts: a reader resumes from the offset it got to.

// Bounds of live logs on the provider.
const (
	// runLogBytes is how much of a run's latest output is kept.
	runLogBytes = 256 << 10
	// runLogKeep is how long a run's log stays after the run ended, for a
	// follower that reconnects (the result carries the tails for good).
	runLogKeep = time.Minute
	// maxLogFollowers bounds the log streams open at once, per execution
	// and in all.
	maxLogFollowersPerRun = 4
	maxLogFollowers       = 64
	// maxEndedLogs bounds the logs of ended runs kept (the running ones
	// are bounded by the provider's capacity and queue).
	maxEndedLogs = 64
)

// logPiece is one write of a run's output.
type logPiece struct {
	stream string
	offset int64
	data   []byte
}

// runLog is the latest output of one run: pieces in order, at most
// runLogBytes in all (the oldest leave first), and a channel closed and
// replaced at every write so that followers wake.
type runLog struct {
	mu        sync.Mutex
	pieces    []logPiece
	bytes     int
	next      int64 // offset of the next byte written
	ended     bool
	endedAt   time.Time
	wake      chan struct{}
	followers int
}

func newRunLog() *runLog { return &runLog{wake: make(chan struct{})} }

// write appends p (copied) to the log; it is executor.Spec.Log.
func (l *runLog) write(stream string, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(p) > 0 {
		n := min(len(p), wire.MaxLogChunkData)
		l.pieces = append(l.pieces, logPiece{stream: stream, offset: l.next, data: append([]byte(nil), p[:n]...)})
		l.bytes += n
		l.next += int64(n)
		p = p[n:]
	}
	for l.bytes > runLogBytes && len(l.pieces) > 1 {
		l.bytes -= len(l.pieces[0].data)
		l.pieces[0] = logPiece{}
		l.pieces = l.pieces[1:]
	}
	close(l.wake)
	l.wake = make(chan struct{})
}

// end marks the run over: followers get the rest and an End frame.
func (l *runLog) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended {
		l.ended, l.endedAt = true, time.Now()
		close(l.wake)
		l.wake = make(chan struct{})
	}
}

// since returns the pieces from offset from on (the first one cut to
// start there), how many bytes from from on are no longer held, whether
// the run ended, and a channel closed at the next change.
func (l *runLog) since(from int64) (out []logPiece, skipped int64, ended bool, wake <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pieces) > 0 && l.pieces[0].offset > from {
		skipped = l.pieces[0].offset - from
	} else if len(l.pieces) == 0 && l.next > from {
		skipped = l.next - from
	}
	for _, p := range l.pieces {
		end := p.offset + int64(len(p.data))
		if end <= from {
			continue
		}
		if p.offset < from {
			p.data = p.data[from-p.offset:]
			p.offset = from
		}
		out = append(out, p)
	}
	return out, skipped, l.ended, l.wake
}

// logBook holds the logs of the runs of one provider, by execution key.
type logBook struct {
	mu   sync.Mutex
	runs map[string]*runLog
	// ended lists the runs that ended, oldest end first, so that pruning
	// looks only at the oldest: at most maxEndedLogs entries after a prune.
	ended     []endedLog
	followers int
}

// endedLog is a run's log that ended at at, under key.
type endedLog struct {
	key string
	l   *runLog
	at  time.Time
}

// open starts the log of the run under key.
func (b *logBook) open(key string) *runLog {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.runs == nil {
		b.runs = map[string]*runLog{}
	}
	b.pruneLocked()
	l := newRunLog()
	b.runs[key] = l
	return l
}

// close ends the run's log; it is forgotten runLogKeep later.
func (b *logBook) close(key string, l *runLog) {
	l.end()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = append(b.ended, endedLog{key: key, l: l, at: time.Now()})
	b.pruneLocked()
}

// pruneLocked forgets the logs of runs that ended over runLogKeep ago
// (it runs whenever a run starts or ends, and before a log is followed),
// and keeps at most maxEndedLogs of the ended ones. It looks at the oldest
// ended runs only.
func (b *logBook) pruneLocked() {
	for len(b.ended) > 0 && (len(b.ended) > maxEndedLogs || time.Since(b.ended[0].at) > runLogKeep) {
		e := b.ended[0]
		if b.runs[e.key] == e.l { // not a later run's log under the same key
			delete(b.runs, e.key)
		}
		b.ended[0] = endedLog{}
		b.ended = b.ended[1:]
	}
}

// follow returns key's log and counts a follower, or says why not.
func (b *logBook) follow(key string) (*runLog, func(), string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked()
	l := b.runs[key]
	switch {
	case l == nil:
		return nil, nil, "no live log of this execution here (it is not running, or ended over a minute ago)"
	case b.followers >= maxLogFollowers:
		return nil, nil, "too many log streams open on this provider"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.followers >= maxLogFollowersPerRun {
		return nil, nil, "too many log streams open for this execution"
	}
	l.followers++
	b.followers++
	return l, func() {
		b.mu.Lock()
		b.followers--
		b.mu.Unlock()
		l.mu.Lock()
		l.followers--
		l.mu.Unlock()
	}, ""
}

// handleLogs serves a run's output to the requestor of that execution
// only (the execution key holds its peer id).
func (p *Provider) handleLogs(s network.Stream) {
	defer s.Close()
	from, body, ok := stream.Accept(s, p.streamLimit, 10*time.Second, wire.MaxLogsRequestSize, p.log, "logs")
	if !ok {
		return
	}
	req, err := wire.Decode[wire.LogsRequest](body)
	if err != nil {
		_ = stream.WriteMsg(s, &wire.LogChunk{End: true, Error: err.Error()})
		return
	}
	l, done, why := p.logs.follow(execKey(from.String(), req.TaskID, req.Attempt))
	if l == nil {
		_ = stream.WriteMsg(s, &wire.LogChunk{End: true, Error: why})
		return
	}
	defer done()
	_ = s.SetDeadline(time.Time{})
	// The requestor sends nothing after its request, so a read that
	// returns means it went away (closed or reset the stream): a follower
	// waiting for output that may not come for hours gives its place back
	// at once, not when the run ends.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		var b [1]byte
		_, _ = s.Read(b[:])
	}()
	defer func() {
		_ = s.Close() // both directions: the read above returns
		select {
		case <-gone:
		case <-time.After(time.Second):
			_ = s.Reset() // a transport whose Close leaves a read waiting
			<-gone
		}
	}()
	offset := req.From
	for {
		pieces, skipped, ended, wake := l.since(offset)
		for i, pc := range pieces {
			c := wire.LogChunk{Stream: pc.stream, Offset: pc.offset, Data: pc.data}
			if i == 0 {
				c.Skipped = skipped
			}
			if err := p.writeChunk(s, &c); err != nil {
				return
			}
			offset = pc.offset + int64(len(pc.data))
		}
		if len(pieces) == 0 && skipped > 0 {
			offset += skipped
		}
		if ended || !req.Follow {
			_ = p.writeChunk(s, &wire.LogChunk{Offset: offset, End: true})
			return
		}
		select {
		case <-wake:
		case <-gone:
			return
		case <-p.ctx.Done():
			return
		}
	}
}

// writeChunk writes one frame within a deadline: a follower that stops
// reading holds nothing for long.
func (p *Provider) writeChunk(s network.Stream, c *wire.LogChunk) error {
	_ = s.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return stream.WriteMsg(s, c)
}

// errNoLogs is returned by Logs for a task that has no run to follow.
var errNoLogs = errors.New("no output to show")

// Logs sends what the task's current run wrote to fn, chunk by chunk
// with the attempt it belongs to, from offset from of attempt on (attempt
// -1: the current one; from counts in that attempt's output); with follow
// it goes on as the task writes, across failovers (a new attempt's output
// starts again at offset 0, announced by a chunk with Stream "" and Error
// saying so), until the task ends or ctx is done. A task that already
// ended is answered from its provider while it still holds the run's log,
// else from the result's tails.
func (r *Requestor) Logs(ctx context.Context, id string, attempt int, from int64, follow bool, fn func(attempt int, c wire.LogChunk) error) error {
	for {
		t, err := r.Get(id)
		if err != nil {
			return err
		}
		if t.Group != nil {
			return fmt.Errorf("task %s runs as child tasks: follow the logs of each child", id)
		}
		if attempt >= 0 && t.Attempt != attempt {
			from = 0
			if err := fn(t.Attempt, wire.LogChunk{Error: fmt.Sprintf("attempt %d on %s starts", t.Attempt, short(t.Provider))}); err != nil {
				return err
			}
		}
		attempt = t.Attempt
		fn := func(c wire.LogChunk) error { return fn(t.Attempt, c) }
		switch {
		case t.Provider != "":
			end, err := r.followProvider(ctx, t, from, follow, fn)
			if err == nil {
				from = end
			}
			switch {
			case err != nil && t.State.IsTerminal():
				return r.resultLogs(t, from, fn)
			case !follow:
				return err
			case err == nil && t.State.IsTerminal():
				return nil
			}
			// Following: the run ended (its result is on its way) or its
			// provider cannot be reached (a failover may come): look again
			// once the task moved.
		case t.State.IsTerminal():
			return r.resultLogs(t, from, fn)
		case !follow:
			return fmt.Errorf("%w: task %s is %s and runs nowhere yet", errNoLogs, id, t.State)
		}
		if err := r.waitChange(ctx, t, 5*time.Second); err != nil {
			return err
		}
	}
}

// followProvider reads t's current run's output from its provider and
// returns the offset it got to.
func (r *Requestor) followProvider(ctx context.Context, t *Task, from int64, follow bool, fn func(wire.LogChunk) error) (int64, error) {
	pid, err := peer.Decode(t.Provider)
	if err != nil {
		return from, err
	}
	s, err := r.h.NewStream(network.WithAllowLimitedConn(ctx, "logs"), pid, wire.ProtoLogs)
	if err != nil {
		return from, fmt.Errorf("open logs stream to %s: %w", short(t.Provider), err)
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if err := stream.WriteMsg(s, &wire.LogsRequest{TaskID: t.ID, Attempt: t.Attempt, From: from, Follow: follow}); err != nil {
		return from, err
	}
	br := stream.NewReader(s)
	for {
		body, err := stream.ReadFrame(br, wire.MaxLogChunkSize)
		if err != nil {
			return from, fmt.Errorf("read logs from %s: %w", short(t.Provider), err)
		}
		c, err := wire.Decode[wire.LogChunk](body)
		if err != nil {
			s.Reset()
			return from, fmt.Errorf("bad log chunk from %s: %w", short(t.Provider), err)
		}
		if c.End {
			if c.Error != "" {
				return from, errors.New(c.Error)
			}
			return max(from, c.Offset), nil
		}
		if c.Offset+int64(len(c.Data)) <= from {
			continue // a provider that repeats itself
		}
		if err := fn(*c); err != nil {
			return from, err
		}
		from = c.Offset + int64(len(c.Data))
	}
}

// resultLogs sends the tails the result of an ended task carries, when
// the reader has not read past their start.
func (r *Requestor) resultLogs(t *Task, from int64, fn func(wire.LogChunk) error) error {
	if t.Result == nil || from > 0 {
		return nil
	}
	if len(t.Result.Stdout) > 0 {
		if err := fn(wire.LogChunk{Stream: wire.LogStdout, Data: []byte(t.Result.Stdout), Skipped: t.Result.StdoutSize - int64(len(t.Result.Stdout))}); err != nil {
			return err
		}
	}
	if len(t.Result.Stderr) > 0 {
		return fn(wire.LogChunk{Stream: wire.LogStderr, Data: []byte(t.Result.Stderr), Skipped: t.Result.StderrSize - int64(len(t.Result.Stderr))})
	}
	return nil
}

// waitChange returns once task t changed, or after at most d (or with
// ctx's error).
func (r *Requestor) waitChange(ctx context.Context, t *Task, d time.Duration) error {
	ch, stop, err := r.Watch(t.ID)
	if err != nil {
		return err
	}
	defer stop()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-timer.C:
			return nil
		case cur := <-ch:
			if cur.Revision != t.Revision || cur.State != t.State || cur.Provider != t.Provider || cur.Attempt != t.Attempt {
				return nil
			}
		}
	}
}
