package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/offload-project/offload/storage/content"
)

// Content added only for one task (a build's context, which BuildImage
// adds; a client's task data, or a task file's local inputs, which the
// client adds and then holds with HoldForTask) is not content the user
// asked to keep: it is pinned while the task may still need it, and
// released once the task has ended, so that a requestor that runs many
// such tasks does not fill its own disk with their inputs.
const (
	// buildContextPin names a context's pin from its add until its build
	// task is stored (then taskPin); after a crash in between, the pin is
	// released once older than orphanContextAge.
	buildContextPin = "build-context:"
	// taskPin+ID names the pin of content held for the task ID.
	taskPin = "task:"
)

// orphanContextAge is how old a context pin with no build task must be to
// be released: far longer than an add and a submit take.
var orphanContextAge = time.Hour

// releaseTaskContent unpins the content held for tasks that ended (or
// that this node no longer has), and build contexts left without a task;
// the block store's collection that follows removes their blocks. It runs
// before each periodic collection.
func (n *Node) releaseTaskContent(ctx context.Context) {
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
		case strings.HasPrefix(p.Name, taskPin):
			t, err := n.req.Get(strings.TrimPrefix(p.Name, taskPin))
			release = err != nil || t.State.IsTerminal()
		case strings.HasPrefix(p.Name, buildContextPin):
			release = time.Since(p.Created) > orphanContextAge
		}
		if !release {
			continue
		}
		if err := n.content.Unpin(ctx, p.Root); err != nil {
			n.log.Warn("release content held for a task", "cid", p.Root, "err", err)
			continue
		}
		n.log.Debug("released content held for a task", "cid", p.Root, "pin", p.Name)
	}
}

// ErrNotHeld is returned by HoldForTask when the content is not pinned
// under the name the caller expected (someone pinned it for other reasons
// since): it stays pinned as it is.
var ErrNotHeld = errors.New("content not pinned under the expected name")

// HoldForTask pins content c, which this node holds, for the task taskID
// only: the node releases it (and collects its blocks) once that task has
// ended, at its next periodic collection. ifName, when set, is the name c
// must be pinned under now (the name the caller added it with), so that
// content someone pinned for other reasons is never taken; otherwise
// ErrNotHeld. An unknown task is ErrTaskNotFound.
func (n *Node) HoldForTask(ctx context.Context, c, taskID, ifName string) error {
	id, err := content.ParseCID(c)
	if err != nil {
		return err
	}
	if _, err := n.req.Get(taskID); err != nil {
		return err
	}
	if ifName != "" {
		pins, err := n.content.Pins(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(pins, func(p content.Pin) bool { return p.Root == id })
		if i < 0 || pins[i].Name != ifName {
			return fmt.Errorf("%w: %s", ErrNotHeld, c)
		}
	}
	return n.content.Pin(ctx, id, taskPin+taskID)
}
