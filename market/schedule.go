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
