package market

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/oklog/ulid/v2"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market/wire"
)

// Group kinds.
const (
	GroupRedundancy = "redundancy"
	GroupSubtasks   = "subtasks"
	// GroupEach runs the task once on every provider that matched it at
	// submit time (TaskSpec.Each), each run pinned to its provider.
	GroupEach = "each"
)

// Group describes a parent task whose work is done by child tasks: N
// redundant copies on distinct providers, one piece per subtask, or one
// run on each provider that matched.
type Group struct {
	Kind     string  `json:"kind"`
	Pieces   int     `json:"pieces"`
	Children []Child `json:"children"`
	// Targets are an each group's providers, one per piece.
	Targets []string `json:"targets,omitempty"`
}

// Child is one child task of a group, as its parent last saw it.
type Child struct {
	ID       string `json:"id"`
	Piece    int    `json:"piece"`
	State    State  `json:"state"`
	Provider string `json:"provider,omitempty"`
	Outputs  string `json:"outputs,omitempty"`
	// Verdict says to a person what became of the child once known:
	// "accepted", "rejected: why", "failed: why" or "done".
	Verdict string `json:"verdict,omitempty"`
	// Judged is the verdict's kind, on which the group decides.
	Judged VerdictKind `json:"judged,omitempty"`
}

// VerdictKind is what the parent concluded of a finished child.
type VerdictKind string

// Verdict kinds.
const (
	VerdictAccepted VerdictKind = "accepted" // a piece the verify step accepted
	VerdictRejected VerdictKind = "rejected" // a piece the verify step rejected
	VerdictFailed   VerdictKind = "failed"   // the child did not complete
	VerdictDone     VerdictKind = "done"     // a redundant copy completed
)

// judged returns the child's verdict kind. Records stored before Judged
// existed carry only the Verdict text, whose first word is the kind.
func (c Child) judged() VerdictKind {
	if c.Judged != "" || c.Verdict == "" {
		return c.Judged
	}
	word, _, _ := strings.Cut(c.Verdict, ":")
	return VerdictKind(word)
}

// verdict is a child's verdict as the group step records it.
type verdict struct {
	kind VerdictKind
	why  string
}

func (v verdict) text() string {
	if v.why == "" {
		return string(v.kind)
	}
	return string(v.kind) + ": " + v.why
}

// VerifyFunc checks a finished piece in the embedding program; it returns
// nil to accept the piece. It is called on the requestor's node.
type VerifyFunc func(ctx context.Context, piece int, child *Task) error

// VerifyRunner runs a verify step on the requestor's own executor.
type VerifyRunner func(ctx context.Context, runtime string, spec executor.Spec) (*executor.Result, error)

// isGroup reports whether a spec fans out into children.
func isGroup(s wire.TaskSpec) bool { return s.Redundancy > 1 || len(s.Subtasks) > 0 || s.Each }

// newGroup describes the children a spec needs; targets are an each
// group's providers.
func newGroup(s wire.TaskSpec, targets []string) *Group {
	switch {
	case s.Redundancy > 1:
		return &Group{Kind: GroupRedundancy, Pieces: s.Redundancy}
	case s.Each:
		return &Group{Kind: GroupEach, Pieces: len(targets), Targets: targets}
	}
	return &Group{Kind: GroupSubtasks, Pieces: len(s.Subtasks)}
}

// eachTargets returns the providers an each task runs on: every provider
// the pool knows to match it now (after a lookup of more, bounded by
// ctx), at most wire.MaxEach, ordered by peer id.
func (r *Requestor) eachTargets(ctx context.Context, s wire.TaskSpec) ([]string, error) {
	req := wire.RequirementsOf(s)
	if r.cfg.Discover != nil {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r.cfg.Discover(lctx, req, wire.MaxEach)
		cancel()
	}
	var cands []Candidate
	if r.cfg.Candidates != nil {
		cands = r.cfg.Candidates(req)
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range cands {
		id := c.Peer.String()
		if c.Peer == r.h.ID() || seen[id] || slices.Contains(s.Exclude, id) {
			continue
		}
		seen[id] = true
		out = append(out, id)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: each: no provider known to this node matches the task", wire.ErrInvalid)
	}
	slices.Sort(out)
	if len(out) > wire.MaxEach {
		out = out[:wire.MaxEach]
	}
	return out, nil
}

// childSpec is the spec of one child of a group.
func childSpec(s wire.TaskSpec, g *Group, piece int, exclude []string) wire.TaskSpec {
	c := s
	c.Redundancy, c.Subtasks, c.Verify, c.Each = 0, nil, nil, false
	c.Exclude = append(append([]string{}, s.Exclude...), exclude...)
	if g.Kind == GroupEach {
		c.Provider = g.Targets[piece]
	}
	if g.Kind == GroupSubtasks {
		st := s.Subtasks[piece]
		if len(st.Cmd) > 0 {
			c.Cmd = st.Cmd
		}
		c.Inputs = append(append([]wire.Input{}, s.Inputs...), st.Inputs...)
		if len(st.Env) > 0 {
			env := map[string]string{}
			for k, v := range s.Env {
				env[k] = v
			}
			for k, v := range st.Env {
				env[k] = v
			}
			c.Env = env
		}
	}
	return c
}

// SetVerifyFunc registers an in-process verification for a subtask group
// (the Go library's callback). It is not persisted: after a restart only
// the spec's verify step applies.
func (r *Requestor) SetVerifyFunc(parentID string, fn VerifyFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verifyFns[parentID] = fn
}

// driveGroup runs a parent task: it creates children, follows them,
// verifies pieces and settles the parent.
func (r *Requestor) driveGroup(t *Task) error {
	ch, stop := r.watchChildren(t.ID)
	defer stop()
	if t.State == StatePending {
		var err error
		t, err = r.update(t.ID, move(StateRunning, []State{StatePending}, func(t *Task) {
			t.Reason = fmt.Sprintf("fanning out: %d %s", t.Group.Pieces, t.Group.Kind)
		}))
		if err != nil {
			return err
		}
	}
	for r.ctx.Err() == nil {
		t, err := r.store.Get(t.ID)
		if err != nil {
			return err
		}
		if t.State.IsTerminal() {
			r.cancelChildren(t)
			return nil
		}
		done, err := r.stepGroup(t)
		if err != nil || done {
			return err
		}
		select {
		case <-r.ctx.Done():
		case <-ch:
		}
	}
	return nil
}

// watchChildren returns a channel signalled whenever a child of parent
// changes.
func (r *Requestor) watchChildren(parent string) (<-chan *Task, func()) {
	w := &watcher{ch: make(chan *Task, 1)}
	key := "parent:" + parent
	r.mu.Lock()
	if r.watchers[key] == nil {
		r.watchers[key] = map[*watcher]struct{}{}
	}
	r.watchers[key][w] = struct{}{}
	r.mu.Unlock()
	return w.ch, func() {
		r.mu.Lock()
		delete(r.watchers[key], w)
		if len(r.watchers[key]) == 0 {
			delete(r.watchers, key)
		}
		r.mu.Unlock()
	}
}

// stepGroup refreshes the children's states, verifies finished pieces,
// starts what is missing and settles the parent when it can. It reports
// whether the parent is settled.
func (r *Requestor) stepGroup(t *Task) (bool, error) {
	g := t.Group
	children := map[string]*Task{}
	for _, c := range g.Children {
		ct, err := r.store.Get(c.ID)
		if err != nil && r.createChild(t, c.ID, c.Piece, nil) == nil {
			// Listed before a crash, never created: created now.
			ct, err = r.store.Get(c.ID)
		}
		if err != nil {
			return false, fmt.Errorf("load child %s: %w", c.ID, err)
		}
		children[c.ID] = ct
	}
	// Verdicts for children that ended since the last step.
	verdicts := map[string]verdict{}
	for _, c := range g.Children {
		ct := children[c.ID]
		if c.Verdict != "" || !ct.State.IsTerminal() {
			continue
		}
		switch {
		case ct.State != StateCompleted:
			verdicts[c.ID] = verdict{VerdictFailed, ct.Reason}
		case g.Kind == GroupSubtasks:
			if err := r.verifyPiece(t, c.Piece, ct); err != nil {
				verdicts[c.ID] = verdict{VerdictRejected, err.Error()}
			} else {
				verdicts[c.ID] = verdict{kind: VerdictAccepted}
			}
		default:
			verdicts[c.ID] = verdict{kind: VerdictDone}
		}
	}
	t, err := r.update(t.ID, edit(nil, func(t *Task) {
		for i := range t.Group.Children {
			c := &t.Group.Children[i]
			ct := children[c.ID]
			c.State, c.Provider = ct.State, ct.Provider
			if ct.Result != nil {
				c.Outputs = ct.Result.Outputs
			}
			if v, ok := verdicts[c.ID]; ok {
				c.Verdict, c.Judged = v.text(), v.kind
			}
		}
	}))
	if err != nil {
		return false, err
	}
	switch g.Kind {
	case GroupRedundancy:
		return r.stepRedundancy(t, children)
	case GroupEach:
		return r.stepEach(t, children)
	}
	return r.stepSubtasks(t, children)
}

// current returns the latest child of each piece.
func current(g *Group) map[int]Child {
	out := map[int]Child{}
	for _, c := range g.Children {
		out[c.Piece] = c
	}
	return out
}

func (r *Requestor) stepRedundancy(t *Task, children map[string]*Task) (bool, error) {
	g := t.Group
	cur := current(g)
	// Start copies one at a time, each once its elder siblings hold a
	// provider, so that every copy excludes the others' providers.
	if len(cur) < g.Pieces {
		for _, c := range g.Children {
			if children[c.ID].Provider == "" && !children[c.ID].State.IsTerminal() {
				return false, nil // an elder copy is still in its auction
			}
		}
		var exclude []string
		for _, c := range g.Children {
			for _, e := range children[c.ID].Executions {
				exclude = append(exclude, e.Provider)
			}
		}
		return false, r.addChild(t, len(cur), exclude)
	}
	for _, c := range cur {
		if c.judged() == VerdictFailed {
			return true, r.settleGroup(t, children, StateFailed, fmt.Sprintf("copy %d %s", c.Piece, c.Verdict))
		}
		if c.judged() == "" {
			return false, nil
		}
	}
	// All copies completed: compare their results.
	keys := map[string][]string{}
	var lines []string
	for i := 0; i < g.Pieces; i++ {
		ct := children[cur[i].ID]
		k := resultKey(ct.Result)
		keys[k] = append(keys[k], ct.Provider)
		lines = append(lines, fmt.Sprintf("%s: outputs %q exit %d stdout sha256 %s", short(ct.Provider), ct.Result.Outputs, ct.Result.ExitCode, stdoutHash(ct.Result)[:12]))
	}
	if len(keys) == 1 {
		return true, r.settleGroup(t, children, StateCompleted, "")
	}
	return true, r.settleGroup(t, children, StateFailed, "unverified: the providers disagree: "+strings.Join(lines, "; "))
}

// stepEach starts one child per target at once, and settles the parent
// once every child ended: completed when all completed (each with its own
// result, listed in the parent's children), failed otherwise, saying
// which providers did not complete and why.
func (r *Requestor) stepEach(t *Task, children map[string]*Task) (bool, error) {
	g := t.Group
	cur := current(g)
	for piece := range g.Pieces {
		if _, ok := cur[piece]; !ok {
			if err := r.addChild(t, piece, nil); err != nil {
				return false, err
			}
		}
	}
	if len(cur) < g.Pieces {
		return false, nil // the new children are watched from the next step
	}
	var failed []string
	for piece := range g.Pieces {
		c := cur[piece]
		switch c.judged() {
		case "":
			return false, nil
		case VerdictFailed:
			failed = append(failed, fmt.Sprintf("%s: %s", short(g.Targets[piece]), c.Verdict))
		}
	}
	if len(failed) > 0 {
		return true, r.settleGroup(t, children, StateFailed,
			fmt.Sprintf("%d of %d providers completed; %s", g.Pieces-len(failed), g.Pieces, strings.Join(failed, "; ")))
	}
	return true, r.settleGroup(t, children, StateCompleted, "")
}

func (r *Requestor) stepSubtasks(t *Task, children map[string]*Task) (bool, error) {
	g := t.Group
	cur := current(g)
	for piece := 0; piece < g.Pieces; piece++ {
		c, ok := cur[piece]
		if !ok {
			if err := r.addChild(t, piece, nil); err != nil {
				return false, err
			}
			continue
		}
		switch {
		case c.judged() == VerdictFailed:
			why := fmt.Sprintf("piece %d %s", piece, c.Verdict)
			for _, o := range g.Children {
				if o.Piece == piece && o.judged() == VerdictRejected {
					why = fmt.Sprintf("piece %d was %s, and running it elsewhere %s", piece, o.Verdict, c.Verdict)
				}
			}
			return true, r.settleGroup(t, children, StateFailed, why)
		case c.judged() == VerdictRejected:
			var tried []string
			n := 0
			for _, o := range g.Children {
				if o.Piece == piece {
					n++
					tried = append(tried, o.Provider)
				}
			}
			if n > t.Spec.RetryBudget() {
				return true, r.settleGroup(t, children, StateFailed, fmt.Sprintf("piece %d %s (after %d runs)", piece, c.Verdict, n))
			}
			r.log.Info("piece rejected, running it elsewhere", "task", t.ID, "piece", piece, "verdict", c.Verdict)
			if err := r.addChild(t, piece, tried); err != nil {
				return false, err
			}
		}
	}
	t, err := r.store.Get(t.ID)
	if err != nil {
		return false, err
	}
	cur = current(t.Group)
	accepted := 0
	for _, c := range cur {
		if c.judged() == VerdictAccepted {
			accepted++
		}
	}
	if accepted == g.Pieces {
		return true, r.settleGroup(t, children, StateCompleted, "")
	}
	_, err = r.update(t.ID, edit(nil, func(t *Task) {
		t.Reason = fmt.Sprintf("%d of %d pieces accepted", accepted, g.Pieces)
	}))
	return false, err
}

// addChild persists a new child in the parent first, then creates and
// starts it; a restart finds the child listed before it exists and
// creates it then.
func (r *Requestor) addChild(t *Task, piece int, exclude []string) error {
	id := strings.ToLower(ulid.Make().String())
	if _, err := r.update(t.ID, edit(nil, func(t *Task) {
		t.Group.Children = append(t.Group.Children, Child{ID: id, Piece: piece, State: StatePending})
	})); err != nil {
		return err
	}
	return r.createChild(t, id, piece, exclude)
}

func (r *Requestor) createChild(t *Task, id string, piece int, exclude []string) error {
	now := time.Now().UTC()
	c := &Task{
		ID: id, State: StatePending, Spec: childSpec(t.Spec, t.Group, piece, exclude), Parent: t.ID, Piece: piece,
		CreatedAt: now, UpdatedAt: now, Reason: "waiting to be announced", Revision: 1,
	}
	if err := r.store.Create(id, c); err != nil {
		return fmt.Errorf("store child: %w", err)
	}
	r.notify(c)
	r.startDriver(id)
	return nil
}

// settleGroup ends the parent with the children's executions and, on
// success, an aggregate result.
func (r *Requestor) settleGroup(t *Task, children map[string]*Task, to State, reason string) error {
	// Children added since the caller loaded them (a piece started again)
	// are loaded now.
	for _, c := range t.Group.Children {
		if children[c.ID] == nil {
			if ct, err := r.store.Get(c.ID); err == nil {
				children[c.ID] = ct
			} else {
				children[c.ID] = &Task{ID: c.ID, State: c.State}
			}
		}
	}
	cur := current(t.Group)
	_, err := r.update(t.ID, move(to, nil, func(t *Task) {
		t.Reason = reason
		t.Executions = nil
		for _, c := range t.Group.Children {
			ct := children[c.ID]
			if ct == nil {
				continue // added after this step looked; it is canceled below
			}
			for _, e := range ct.Executions {
				if e.State == AttemptCompleted || e.State == AttemptFailed {
					t.Executions = append(t.Executions, e)
				}
			}
		}
		if to != StateCompleted {
			return
		}
		agg := &wire.Result{}
		var outs []string
		for piece := 0; piece < t.Group.Pieces; piece++ {
			ct := children[cur[piece].ID]
			if ct == nil || ct.Result == nil {
				continue
			}
			res := ct.Result
			if piece == 0 {
				*agg = *res
				agg.Cost, agg.Usage = 0, wire.Usage{}
				t.Provider = ct.Provider
				if t.Group.Kind != GroupRedundancy {
					agg.Stdout, agg.Outputs = "", ""
				}
			}
			agg.Cost += res.Cost
			agg.Usage.WallMS += res.Usage.WallMS
			agg.Usage.CPUMS += res.Usage.CPUMS
			agg.Usage.MaxRSSBytes = max(agg.Usage.MaxRSSBytes, res.Usage.MaxRSSBytes)
			if res.StartedAt.Before(agg.StartedAt) {
				agg.StartedAt = res.StartedAt
			}
			if res.FinishedAt.After(agg.FinishedAt) {
				agg.FinishedAt = res.FinishedAt
			}
			if t.Group.Kind != GroupRedundancy {
				agg.Stdout += res.Stdout
				outs = append(outs, res.Outputs)
			}
		}
		agg.Receipt = nil
		t.Result = agg
	}))
	if err == nil {
		r.cancelChildren(t)
	}
	return err
}

// cancelChildren cancels the children still running (a settled or
// canceled parent needs none of them).
func (r *Requestor) cancelChildren(t *Task) {
	if t.Group == nil {
		return
	}
	for _, c := range t.Group.Children {
		ct, err := r.store.Get(c.ID)
		if err != nil || ct.State.IsTerminal() {
			continue
		}
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		if _, err := r.Cancel(ctx, c.ID); err != nil && !errors.Is(err, ErrInvalidTransition) {
			r.log.Warn("cancel child", "task", c.ID, "err", err)
		}
		cancel()
	}
}

func resultKey(res *wire.Result) string {
	if res == nil {
		return "none"
	}
	if res.Outputs != "" {
		return fmt.Sprintf("%d/%s", res.ExitCode, res.Outputs)
	}
	return fmt.Sprintf("%d/stdout:%s", res.ExitCode, stdoutHash(res))
}

func stdoutHash(res *wire.Result) string {
	sum := sha256.Sum256([]byte(res.Stdout))
	return hex.EncodeToString(sum[:])
}

// verifyPiece accepts or rejects a finished piece: the Go callback when one
// is registered, else the spec's verify step, else it accepts.
func (r *Requestor) verifyPiece(parent *Task, piece int, child *Task) error {
	r.mu.Lock()
	fn := r.verifyFns[parent.ID]
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Minute)
	defer cancel()
	if fn != nil {
		return fn(ctx, piece, child)
	}
	v := parent.Spec.Verify
	if v == nil {
		return nil
	}
	if r.cfg.VerifyRunner == nil {
		return errors.New("this node has no executor to run verify steps")
	}
	if r.cfg.WorkDir != "" {
		if err := os.MkdirAll(r.cfg.WorkDir, 0o700); err != nil {
			return fmt.Errorf("verify work dir: %w", err)
		}
	}
	dir, err := os.MkdirTemp(r.cfg.WorkDir, "verify-")
	if err != nil {
		return fmt.Errorf("verify work dir: %w", err)
	}
	defer os.RemoveAll(dir)
	provider, _ := peer.Decode(child.Provider)
	spec := executor.Spec{
		TaskID: child.ID + "-verify", Image: v.Image, Cmd: v.Cmd,
		Timeout: time.Duration(v.TimeoutMS) * time.Millisecond,
		Env: map[string]string{
			"OFFLOAD_PIECE": fmt.Sprint(piece), "OFFLOAD_PIECE_STDOUT": child.Result.Stdout,
			"OFFLOAD_PIECE_EXIT": fmt.Sprint(child.Result.ExitCode),
		},
	}
	if child.Result.Outputs != "" && r.cfg.Content != nil {
		dst := filepath.Join(dir, "piece")
		if err := r.cfg.Content.GetTo(ctx, child.Result.Outputs, dst, provider, 0); err != nil {
			return fmt.Errorf("fetch piece outputs: %w", err)
		}
		spec.Mounts = append(spec.Mounts, executor.Mount{Source: dst, Target: "/inputs/piece", ReadOnly: true})
	}
	runtime := v.Runtime
	if runtime == "" {
		runtime = "docker"
	}
	if runtime == "wasm" {
		if r.cfg.Content == nil {
			return errors.New("no content store for the verify module")
		}
		mod := filepath.Join(dir, "verify.wasm")
		if err := r.cfg.Content.GetTo(ctx, v.Image, mod, "", 0); err != nil {
			return fmt.Errorf("fetch verify module: %w", err)
		}
		spec.Image = mod
	}
	res, err := r.cfg.VerifyRunner(ctx, runtime, spec)
	if err != nil {
		return fmt.Errorf("verify step: %w", err)
	}
	if res.ExitCode != 0 {
		why := strings.TrimSpace(string(res.Stderr))
		if why == "" {
			why = strings.TrimSpace(string(res.Stdout))
		}
		return fmt.Errorf("verify exited %d: %s", res.ExitCode, why)
	}
	return nil
}
