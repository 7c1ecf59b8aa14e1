package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/offload-project/offload/storage/content"
)

// Content added only for a task (a build's context, which BuildImage
// adds; a client's task data, or a task file's local inputs, which the
// client adds) is not content the user asked to keep. It is added
// temporary (AddOptions.Temporary: pinned as tempPin..., or left under the
// pin it had), held for its task once that is stored (HoldForTask: pinned
// as taskPin+ID), and released once every task it is held for has ended,
// so that a requestor that runs many such tasks does not fill its own disk
// with their inputs.
const (
	// tempPin starts the name of content added temporary and not held for
	// a task yet; after a crash before the hold, the pin is released once
	// older than orphanAge.
	tempPin = "temp:"
	// taskPin+ID[,ID]... names the pin of content held for those tasks.
	taskPin = "task:"
)

// maxHolders bounds the tasks one content is held for at once: a hold
// beyond it first drops the tasks that ended, and fails when none has.
const maxHolders = 64

// orphanAge is how old a temporary pin never held for a task must be to
// be released: far longer than an add and a submit take.
var orphanAge = time.Hour

// holders returns the tasks a pin named name holds its content for, and
// whether it is such a pin.
func holders(name string) ([]string, bool) {
	ids, ok := strings.CutPrefix(name, taskPin)
	if !ok {
		return nil, false
	}
	return strings.Split(ids, ","), true
}

// ended reports whether this node's task id has ended, or is gone.
func (n *Node) ended(id string) bool {
	t, err := n.req.Get(id)
	return err != nil || t.State.IsTerminal()
}

// releaseTaskContent unpins the content held for tasks that have all
// ended (or that this node no longer has), and temporary content never
// held for one; the block store's collection that follows removes their
// blocks. It runs before each periodic collection.
func (n *Node) releaseTaskContent(ctx context.Context) {
	pins, err := n.content.Pins(ctx)
	if err != nil {
		n.log.Warn("list pins to release content held for tasks", "err", err)
		return
	}
	for _, p := range pins {
		if ctx.Err() != nil {
			return // closing: a store read may fail now, and prove nothing
		}
		ids, held := holders(p.Name)
		if !held && !(strings.HasPrefix(p.Name, tempPin) && time.Since(p.Created) > orphanAge) {
			continue
		}
		n.releaseIfEnded(ctx, p.Root, ids)
	}
}

// releaseIfEnded unpins c when it is still held for exactly ids (or, for
// an orphaned temporary pin, for none) and every one of them has ended.
func (n *Node) releaseIfEnded(ctx context.Context, c cid.Cid, ids []string) {
	n.holdMu.Lock() // a hold for one more task must not be lost
	defer n.holdMu.Unlock()
	name, pinned := n.pinName(ctx, c)
	if now, _ := holders(name); !pinned || !slices.Equal(now, ids) {
		return // changed since it was listed: the next collection decides
	}
	for _, id := range ids {
		if !n.ended(id) {
			return
		}
	}
	if err := n.content.Unpin(ctx, c); err != nil {
		n.log.Warn("release content held for tasks", "cid", c, "err", err)
		return
	}
	n.log.Debug("released content held for tasks", "cid", c, "pin", name)
}

// pinName returns the name c is pinned under, and whether it is pinned
// (a failed read counts as not pinned: nothing is released or held on it).
func (n *Node) pinName(ctx context.Context, c cid.Cid) (string, bool) {
	p, ok, err := n.content.PinOf(ctx, c)
	return p.Name, ok && err == nil
}

// ErrNotHeld is returned by HoldForTask for content pinned for another
// reason than a task (the user keeps it): it stays pinned as it is.
var ErrNotHeld = errors.New("content is pinned for another reason than a task")

// HoldForTask holds content c, added temporary or held for other tasks
// already, for the task taskID too: the node releases it (and collects
// its blocks) at its first periodic collection after every task it is
// held for has ended (at most maxHolders at once). Content pinned for
// another reason (the user's own add, even of the same bytes) is never
// taken: ErrNotHeld. An unknown task is ErrTaskNotFound.
func (n *Node) HoldForTask(ctx context.Context, c, taskID string) error {
	id, err := content.ParseCID(c)
	if err != nil {
		return err
	}
	if _, err := n.req.Get(taskID); err != nil {
		return err
	}
	n.holdMu.Lock()
	defer n.holdMu.Unlock()
	name, pinned := n.pinName(ctx, id)
	ids, held := holders(name)
	switch {
	case !pinned:
		return fmt.Errorf("%w: %s is not pinned here", content.ErrNotLocal, c)
	case held:
		if slices.Contains(ids, taskID) {
			return nil
		}
		if len(ids) >= maxHolders {
			ids = slices.DeleteFunc(ids, n.ended)
		}
		if len(ids) >= maxHolders {
			return fmt.Errorf("%w: %s is held for %d running tasks already", ErrNotHeld, c, len(ids))
		}
	case !strings.HasPrefix(name, tempPin):
		return fmt.Errorf("%w: %s is pinned as %q", ErrNotHeld, c, name)
	}
	return n.content.Pin(ctx, id, taskPin+strings.Join(append(ids, taskID), ","))
}
