package market

import (
	"time"
)

// Scheduled tasks: a spec with NotBefore (unix ms) stays pending, with the
// reason "scheduled for TIME", until then; the wait is driven from the
// stored task, so it survives a restart of the requestor. Its queue
// timeout (DefaultQueueTimeout) counts from its start time, not from its
// submission.

// startTime returns when a task may first be announced (zero: at once).
func startTime(t *Task) time.Time {
	if t.Spec.NotBefore <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(t.Spec.NotBefore).UTC()
}

// queuedSince is when a task began waiting for a provider.
func queuedSince(t *Task) time.Time {
	if at := startTime(t); at.After(t.CreatedAt) {
		return at
	}
	return t.CreatedAt
}

// beforeAuction holds a task until its start time, then resolves its
// volumes. It returns the task as it stands; when the task was settled
// meanwhile (canceled) or the requestor is closing, the caller's loop sees
// that.
func (r *Requestor) beforeAuction(t *Task) (*Task, error) {
	if at := startTime(t); t.Attempt == 0 && time.Until(at) > 0 {
		reason := "scheduled for " + at.Format(time.RFC3339)
		if t.Reason != reason {
			var err error
			if t, err = r.update(t.ID, transition("", []State{StatePending}, func(t *Task) { t.Reason = reason })); err != nil {
				return t, err
			}
		}
		ch, stop, err := r.Watch(t.ID)
		if err != nil {
			return t, err
		}
		timer := time.NewTimer(time.Until(at))
		defer timer.Stop()
	wait:
		for {
			select {
			case <-r.ctx.Done():
				stop()
				return t, nil
			case cur := <-ch:
				if cur.State.IsTerminal() {
					stop()
					return cur, ErrInvalidTransition
				}
			case <-timer.C:
				break wait
			}
		}
		stop()
		if t, err = r.Get(t.ID); err != nil {
			return t, err
		}
		r.log.Info("scheduled task due", "task", t.ID)
	}
	return r.resolveVolumes(t)
}
