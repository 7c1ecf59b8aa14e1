// Package testwait lets tests wait for a condition instead of sleeping for
// a guessed time: a condition is polled at a short interval until it holds,
// a deadline passes, or the context ends. Tests with an event or a channel
// to wait on should select on that instead.
package testwait

import (
	"context"
	"testing"
	"time"
)

// Until calls cond every interval until it returns true, and reports true;
// it reports false once d has passed (cond is tried one last time then) or
// ctx has ended.
func Until(ctx context.Context, d, every time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}

// For is Until with the test's context that fails tb when cond does not
// hold within d: "timed out after d waiting for what".
func For(tb testing.TB, d, every time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Until(tb.Context(), d, every, cond) {
		tb.Fatalf("timed out after %s waiting for %s", d, what)
	}
}
