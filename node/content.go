package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/storage/content"
)

// ErrNoOutputs is returned by Results for a task that has no outputs (yet).
var ErrNoOutputs = errors.New("no outputs")

// BlocksDir is the block store's directory under the home.
const BlocksDir = "blocks"

// contentAdapter gives the market its small view of the content store.
type contentAdapter struct {
	s       *content.Store
	timeout time.Duration
	// maxBytes bounds a GetTo given no bound of its own (Config.MaxFetchBytes).
	maxBytes int64
}

var _ market.ContentStore = contentAdapter{}

func hints(from peer.ID) []peer.ID {
	if from == "" {
		return nil
	}
	return []peer.ID{from}
}

// maxFetchEntries bounds the files, directories and symlinks of one fetch
// the market makes from a peer's DAG.
const maxFetchEntries = 1 << 20

// GetTo writes c to dest under maxBytes (a.maxBytes when 0), enforced by
// the content store while it fetches and while it writes: over it, the
// error wraps market.ErrOverQuota and content.ErrTooLarge, nothing is left
// at dest and nothing is pinned (the blocks fetched so far are collected by
// the next GC).
func (a contentAdapter) GetTo(ctx context.Context, c, dest string, from peer.ID, maxBytes int64) error {
	id, err := content.ParseCID(c)
	if err != nil {
		return err
	}
	if maxBytes <= 0 {
		maxBytes = a.maxBytes
	}
	if maxBytes <= 0 {
		maxBytes = market.DefaultMaxFetchBytes
	}
	// What the market fetches (images, inputs, volumes, outputs) is a
	// peer's DAG: bound what it can expand into on this disk.
	err = a.s.Get(ctx, id, dest, content.GetOptions{Peers: hints(from), Timeout: a.timeout,
		MaxBytes: maxBytes, MaxEntries: maxFetchEntries})
	if errors.Is(err, content.ErrTooLarge) {
		return fmt.Errorf("%w: %w", market.ErrOverQuota, err)
	}
	return err
}

// Size is the size of c's DAG when all of it is held here: the larger of
// the cumulative size its root records and the bytes of its distinct
// blocks, so that a provider's fetch bounded by it never refuses what this
// node holds.
func (a contentAdapter) Size(ctx context.Context, c string) (int64, bool) {
	id, err := content.ParseCID(c)
	if err != nil {
		return 0, false
	}
	st, err := a.s.Stat(ctx, id)
	if err != nil || !st.Complete {
		return 0, false
	}
	return int64(max(st.CumulativeSize, st.TotalBytes)), true
}

func (a contentAdapter) FetchPin(ctx context.Context, c string, from peer.ID, name string) error {
	id, err := content.ParseCID(c)
	if err != nil {
		return err
	}
	return a.s.Fetch(ctx, id, content.FetchOptions{Peers: hints(from), Pin: true, PinName: name, Timeout: a.timeout})
}

func (a contentAdapter) AddDir(ctx context.Context, dir, name string, maxBytes int64) (string, error) {
	// A task's tree: nothing in it is followed out, special files are
	// refused (see SECURITY.md).
	id, err := a.s.AddPath(ctx, dir, content.AddOptions{PinName: name, Untrusted: true, MaxBytes: maxBytes})
	if errors.Is(err, content.ErrTooLarge) {
		return "", fmt.Errorf("%w: %w", market.ErrOverQuota, err)
	}
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

func (a contentAdapter) Unpin(ctx context.Context, c string) error {
	id, err := content.ParseCID(c)
	if err != nil {
		return err
	}
	return a.s.Unpin(ctx, id)
}

func (a contentAdapter) LocalFraction(ctx context.Context, c string) float64 {
	id, err := content.ParseCID(c)
	if err != nil {
		return 0
	}
	st, err := a.s.Stat(ctx, id)
	if err != nil {
		return 0
	}
	return st.Local
}

// Share lets p fetch the locally held blocks of roots until release (see
// content.Store.Share). CIDs that do not parse are skipped and logged: the
// market passes CIDs from task specs and results.
func (a contentAdapter) Share(p peer.ID, roots ...string) (release func()) {
	ids := make([]cid.Cid, 0, len(roots))
	for _, r := range roots {
		id, err := content.ParseCID(r)
		if err != nil {
			a.s.Logger().Warn("share: skipping a CID that does not parse", "peer", p, "err", err)
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return func() {}
	}
	return a.s.Share(p, ids...)
}

func (a contentAdapter) Has(ctx context.Context, c string) bool {
	id, err := content.ParseCID(c)
	if err != nil {
		return false
	}
	ok, _ := a.s.Has(ctx, id)
	return ok
}

// AddOptions tunes Node.Add.
type AddOptions struct {
	// CIDVersion is 0 (the reference `ipfs add` defaults: dag-pb leaves,
	// CIDv0) or 1 (raw leaves, as `ipfs add --cid-version 1`). Note that the
	// zero value asks for CIDv0; the CLI and the HTTP API default to 1.
	CIDVersion int
	// Progress is called with the bytes read so far.
	Progress func(int64)
	// Public publishes the content: any peer may fetch it and its root is
	// announced in the DHT. Without it the content is private: this node
	// serves it only to the providers a task using it is awarded to (see
	// README.md, "Who can fetch content").
	Public bool
	// Temporary adds content for a task yet to be submitted, which
	// HoldForTask then holds it for: new content is pinned as
	// "temp:RANDOM:NAME" (released after an hour if never held), and
	// content already pinned keeps its pin, so that an add for a task
	// never takes what the user keeps or another task holds.
	Temporary bool
}

// Add adds a file or directory tree as content and pins it. It is private
// unless opts.Public is set.
func (n *Node) Add(ctx context.Context, path string, opts AddOptions) (string, error) {
	if opts.CIDVersion != 0 && opts.CIDVersion != 1 {
		return "", fmt.Errorf("cid version %d: want 0 or 1", opts.CIDVersion)
	}
	c, err := n.content.AddPath(ctx, path, content.AddOptions{CIDVersion: content.Version(opts.CIDVersion),
		Progress: opts.Progress, Public: opts.Public, KeepPin: opts.Temporary, PinName: tempName(opts, filepath.Base(filepath.Clean(path)))})
	if err != nil {
		return "", err
	}
	return c.String(), nil
}

// tempName is the pin name of an add: for a temporary add a name of its
// own that no other pin has (see AddOptions.Temporary), else name, with
// "./" before a name that would read as a temporary pin or a task's hold
// (a file called "task:x" is the user's, never released).
func tempName(opts AddOptions, name string) string {
	switch {
	case opts.Temporary:
		return tempPin + rand.Text()[:10] + ":" + name
	case strings.HasPrefix(name, tempPin), strings.HasPrefix(name, taskPin):
		return "./" + name
	}
	return name
}

// AddReader adds one file's bytes as content under name and pins it. It is
// private unless opts.Public is set.
func (n *Node) AddReader(ctx context.Context, r io.Reader, name string, opts AddOptions) (string, error) {
	if opts.CIDVersion != 0 && opts.CIDVersion != 1 {
		return "", fmt.Errorf("cid version %d: want 0 or 1", opts.CIDVersion)
	}
	c, err := n.content.AddFile(ctx, r, content.AddOptions{CIDVersion: content.Version(opts.CIDVersion),
		PinName: tempName(opts, name), Progress: opts.Progress, Public: opts.Public, KeepPin: opts.Temporary})
	if err != nil {
		return "", err
	}
	return c.String(), nil
}

// Publish makes content this node holds completely public: any peer may
// fetch it, and its root is announced in the DHT. It pins c when it was not
// pinned; `offload rm` (Remove) ends the publication with the pin.
func (n *Node) Publish(ctx context.Context, c string) error {
	id, err := content.ParseCID(c)
	if err != nil {
		return err
	}
	return n.content.Publish(ctx, id)
}

// GetContent writes content c (fetched over bitswap when not local) to dest.
func (n *Node) GetContent(ctx context.Context, c, dest string, from ...peer.ID) error {
	id, err := content.ParseCID(c)
	if err != nil {
		return err
	}
	return n.content.Get(ctx, id, dest, content.GetOptions{Peers: from, Timeout: n.cfg.ContentTimeout})
}

// OpenContent streams one file's bytes.
func (n *Node) OpenContent(ctx context.Context, c string) (io.ReadSeekCloser, error) {
	id, err := content.ParseCID(c)
	if err != nil {
		return nil, err
	}
	return n.content.Open(ctx, id)
}

// PinInfo describes one pinned root.
type PinInfo struct {
	CID     string    `json:"cid"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Pins lists what this node pins.
func (n *Node) Pins(ctx context.Context) ([]PinInfo, error) {
	pins, err := n.content.Pins(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]PinInfo, 0, len(pins))
	for _, p := range pins {
		out = append(out, PinInfo{CID: p.Root.String(), Name: p.Name, Created: p.Created})
	}
	return out, nil
}

// Remove unpins c and collects the blocks nothing else references.
func (n *Node) Remove(ctx context.Context, c string) (int, error) {
	id, err := content.ParseCID(c)
	if err != nil {
		return 0, err
	}
	if err := n.content.Unpin(ctx, id); err != nil {
		return 0, err
	}
	return n.content.GC(ctx)
}

// PushOptions tunes Node.PushImage.
type PushOptions struct {
	// Public publishes the image's tarball (see AddOptions.Public); by
	// default it is private, served only to the providers of tasks that
	// run it.
	Public bool
	// Progress is called with the tarball bytes read so far.
	Progress func(int64)
}

// PushImage adds a local Docker image as content (its `docker save`
// tarball), so that providers load it by CID without any registry.
func (n *Node) PushImage(ctx context.Context, ref string, opts PushOptions) (string, error) {
	ex, err := docker.New(docker.WithLogger(n.log))
	if err != nil {
		return "", fmt.Errorf("image push: %w", err)
	}
	defer ex.Close()
	rc, err := ex.SaveImage(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("image push: %w", err)
	}
	defer rc.Close()
	return n.AddReader(ctx, rc, "image:"+ref, AddOptions{CIDVersion: 1, Public: opts.Public, Progress: opts.Progress})
}

// Results writes a task's outputs to dest.
func (n *Node) Results(ctx context.Context, id, dest string) (string, error) {
	t, err := n.req.Get(id)
	if err != nil {
		return "", err
	}
	if t.Result == nil || t.Result.Outputs == "" {
		if !t.State.IsTerminal() {
			return "", fmt.Errorf("%w: task %s is %s, no outputs yet (wait with `offload status %s`)", ErrNoOutputs, id, t.State, id)
		}
		return "", fmt.Errorf("%w: task %s wrote nothing to /outputs", ErrNoOutputs, id)
	}
	from, _ := peer.Decode(t.Provider)
	if err := n.GetContent(ctx, t.Result.Outputs, dest, from); err != nil {
		return "", err
	}
	return t.Result.Outputs, nil
}

// openContent builds the block store under the home.
func openContent(ctx context.Context, n *Node) (*content.Store, error) {
	dir := filepath.Join(n.cfg.Home, BlocksDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create block store dir: %w", err)
	}
	opts := []content.Option{content.WithLogger(n.log)}
	if n.cfg.ContentTimeout > 0 {
		opts = append(opts, content.WithTimeout(n.cfg.ContentTimeout))
	}
	s, err := content.New(ctx, n.host, n.host.ContentRouting, dir, opts...)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open block store: %w", err))
	}
	return s, nil
}

// DefaultGCInterval is how often a node collects its block store when
// Config.GCInterval is zero.
const DefaultGCInterval = 30 * time.Minute

// gcRetry is how soon a collection skipped for fetches in progress is
// tried again.
const gcRetry = 10 * time.Second

// gcLoop collects the block store every interval until stop: without it,
// the blocks a provider fetches for tasks (unpinned once written to a
// task's directory) would stay on its disk for good, a resource any
// requestor could make it spend.
type gcLoop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startGC starts collecting s every interval (DefaultGCInterval when zero;
// nil, collecting nothing, when negative); before each collection it calls
// release (when not nil), which unpins what the node no longer needs.
func startGC(s *content.Store, interval time.Duration, release func(context.Context), log *slog.Logger) *gcLoop {
	if interval < 0 {
		return nil
	}
	if interval == 0 {
		interval = DefaultGCInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gcLoop{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		wait := interval
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if release != nil {
				release(ctx)
			}
			start := time.Now()
			n, err := s.TryGC(ctx)
			if errors.Is(err, content.ErrBusy) {
				// Fetches or adds in progress: try again soon rather than
				// make every new one wait behind this collection.
				wait = min(interval, gcRetry)
				continue
			}
			wait = interval
			if err != nil && ctx.Err() == nil {
				log.Warn("collect the block store", "err", err)
				continue
			}
			if n > 0 {
				log.Info("collected the block store", "blocks", n, "ms", time.Since(start).Milliseconds())
			}
		}
	}()
	return g
}

// stop ends the loop and waits for a collection in progress; nil is fine.
func (g *gcLoop) stop() {
	if g == nil {
		return
	}
	g.cancel()
	<-g.done
}
