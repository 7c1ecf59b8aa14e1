package node

import (
	"context"
	"strings"
	"time"

	"github.com/offload-project/offload/storage/content"
)

// A build's context is content this node added by itself (BuildImage), not
// content its user asked to keep: it is pinned while the build may still
// need it, and released once the build task has ended, so that a requestor
// that builds often does not fill its own disk with old contexts.
const (
	// buildContextPin names a context's pin from its add until its build
	// task is stored (then buildTaskPin); after a crash in between, the
	// pin is released once older than orphanContextAge.
	buildContextPin = "build-context:"
	// buildTaskPin+ID names the context's pin of the build task ID.
	buildTaskPin = "build:"
)

// orphanContextAge is how old a context pin with no build task must be to
// be released: far longer than an add and a submit take.
var orphanContextAge = time.Hour

// releaseBuildContexts unpins the contexts of build tasks that ended (or
// that this node no longer has), and contexts left without a task; the
// block store's collection that follows removes their blocks. It runs
// before each periodic collection.
func (n *Node) releaseBuildContexts(ctx context.Context) {
	pins, err := n.content.Pins(ctx)
	if err != nil {
		n.log.Warn("list pins to release build contexts", "err", err)
		return
	}
	for _, p := range pins {
		if ctx.Err() != nil {
			return // closing: a store read may fail now, and prove nothing
		}
		release := false
		switch {
		case strings.HasPrefix(p.Name, buildTaskPin):
			t, err := n.req.Get(strings.TrimPrefix(p.Name, buildTaskPin))
			release = err != nil || t.State.IsTerminal()
		case strings.HasPrefix(p.Name, buildContextPin):
			release = time.Since(p.Created) > orphanContextAge
		}
		if !release {
			continue
		}
		if err := n.content.Unpin(ctx, p.Root); err != nil {
			n.log.Warn("release a build context", "cid", p.Root, "err", err)
			continue
		}
		n.log.Debug("released a build context", "cid", p.Root, "pin", p.Name)
	}
}

// holdContextForBuild renames the pin of a build's context after its task,
// so that releaseBuildContexts releases it once that task has ended.
func (n *Node) holdContextForBuild(ctx context.Context, c, taskID string) {
	id, err := content.ParseCID(c)
	if err == nil {
		err = n.content.Pin(ctx, id, buildTaskPin+taskID)
	}
	if err != nil {
		n.log.Warn("hold a build context for its task", "cid", c, "task", taskID, "err", err)
	}
}
