package market

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/internal/safefs"
	"github.com/offload-project/offload/market/wire"
)

// Checkpoints on the provider. A task with a checkpoint setting gets a
// writable directory at its path, filled with the checkpoint it resumes
// from (prepareCheckpoint). While it runs, checkpointLoop snapshots the
// directory as content at every interval and whenever the task writes
// wire.CheckpointMarker there; the latest snapshot is shared with the
// task's requestor and named in the next heartbeat (sent at once), and
// the one before it is let go. Snapshots are bounded by OutputsQuota and
// unpinned when the run ends: by then the requestor holds what it needs.

// markerPoll is how often the checkpoint directory is looked at for the
// task's marker.
const markerPoll = 250 * time.Millisecond

// checkpointState is the latest snapshot of a run's checkpoint directory
// (guarded by its mu), and a channel that wakes the heartbeat when a new
// one is taken.
type checkpointState struct {
	mu     sync.Mutex
	latest *wire.CheckpointRef
	pinned []string // snapshots pinned here, oldest first (at most two)
	fresh  chan struct{}
}

func newCheckpointState() *checkpointState {
	return &checkpointState{fresh: make(chan struct{}, 1)}
}

// ref returns the latest snapshot (nil before the first).
func (c *checkpointState) ref() *wire.CheckpointRef {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}

// prepareCheckpoint makes the task's checkpoint directory: the checkpoint
// it resumes from when the award names one, else an empty directory.
func (p *Provider) prepareCheckpoint(ctx context.Context, rec *ExecRecord, pr *prepared, from peer.ID) error {
	cp := rec.Spec.Checkpoint
	if cp == nil {
		return nil
	}
	if p.cfg.Content == nil {
		return errors.New("this provider has no content store for checkpoints")
	}
	dir := filepath.Join(pr.rwDir, "checkpoint")
	if cp.From == "" {
		if err := os.Mkdir(dir, 0o777); err != nil {
			return fmt.Errorf("create checkpoint dir: %w", err)
		}
	} else {
		if err := p.fetchTo(ctx, "checkpoint "+cp.From, cp.From, cp.FromSize, dir, from); err != nil {
			return err
		}
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: checkpoint %s is not a directory", errNotContent, cp.From)
		}
	}
	// The task may run as any user: let it write its checkpoint.
	if err := safefs.Chmod(dir, 0o777, 0o666); err != nil {
		return fmt.Errorf("%w: checkpoint %s: %w", errNotContent, cp.From, err)
	}
	pr.spec.Mounts = append(pr.spec.Mounts, executor.Mount{Source: dir, Target: cp.Path})
	pr.checkpointDir = dir
	return nil
}

// checkpointLoop snapshots the run's checkpoint directory every interval
// and when the task asks (the marker), until ctx ends; then it lets go of
// its snapshots.
func (p *Provider) checkpointLoop(ctx context.Context, rec *ExecRecord, pr *prepared, st *checkpointState) {
	requestor, _ := peer.Decode(rec.Requestor)
	var releases []func()
	defer func() {
		for _, r := range releases {
			r()
		}
		st.mu.Lock()
		pinned := st.pinned
		st.pinned = nil
		st.mu.Unlock()
		for _, c := range pinned {
			if err := p.cfg.Content.Unpin(context.Background(), c); err != nil {
				p.log.Debug("release checkpoint", "task", rec.TaskID, "err", err)
			}
		}
	}()
	every := time.NewTicker(rec.Spec.Checkpoint.Every())
	defer every.Stop()
	poll := time.NewTicker(markerPoll)
	defer poll.Stop()
	marker := filepath.Join(pr.checkpointDir, wire.CheckpointMarker)
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-every.C:
		case <-poll.C:
			// The task's own request: a regular file named so, checked
			// without following a link.
			fi, err := os.Lstat(marker)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			_ = os.Remove(marker)
		}
		ref, err := p.snapshot(ctx, rec, pr, seq)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("checkpoint snapshot", "task", rec.TaskID, "err", err)
			}
			continue
		}
		st.mu.Lock()
		same := st.latest != nil && st.latest.CID == ref.CID
		var drop string
		if !same {
			st.latest = ref
			st.pinned = append(st.pinned, ref.CID)
			if len(st.pinned) > 2 {
				drop, st.pinned = st.pinned[0], st.pinned[1:]
			}
		}
		st.mu.Unlock()
		if same {
			continue
		}
		releases = append(releases, p.cfg.Content.Share(requestor, ref.CID))
		if len(releases) > 2 {
			releases[0]()
			releases = releases[1:]
		}
		if drop != "" {
			if err := p.cfg.Content.Unpin(ctx, drop); err != nil {
				p.log.Debug("release checkpoint", "task", rec.TaskID, "err", err)
			}
		}
		select {
		case st.fresh <- struct{}{}:
		default:
		}
		p.log.Debug("checkpoint", "task", rec.TaskID, "cid", ref.CID, "bytes", ref.Size)
	}
}

// snapshot adds the checkpoint directory as content, bounded by
// OutputsQuota; the task's tree is read beneath its root without following
// links (ContentStore.AddDir), the marker left out if the task wrote it
// again meanwhile.
func (p *Provider) snapshot(ctx context.Context, rec *ExecRecord, pr *prepared, seq int) (*wire.CheckpointRef, error) {
	at := time.Now()
	c, err := p.cfg.Content.AddDir(ctx, pr.checkpointDir, fmt.Sprintf("checkpoint:%s:%d", rec.Key, seq), p.cfg.OutputsQuota)
	if errors.Is(err, ErrOverQuota) {
		return nil, fmt.Errorf("checkpoint is over this provider's quota of %d bytes (%w)", p.cfg.OutputsQuota, err)
	}
	if err != nil {
		return nil, err
	}
	size, ok := p.cfg.Content.Size(ctx, c)
	if !ok {
		size = 0
	}
	return &wire.CheckpointRef{CID: c, Size: size, At: at.UnixMilli()}, nil
}

// Checkpoints on the requestor: a heartbeat naming a new snapshot makes
// the requestor fetch and pin it from the provider (takeCheckpoint, one
// fetch per task at a time); once held, it becomes the task's Checkpoint
// and the one before is let go. A failed-over attempt is awarded with the
// latest one as Checkpoint.From, shared with its provider (share.go).
// The task's checkpoint is let go when the task ends.

// checkpointFetchTimeout bounds fetching one snapshot.
const checkpointFetchTimeout = 5 * time.Minute

// takeCheckpoint fetches ref from provider in the background, unless a
// fetch for task id runs already (the next heartbeat names the latest
// again).
func (r *Requestor) takeCheckpoint(id string, attempt int, provider peer.ID, ref wire.CheckpointRef) {
	if r.cfg.Content == nil {
		return
	}
	r.mu.Lock()
	if r.cpFetching[id] || r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.cpFetching[id] = true
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.cpFetching, id)
			r.mu.Unlock()
		}()
		t, err := r.store.Get(id)
		if err != nil || t.State.IsTerminal() || t.Attempt != attempt || (t.Checkpoint != nil && t.Checkpoint.CID == ref.CID) {
			return
		}
		ctx, cancel := context.WithTimeout(r.ctx, checkpointFetchTimeout)
		err = r.cfg.Content.FetchPin(ctx, ref.CID, provider, "checkpoint:"+id)
		cancel()
		if err != nil {
			r.log.Warn("fetch checkpoint", "task", id, "cid", ref.CID, "err", err)
			return
		}
		var old string
		_, err = r.update(id, edit(nil, func(t *Task) {
			old = ""
			if t.Checkpoint != nil {
				old = t.Checkpoint.CID
			}
			t.Checkpoint = &TaskCheckpoint{CheckpointRef: ref, Attempt: attempt, Provider: provider.String(), HeldAt: time.Now().UTC()}
		}))
		if err != nil {
			old = ref.CID // the task moved on: the new one is not needed
		}
		if old != "" && old != ref.CID || err != nil {
			if uerr := r.cfg.Content.Unpin(r.ctx, old); uerr != nil {
				r.log.Debug("release checkpoint", "task", id, "err", uerr)
			}
		}
		r.log.Debug("checkpoint held", "task", id, "cid", ref.CID, "attempt", attempt)
	}()
}

// TaskCheckpoint is the latest checkpoint of a task the requestor holds.
type TaskCheckpoint struct {
	wire.CheckpointRef
	// Attempt and Provider made it; HeldAt is when the requestor had it.
	Attempt  int       `json:"attempt"`
	Provider string    `json:"provider"`
	HeldAt   time.Time `json:"held_at"`
}

// awardSpec is the spec an attempt is awarded with: the task's, starting
// from the latest checkpoint when there is one.
func awardSpec(t *Task) wire.TaskSpec {
	spec := t.Spec
	if spec.Checkpoint != nil && t.Checkpoint != nil {
		cp := *spec.Checkpoint
		cp.From, cp.FromSize = t.Checkpoint.CID, t.Checkpoint.Size
		spec.Checkpoint = &cp
	}
	return spec
}

// dropCheckpoint lets go of an ended task's checkpoint.
func (r *Requestor) dropCheckpoint(t *Task) {
	if r.cfg.Content == nil || t.Checkpoint == nil || !t.State.IsTerminal() {
		return
	}
	if err := r.cfg.Content.Unpin(r.ctx, t.Checkpoint.CID); err != nil {
		r.log.Debug("release checkpoint", "task", t.ID, "err", err)
	}
}
