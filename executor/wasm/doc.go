// Package wasm implements executor.Executor on wazero (WASI preview 1).
//
// Spec.Image is the host path of a .wasm module. Arguments are argv[0] =
// "task" followed by Spec.Cmd (Spec.Entrypoint is not used); Spec.Env
// becomes the environment (plus PWD=Spec.WorkDir when set, which is how
// Go's wasip1 port learns its working directory). The guest sees only what
// is mounted: Spec.Mounts (directories; read-only when asked),
// Spec.OutputsDir writable at /outputs and a fresh writable host temp dir at
// /tmp, removed after the run. There are no sockets: WASI preview 1 has none
// unless the host adds them, and this executor does not.
//
// # Compilation cache
//
// One wazero runtime is shared by all runs. Compiled modules are kept per
// content hash (sha256); a module file is re-hashed only when its size or
// modification time changes, so a warm start costs a stat and a map lookup
// before instantiation. WithCacheDir also persists machine code across
// processes through wazero's compilation cache. Compiled modules are never
// evicted while the Executor lives; Close releases them.
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
