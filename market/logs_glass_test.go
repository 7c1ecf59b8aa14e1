package market

import (
	"fmt"
	"testing"
	"time"
)

// TestLogBookPrune: the book keeps at most maxEndedLogs ended logs, the
// latest ones; a running log is never pruned, nor a later run's log under
// the key of one pruned; ended logs older than runLogKeep go.
func TestLogBookPrune(t *testing.T) {
	var b logBook
	running := b.open("running")
	for i := range maxEndedLogs + 36 {
		k := fmt.Sprint("run", i)
		b.close(k, b.open(k))
	}
	again := b.open("run0") // a later run under a key already pruned
	b.close("run1", b.open("run1"))
	b.mu.Lock()
	n, gotRunning, gotAgain := len(b.runs), b.runs["running"] == running, b.runs["run0"] == again
	_, last := b.runs[fmt.Sprint("run", maxEndedLogs+35)]
	b.mu.Unlock()
	if n != maxEndedLogs+2 || !gotRunning || !gotAgain || !last {
		t.Fatalf("%d logs (want %d), running kept %v, later run kept %v, latest kept %v", n, maxEndedLogs+2, gotRunning, gotAgain, last)
	}
	b.mu.Lock()
	for i := range b.ended {
		b.ended[i].at = time.Now().Add(-2 * runLogKeep)
	}
	b.pruneLocked()
	n, gotRunning, gotAgain = len(b.runs), b.runs["running"] == running, b.runs["run0"] == again
	b.mu.Unlock()
	if n != 2 || !gotRunning || !gotAgain {
		t.Fatalf("after runLogKeep: %d logs, running kept %v, later run kept %v", n, gotRunning, gotAgain)
	}
}
