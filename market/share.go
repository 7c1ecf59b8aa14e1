package market

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

// Content is private by default: a node's content store serves a block
// only to the peers it is shared with (or to anyone once published). The
// requestor shares what a task reads (its image, inputs and volumes) with
// the provider it awards, from just before the award until that attempt
// ends (declined, failed over, or the task is terminal); the provider
// shares what a task wrote (outputs, volumes) with the task's requestor
// until it releases their pins (Provider.shareOutputs).

// specRoots lists the content a provider fetches for spec.
func specRoots(spec wire.TaskSpec) []string {
	var roots []string
	if spec.ImageIsCID() {
		roots = append(roots, spec.Image)
	}
	for _, in := range spec.Inputs {
		roots = append(roots, in.CID)
	}
	for _, st := range spec.Subtasks {
		for _, in := range st.Inputs {
			roots = append(roots, in.CID)
		}
	}
	for _, v := range spec.Volumes {
		if v.CID != "" {
			roots = append(roots, v.CID)
		}
	}
	if spec.Checkpoint != nil && spec.Checkpoint.From != "" {
		roots = append(roots, spec.Checkpoint.From)
	}
	return roots
}

// share lets provider fetch t's content from this node; sharing a task
// with the same provider again is a no-op.
func (r *Requestor) share(t *Task, provider string) {
	if r.cfg.Content == nil {
		return
	}
	roots := specRoots(awardSpec(t))
	pid, err := peer.Decode(provider)
	if len(roots) == 0 || err != nil {
		return
	}
	r.mu.Lock()
	if r.shares[t.ID][provider] != nil {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	release := r.cfg.Content.Share(pid, roots...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shares[t.ID] == nil {
		r.shares[t.ID] = map[string]func(){}
	}
	if r.shares[t.ID][provider] != nil {
		release() // shared in between by another caller
		return
	}
	r.shares[t.ID][provider] = release
}

// unshareEnded ends the shares of t's attempts that ended: every one when
// t is terminal, else those of providers whose latest attempt was declined
// or failed over. It runs after every write of a task.
func (r *Requestor) unshareEnded(t *Task) {
	r.mu.Lock()
	byProvider := r.shares[t.ID]
	if len(byProvider) == 0 {
		r.mu.Unlock()
		return
	}
	var ended []func()
	for provider, release := range byProvider {
		if t.State.IsTerminal() || !attemptLive(t, provider) {
			ended = append(ended, release)
			delete(byProvider, provider)
		}
	}
	if len(byProvider) == 0 {
		delete(r.shares, t.ID)
	}
	r.mu.Unlock()
	for _, release := range ended {
		release()
	}
}

// attemptLive reports whether provider's latest attempt at t may still
// fetch its content (awarded, running, or completed while the task
// verifies).
func attemptLive(t *Task, provider string) bool {
	for i := len(t.Executions) - 1; i >= 0; i-- {
		if e := t.Executions[i]; e.Provider == provider {
			return e.State != AttemptDeclined && e.State != AttemptFailed
		}
	}
	return false
}
