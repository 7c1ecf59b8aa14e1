package testwait_test

import (
	"context"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/testwait"
)

func TestUntil(t *testing.T) {
	n := 0
	if !testwait.Until(t.Context(), time.Second, time.Millisecond, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("Until returned before the condition held, or after: %d calls", n)
	}
	start := time.Now()
	if testwait.Until(t.Context(), 30*time.Millisecond, 5*time.Millisecond, func() bool { return false }) {
		t.Error("Until reported a condition that never held")
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 5*time.Second {
		t.Errorf("Until gave up after %s, want 30ms", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if testwait.Until(ctx, time.Hour, time.Millisecond, func() bool { return false }) {
		t.Error("Until reported a condition that never held, with its context ended")
	}
	// The last try at the deadline counts.
	calls := 0
	if !testwait.Until(t.Context(), 10*time.Millisecond, time.Hour, func() bool { calls++; return calls == 2 }) {
		t.Error("Until ignored the try at the deadline")
	}
}
