package docker

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOOMKilledFromCgroup: the kernel's count of OOM kills in the run's
// cgroup tells an OOM kill even when the engine's flag is missing, on
// cgroup v1 and v2; no count, or zero, is not one.
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
	for _, tc := range []struct {
		mode cgroupMode
		cg   string
		want bool
	}{
		{cgroupV1, "run-a", true}, {cgroupV1, "run-b", false}, {cgroupV1, "missing", false},
		{cgroupV2, "run-c", true}, {cgroupV2, "run-d", false}, {cgroupV2, "missing", false},
		{cgroupNone, "run-a", false},
	} {
		if got := e.oomKilled(tc.mode, tc.cg); got != tc.want {
			t.Errorf("mode %v %s: %v, want %v", tc.mode, tc.cg, got, tc.want)
		}
	}
}
