// Package docker implements executor.Executor on the Docker Engine API
// (github.com/moby/moby/client; never the docker CLI).
//
// # Sandbox
//
// Every container is created with: no network (NetworkMode "none"), a
// read-only root filesystem, all capabilities dropped, no-new-privileges, a
// pids limit, a memory limit with swap equal to it (so no swap), a CPU quota
// (NanoCPUs), a tmpfs at /tmp bounded by the memory limit, Spec.OutputsDir
// bind-mounted writable at /outputs and Spec.Mounts as bind mounts (read-only
// when asked). The log driver is "none": output is streamed over an attach
// connection into executor.TailBuffers, so nothing piles up on the engine's
// disk. Every container carries the labels offload.managed=true and
// offload.task=TASKID, so FindRunning and RemoveTask can find it after a
// restart. Images are never pulled: a missing image fails at once with
// executor.ErrImageNotFound.
//
// # Lifecycle of Run
//
// ImageInspect, ContainerCreate, ContainerAttach, ContainerStart,
// ContainerWait (condition not-running), ContainerInspect only when the exit
// code is non-zero (to tell an OOM kill from an ordinary failure), then
// ContainerRemove (force) with a detached, bounded context. There are no
// sleeps or polling loops on this path. Spec.Timeout and ctx cancellation
// kill the container (SIGKILL) and Run returns the partial Result.
//
// # Usage accounting
//
// Wall time is measured around start and wait. CPU time and peak memory come
// from the kernel's cgroup accounting. The cgroup of a container disappears
// as soon as it exits, before a one-shot ContainerStats could read it (stats
// of a stopped container are zero), so each run gets its own parent cgroup
// (HostConfig.CgroupParent = /offload/run-ID). Cgroup counters are
// hierarchical and outlive the child, so after the exit the parent still
// holds the container's totals:
//
//   - cgroup v1: cpuacct/offload/run-ID/cpuacct.usage (ns) and
//     memory/offload/run-ID/memory.max_usage_in_bytes (includes page cache,
//     e.g. files written to /tmp or /outputs);
//   - cgroup v2: offload/run-ID/cpu.stat usage_usec and memory.peak.
//
// The parent directories are removed after the container. This works when
// the engine uses the cgroupfs cgroup driver and its cgroup filesystem is
// visible to this process at WithCgroupRoot (default /sys/fs/cgroup), which
// is what the development machine has (Docker 20.10, API 1.41, cgroup v1,
// cgroupfs driver). With the systemd driver or a remote engine, CPUMS and
// MaxRSSBytes stay 0 (logged once at debug level).
//
// # Services
//
// StartService (executor.Service, service.go) is the one exception to "no
// network": the container joins a bridge network created with Internal:
// true (engine 20.10 supports it: no NAT, no route to other interfaces), so
// it has an address that this host reaches (tunnels) and that the other
// services of the same network reach by alias, and nothing beyond. Exec
// uses ExecCreate, ExecAttach and ExecInspect. The host itself (the bridge
// gateway) stays reachable from the container, as with any bridge network:
// a provider should not listen beyond loopback on anything unauthenticated.
package docker
