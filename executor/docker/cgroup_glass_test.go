package docker

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOOMKilledFromCgroup: the run's parent cgroup tells an OOM kill even
// when the engine's flag is missing. On cgroup v2 its oom_kill count does
// (hierarchical); on v1 that count stays 0 (the kill is counted in the
// container's own memcg, gone after the run), so a SIGKILL with the peak at
// the limit does. No count, a zero count, another exit code, or a peak well
// under the limit is not an OOM kill.
func TestOOMKilledFromCgroup(t *testing.T) {
	write := func(p, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	e := &Executor{cfg: config{cgroupRoot: root}}
	write(filepath.Join(root, "memory", "run-a", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
	write(filepath.Join(root, "memory", "run-b", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
	write(filepath.Join(root, "run-c", "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	write(filepath.Join(root, "run-d", "memory.events"), "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
	const limit = 32 << 20
	for _, tc := range []struct {
		mode       cgroupMode
		cg         string
		exit, peak int64
		want       bool
	}{
		{cgroupV1, "run-a", 1, 0, true},
		{cgroupV1, "run-b", 1, limit, false},
		{cgroupV1, "missing", 1, 0, false},
		// What the kernel leaves on v1 after a real OOM kill (measured:
		// the parent's peak was 256 KiB over the child's limit).
		{cgroupV1, "run-b", 137, limit + 256<<10, true},
		{cgroupV1, "run-b", 137, limit - 1<<20, true},
		{cgroupV1, "run-b", 137, limit - 8<<20, false},
		{cgroupV1, "run-b", 1, limit + 256<<10, false},
		{cgroupV2, "run-c", 1, 0, true},
		{cgroupV2, "run-d", 137, limit, false},
		{cgroupV2, "missing", 137, limit, false},
		{cgroupNone, "run-a", 137, limit, false},
	} {
		if got := e.oomKilled(tc.mode, tc.cg, tc.exit, tc.peak, limit); got != tc.want {
			t.Errorf("mode %v %s exit %d peak %d: %v, want %v", tc.mode, tc.cg, tc.exit, tc.peak, got, tc.want)
		}
	}
}
