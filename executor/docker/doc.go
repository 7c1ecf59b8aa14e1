// Package docker implements executor.Executor on the Docker Engine API
// (github.com/moby/moby/client; never the docker CLI).
//
// # Sandbox
//
// Every container is created with: no network (NetworkMode "none"), a
// read-only root filesystem, all capabilities dropped, no-new-privileges, a
// pids limit, a memory limit with swap equal to it (so no swap), a CPU quota
// (NanoCPUs), a tmpfs at /tmp bounded by the memory limit, Spec.OutputsDir
// bind-mounted writable at /outputs (opened to the task's uid) and
// Spec.Mounts as bind mounts (read-only when asked). A task never runs as
// root: it runs as the image's USER when that is a numeric, non-zero uid
// (and gid), else as UnprivilegedUser (65534:65534); a user name is not
// trusted, since the image's /etc/passwd is the requestor's. Spec.Isolation
// "gvisor" (or WithRequireGVisor) runs the container under gVisor's runsc,
// registered with the engine as DefaultGVisorRuntime. The log driver is
// "none": output is streamed over an attach connection into
// executor.TailBuffers, so nothing piles up on the engine's disk. Every
// container carries the labels offload.managed=true and offload.task=TASKID,
// so FindRunning and RemoveTask can find it after a restart. Images are
// never pulled: a missing image fails at once with executor.ErrImageNotFound.
//
// # Images from requestors
//
// LoadImage checks a `docker save` tarball before the engine sees it (one
// image, clean relative entry names, links that stay inside, files,
// directories and links only, a size bound, config and layers present) and
// loads it with every name removed (manifest RepoTags, the repositories
// file, OCI ref annotations), so the load adds or moves no tag; the image
// runs by its ID, which must be the config digest the manifest names.
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
// true (no NAT, no route to other interfaces), so it has an address that
// this host reaches (tunnels) and that the other services of the same
// network reach by alias, and nothing beyond. The bridge would still answer
// for the host itself (its gateway address, and through it every address
// of the host), so before the network exists the executor inserts iptables
// INPUT rules for its bridge interface (named from the network, see
// firewall.go): packets from the bridge to the host are dropped unless they
// answer a connection the host opened. They are removed with the network.
// Without iptables (or root) no service starts (ErrNoFirewall). Exec uses
// ExecCreate, ExecAttach and ExecInspect.
//
// # Builds
//
// Builder (build.go) runs each RUN step of a Dockerfile in this sandbox
// with a writable root filesystem. The other exception to "no network":
// an operator may let RUN steps join a Docker network of theirs
// (WithBuildNetwork, e.g. "bridge"); they then reach whatever that network
// reaches, and no host firewall rule is added for them. COPY and ADD
// containers never have a network.
package docker
