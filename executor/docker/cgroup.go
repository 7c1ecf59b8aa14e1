package docker

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/client"
)

// cgroupMode says how usage is read after a run.
type cgroupMode int

const (
	cgroupNone cgroupMode = iota // no accounting
	cgroupV1                     // cgroup v1, cgroupfs driver
	cgroupV2                     // cgroup v2, cgroupfs driver
)

// accountingMode detects once (per successful Info) whether per-run parent
// cgroups can be read back.
func (e *Executor) accountingMode(ctx context.Context) cgroupMode {
	if e.cfg.noAccounting {
		return cgroupNone
	}
	e.cgMu.Lock()
	defer e.cgMu.Unlock()
	if e.cgChecked {
		return e.cgMode
	}
	info, err := e.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		// Try again next run; the engine may just be starting.
		return cgroupNone
	}
	e.cgChecked = true
	root := e.cfg.cgroupRoot
	switch {
	case info.Info.CgroupDriver != "cgroupfs":
		e.log.Debug("no cpu/memory accounting: engine cgroup driver is not cgroupfs", "driver", info.Info.CgroupDriver)
	case info.Info.CgroupVersion == "2" && exists(filepath.Join(root, "cgroup.controllers")):
		e.cgMode = cgroupV2
	case info.Info.CgroupVersion != "2" && exists(filepath.Join(root, "cpuacct")) && exists(filepath.Join(root, "memory")):
		e.cgMode = cgroupV1
	default:
		e.log.Debug("no cpu/memory accounting: engine cgroup filesystem not visible", "root", root, "version", info.Info.CgroupVersion)
	}
	return e.cgMode
}

// newRunCgroup names a fresh parent cgroup for one run, as passed to
// HostConfig.CgroupParent.
func (e *Executor) newRunCgroup() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "/" + path.Join(e.cfg.cgroupParent, "run-"+hex.EncodeToString(b[:]))
}

// readUsage reads CPU time (ms) and peak memory (bytes) of the run cgroup.
func (e *Executor) readUsage(mode cgroupMode, cg string) (cpuMS, peak int64, err error) {
	root := e.cfg.cgroupRoot
	switch mode {
	case cgroupV1:
		ns, err1 := readInt(filepath.Join(root, "cpuacct", cg, "cpuacct.usage"))
		peak, err2 := readInt(filepath.Join(root, "memory", cg, "memory.max_usage_in_bytes"))
		return ns / 1e6, peak, errors.Join(err1, err2)
	case cgroupV2:
		usec, err1 := readKey(filepath.Join(root, cg, "cpu.stat"), "usage_usec")
		peak, err2 := readInt(filepath.Join(root, cg, "memory.peak"))
		return usec / 1e3, peak, errors.Join(err1, err2)
	}
	return 0, 0, nil
}

// oomKilled reports whether the kernel killed a process of the run at its
// memory limit. The engine's own OOMKilled flag is sometimes missing when
// the machine is loaded, so the run's parent cgroup is asked as well:
//
//   - cgroup v2: memory.events oom_kill of the parent counts kills in the
//     container's cgroup below it (the events are hierarchical).
//   - cgroup v1: the kernel counts a kill only in the container's own
//     memcg, which runc has removed by the time the run is waited for; the
//     parent's oom_kill stays 0. What survives is the parent's peak usage
//     (hierarchical), so a run killed by SIGKILL (exit 137) whose peak came
//     within oomMargin of its limit is taken as an OOM kill. Only the kernel
//     and the task itself can send that signal (a stop by offload is told
//     apart before this is asked).
func (e *Executor) oomKilled(mode cgroupMode, cg string, exitCode, peak, limit int64) bool {
	root := e.cfg.cgroupRoot
	switch mode {
	case cgroupV1:
		n, err := readKey(filepath.Join(root, "memory", cg, "memory.oom_control"), "oom_kill")
		if err == nil && n > 0 {
			return true
		}
		return exitCode == 137 && limit > 0 && peak >= limit-oomMargin(limit)
	case cgroupV2:
		n, err := readKey(filepath.Join(root, cg, "memory.events"), "oom_kill")
		return err == nil && n > 0
	}
	return false
}

// oomMargin is how far below its limit a cgroup v1 run's peak may stay and
// still count as having reached it: the kernel kills when a charge cannot
// be met, which is at most a huge page (2 MiB) short of the limit; a
// sixteenth of small limits keeps the margin from swallowing them.
func oomMargin(limit int64) int64 {
	return min(limit/16, 2<<20)
}

// removeRunCgroup removes the run's parent cgroup directories (the
// container's own cgroup below them is gone once it has been removed).
func (e *Executor) removeRunCgroup(mode cgroupMode, cg string) {
	root := e.cfg.cgroupRoot
	var dirs []string
	switch mode {
	case cgroupV1:
		ents, err := os.ReadDir(root)
		if err != nil {
			return
		}
		for _, ent := range ents {
			dirs = append(dirs, filepath.Join(root, ent.Name(), cg))
		}
	case cgroupV2:
		dirs = []string{filepath.Join(root, cg)}
	}
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			e.log.Debug("remove run cgroup", "dir", d, "err", err)
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func readKey(p, key string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New(p + ": no " + key)
}
