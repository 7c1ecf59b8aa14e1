// Package wasm implements executor.Executor on wazero (WASI preview 1).
//
// Spec.Image is the host path of a .wasm module. Arguments are argv[0] =
// "task" followed by Spec.Cmd (Spec.Entrypoint is not used); Spec.Env
// becomes the environment (plus PWD=Spec.WorkDir when set, which is how
// Go's wasip1 port learns its working directory). The guest sees only what
// is mounted: Spec.Mounts (directories; read-only when asked),
// Spec.OutputsDir writable at /outputs and a fresh writable host temp dir at
// /tmp, made when the guest first uses /tmp and removed after the run. There is no "/" of its own: a path outside
// every mount (such as "/" or "/tmp/..", which the guest's libc cleans to
// "/") names nothing. There are no sockets: WASI preview 1 has none unless
// the host adds them, and this executor does not.
//
// # Mounts cannot be left
//
// Each mount is a file system of this package (wazero's experimental
// sys.FS) over Go's os.Root for the mount's host directory; wazero's own
// directory mounts, which follow host symbolic links anywhere, are not used.
// os.Root resolves every path one component at a time with openat and
// O_NOFOLLOW, follows a symbolic link only when where it leads is still
// beneath the directory, and refuses otherwise; so does every operation
// (open, stat, mkdir, unlink, rename, link, symlink, readlink, utimens), and
// ".." never climbs above the mount, whether written in a path or reached
// through a directory descriptor or a link (for example a link to "." followed
// by "..").
// What the guest gets:
//
//   - A path or link that would leave its mount: EPERM. Links that stay
//     inside are followed as usual.
//   - Creating a symbolic link whose target is absolute or climbs above the
//     mount when read as text: EPERM (links that stay inside are made), so
//     that such links do not end up in directories, like /outputs, that host
//     code reads afterwards.
//   - O_NOFOLLOW (no LOOKUP_SYMLINK_FOLLOW) on a link: ELOOP.
//   - A rename or hard link between two mounts: EXDEV (wazero refuses it
//     with ENOSYS; the executor corrects the errno).
//   - A read-only mount: EROFS for anything that would change it (opening
//     for writing, creating, truncating, appending, mkdir, unlink, rmdir,
//     rename, link, symlink, chmod, setting times).
//   - Permission bits only: setuid, setgid and sticky bits are dropped on
//     create, mkdir and chmod (WASI preview 1 has no chmod; the file system's
//     Chmod is there for completeness).
//   - Setting times through a descriptor (fd_filestat_set_times): ENOSYS;
//     by path it works.
//
// Reading, seeking and listing an open file go through wazero's adapter of
// an fs.File (experimental/sysfs.AdaptFS) around the *os.File opened through
// the Root; rewinding a directory reopens it by name through the same Root.
// Nothing is copied when mounting: a mount costs one open of its directory.
//
// # Disk quota
//
// All the writable mounts of one run share one byte quota (WithDiskQuota,
// default DefaultDiskQuota, 1 GiB). It counts what the run adds: the growth
// of files by write, pwrite (a write past the end counts the hole) and
// truncate or fd_allocate, and 512 bytes for each name created (file,
// directory, symbolic or hard link), so that empty files cannot exhaust the
// host's inodes. Truncating gives bytes back, and so does removing or
// renaming over a file's last name; a file the run still holds open gives its
// bytes back when it is closed, since the host frees them only then. The
// count never goes below zero: deleting what was there before the run buys no
// room. A request that would go past the quota writes nothing and fails with
// ENOSPC, so the host directories never hold more than the quota beyond what
// they held before. When that happened the result's Stderr ends with
// "offload: disk quota of N bytes reached (ENOSPC)", and if the guest then
// exited non-zero (or trapped) Run returns the result with an error wrapping
// ErrDiskQuota. (wazero's errno type has no ENOSPC: the quota is reported as
// EIO inside, and the executor's wrappers around the writing WASI functions
// turn it into ENOSPC for the guest.)
//
// # Compilation cache
//
// Each distinct module is compiled once, in a wazero runtime of its own
// (with WASI instantiated), and kept per content hash (sha256); a module
// file is re-hashed only when its size or modification time changes, so a
// warm start costs a stat and a map lookup before instantiation. At most
// WithMaxCompiled modules are kept in memory beyond those runs are using;
// the least recently used are closed.
//
// WithCacheDir also persists machine code across processes: the module's
// runtime gets wazero's file cache in a directory of its own, DIR/HASH
// (wazero lays out DIR/HASH/wazero-VERSION-ARCH-OS/KEY, one file per
// compiled module, written to a temporary file and renamed), so that every
// byte wazero writes for a module is known to be that module's. The
// directory is bounded by WithCacheBytes: after each compile, and at New
// for what earlier processes left, the executor reads the directory (other
// processes may share it) and removes the least recently used entries that
// none of its runs uses until the rest fits; an entry larger than the whole
// budget is removed once compiled. Uses are recorded in the entry
// directory's modification time (at most once a minute per entry), so the
// order outlives the process. Removing an entry never breaks a run: wazero
// reads an entry only while compiling, into memory. Should a compile
// through the cache fail (a damaged file, or an entry another process
// removed while wazero wrote it), the entry is removed and the module
// compiled once more without it. The single directory in which earlier
// versions kept every module's code (DIR/wazero-VERSION-ARCH-OS) is
// removed; other files under DIR are left alone and not counted.
//
// # Limits and accounting
//
// Spec.Timeout and ctx cancellation close the module through wazero's
// WithCloseOnContextDone; sleeps in the guest (poll_oneoff) also wake on
// cancellation. The runtime's WithMemoryLimitPages is a hard ceiling for all
// runs (WithMaxMemory); the per-run cap Limits.MemoryBytes is enforced by a
// memory allocator handed to the instance (wazero experimental API), which
// refuses to grow past the cap and records that it did, so an out-of-memory
// exit is reported as executor.ErrOutOfMemory rather than guessed from the
// exit code. Limits.CPUs, PIDs and GPUs do not apply to a single-threaded
// WASI module and are ignored.
//
// Usage: WallMS is wall time of the instantiation and _start. CPUMS is the
// CPU time of the OS thread the guest ran on (the run locks its goroutine to
// one thread and reads CLOCK_THREAD_CPUTIME_ID before and after; Linux only,
// 0 elsewhere); it includes host functions (WASI calls) but not work the Go
// runtime does on other threads, such as garbage collection. MaxRSSBytes is
// the peak size of the module's linear memory, not the host process's RSS.
package wasm
