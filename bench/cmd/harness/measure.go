package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/offload-project/offload/bench/cluster"
	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
)

// imageTag is the scratch image of the docker benchmark.
const imageTag = testimage.DefaultTag

// bench holds the swarm shared by the measurements: boot (the first node, a
// provider with docker and wasm) and req (a requestor bootstrapped to it).
type bench struct {
	cl  *cluster.Cluster
	dir string
	sz  sizes
	log io.Writer
	// prof, when its dir is set, profiles the nodes during tasks_per_second.
	prof profiling

	boot, req   *cluster.Node
	bootAddr    string
	reqAddr     string
	wasmCID     string
	providers   []*cluster.Node // every provider started so far
	nextNodeIdx int
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "   "+format+"\n", args...)
}

func (b *bench) name(prefix string) string {
	b.nextNodeIdx++
	return fmt.Sprintf("%s%02d", prefix, b.nextNodeIdx)
}

// setup starts the first provider and the requestor.
func (b *bench) setup(ctx context.Context) error {
	executors := "wasm"
	if _, err := dockerCLI(ctx); err == nil {
		executors = "docker,wasm"
	}
	var err error
	if b.boot, err = b.cl.Start(ctx, b.name("prov"), "--provider", "--executors", executors, "--allow-image", imageTag); err != nil {
		return err
	}
	b.providers = append(b.providers, b.boot)
	id, err := b.boot.Identity(ctx)
	if err != nil {
		return err
	}
	b.bootAddr = id.Addrs[0]
	if b.req, err = b.cl.Start(ctx, b.name("req"), "--bootstrap", b.bootAddr); err != nil {
		return err
	}
	rid, err := b.req.Identity(ctx)
	if err != nil {
		return err
	}
	b.reqAddr = rid.Addrs[0]
	return b.waitPool(ctx, b.req, len(b.providers), time.Minute)
}

// waitPool waits until n's pool lists at least want providers.
func (b *bench) waitPool(ctx context.Context, n *cluster.Node, want int, limit time.Duration) error {
	c, err := n.Client()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	for {
		ps, err := c.Pool(ctx, client.PoolFilter{})
		if err == nil && len(ps) >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s sees %d providers after %s, want %d (err %v)", n.Name, len(ps), limit, want, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// timeCLI runs one offload CLI command against home and returns its wall time.
func (b *bench) timeCLI(ctx context.Context, home string, args ...string) (time.Duration, []byte, error) {
	t0 := time.Now()
	out, err := b.cl.CLI(ctx, home, args...)
	return time.Since(t0), out, err
}

// checkTask decodes `run --wait --json` output and requires a completed
// task that printed hi.
func checkTask(out []byte) error {
	var t client.Task
	if err := json.Unmarshal(out, &t); err != nil {
		return fmt.Errorf("run --json output: %w: %s", err, out)
	}
	if t.State != "completed" || t.Stdout != "hi\n" {
		return fmt.Errorf("task %s %s: stdout %q error %q", t.ID, t.State, t.Stdout, t.Error)
	}
	return nil
}

func (b *bench) dockerRatio(ctx context.Context, r *results) error {
	docker, err := dockerCLI(ctx)
	if err != nil {
		r.set("e2e_docker_ratio", -1, err.Error())
		b.logf("skipped: %v", err)
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err = testimage.Build(bctx, imageTag)
	cancel()
	if err != nil {
		return fmt.Errorf("build test image: %w", err)
	}
	runOffload := func() (time.Duration, error) {
		d, out, err := b.timeCLI(ctx, b.req.Home, "run", "--image", imageTag, "--wait", "--json", "--", "echo", "hi")
		if err != nil {
			return d, err
		}
		return d, checkTask(out)
	}
	runDocker := func() (time.Duration, error) {
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, docker, "run", "--rm", "--network", "none", imageTag, "echo", "hi").CombinedOutput()
		d := time.Since(t0)
		if err != nil || string(out) != "hi\n" {
			return d, fmt.Errorf("docker run: %v: %q", err, out)
		}
		return d, nil
	}
	// One untimed run of each warms the engine's and the node's caches.
	if _, err := runOffload(); err != nil {
		return err
	}
	if _, err := runDocker(); err != nil {
		return err
	}
	var offl, dock []time.Duration
	for i := 0; i < b.sz.dockerRuns; i++ {
		first, second := runOffload, runDocker
		if i%2 == 1 {
			first, second = runDocker, runOffload
		}
		d1, err := first()
		if err != nil {
			return err
		}
		d2, err := second()
		if err != nil {
			return err
		}
		if i%2 == 0 {
			offl, dock = append(offl, d1), append(dock, d2)
		} else {
			offl, dock = append(offl, d2), append(dock, d1)
		}
	}
	mo, md := median(offl), median(dock)
	r.set("e2e_docker_ratio", float64(mo)/float64(md),
		fmt.Sprintf("offload run %s / docker run %s, median of %d each", ms(mo), ms(md), len(offl)))
	return nil
}

// gvisorRatio compares the same trivial Docker task through offload with
// --isolation gvisor (runsc) and without (runc), alternating.
func (b *bench) gvisorRatio(ctx context.Context, r *results) error {
	if _, err := dockerCLI(ctx); err != nil {
		r.set("gvisor_vs_runc_ratio", -1, err.Error())
		return nil
	}
	run := func(extra ...string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			args := append([]string{"run", "--image", imageTag}, extra...)
			d, out, err := b.timeCLI(ctx, b.req.Home, append(args, "--wait", "--json", "--", "echo", "hi")...)
			if err != nil {
				return d, err
			}
			return d, checkTask(out)
		}
	}
	runc, gvisor := run(), run("--isolation", "gvisor")
	if _, err := gvisor(); err != nil {
		r.set("gvisor_vs_runc_ratio", -1, "no gVisor provider: "+err.Error())
		b.logf("skipped: %v", err)
		return nil
	}
	var g, c []time.Duration
	for i := 0; i < b.sz.dockerRuns; i++ {
		dg, err := gvisor()
		if err != nil {
			return err
		}
		dc, err := runc()
		if err != nil {
			return err
		}
		g, c = append(g, dg), append(c, dc)
	}
	mg, mc := median(g), median(c)
	r.set("gvisor_vs_runc_ratio", float64(mg)/float64(mc),
		fmt.Sprintf("offload run --isolation gvisor %s / offload run (runc) %s, median of %d each", ms(mg), ms(mc), len(g)))
	return nil
}

// ensureWASM adds the trivial module on the requestor once: a minimal WASI
// command that prints "hi" (testimage.TinyWASMFile), so the numbers measure
// offload rather than a guest language's runtime start (a Go module adds
// about 10 ms and 12 ms of CPU per run, see BENCHMARKS.md).
func (b *bench) ensureWASM(ctx context.Context) error {
	if b.wasmCID != "" {
		return nil
	}
	path, err := testimage.TinyWASMFile()
	if err != nil {
		return fmt.Errorf("write the trivial module: %w", err)
	}
	out, err := b.cl.CLI(ctx, b.req.Home, "add", path, "--json")
	if err != nil {
		return err
	}
	var v struct{ CID string }
	if err := json.Unmarshal(out, &v); err != nil || v.CID == "" {
		return fmt.Errorf("add --json: %v: %s", err, out)
	}
	b.wasmCID = v.CID
	return nil
}

func (b *bench) wasmE2E(ctx context.Context, r *results) error {
	if err := b.ensureWASM(ctx); err != nil {
		return err
	}
	runOnce := func() (time.Duration, error) {
		d, out, err := b.timeCLI(ctx, b.req.Home, "run", "--runtime", "wasm", "--image", b.wasmCID, "--wait", "--json", "--", "echo", "hi")
		if err != nil {
			return d, err
		}
		return d, checkTask(out)
	}
	warm, err := runOnce()
	if err != nil {
		return err
	}
	var ds []time.Duration
	for i := 0; i < b.sz.wasmRuns; i++ {
		d, err := runOnce()
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	m := median(ds)
	r.set("e2e_wasm_ms", msf(m), fmt.Sprintf("median of %d CLI runs (p95 %s) after a %s warm-up", len(ds), ms(percentile(ds, 0.95)), ms(warm)))
	return nil
}

// addProviders starts providers bootstrapped to the first node until there
// are total, at most par starting at once.
func (b *bench) addProviders(ctx context.Context, total, par int, args ...string) error {
	need := total - len(b.providers)
	if need <= 0 {
		return nil
	}
	names := make([]string, need)
	for i := range names {
		names[i] = b.name("prov")
	}
	nodes := make([]*cluster.Node, need)
	errs := make([]error, need)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			a := append([]string{"--provider", "--bootstrap", b.bootAddr}, args...)
			nodes[i], errs[i] = b.cl.Start(ctx, names[i], a...)
		}()
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			return errs[i]
		}
		b.providers = append(b.providers, nodes[i])
	}
	return nil
}

func (b *bench) throughput(ctx context.Context, r *results) error {
	if err := b.ensureWASM(ctx); err != nil {
		return err
	}
	if err := b.addProviders(ctx, 4, 2, "--executors", "wasm"); err != nil {
		return err
	}
	if err := b.waitPool(ctx, b.req, 4, time.Minute); err != nil {
		return err
	}
	c, err := b.req.Client()
	if err != nil {
		return err
	}
	spec := client.TaskSpec{Runtime: "wasm", Image: b.wasmCID, Cmd: []string{"echo", "hi"}, TimeoutMS: 60_000}
	// A short warm-up so every provider holds the module.
	if err := runTasks(ctx, c, spec, 8, 8, nil, nil); err != nil {
		return err
	}
	var failed atomic.Int64
	nodes := append([]*cluster.Node{b.req}, b.providers[:4]...)
	cpu0 := cpuOf(nodes)
	self0, _ := cluster.ProcessCPU(os.Getpid())
	t0 := time.Now()
	profiled := b.prof.start(ctx, nodes, "tasks_per_second", b.logf)
	var mu sync.Mutex
	var lat []time.Duration
	announces := 0
	err = runTasks(ctx, c, spec, b.sz.tasks, b.sz.concurrency, &failed, func(t *client.Task, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		lat = append(lat, d)
		announces += t.Attempt
	})
	el := time.Since(t0)
	cpu := cpuOf(nodes) - cpu0
	self1, _ := cluster.ProcessCPU(os.Getpid())
	profiled()
	if err != nil {
		return err
	}
	ok := int64(b.sz.tasks) - failed.Load()
	r.set("tasks_per_second", float64(ok)/el.Seconds(),
		fmt.Sprintf("%d completed (%d failed) in %s, %d in flight, 4 providers; per task: %.1f ms node CPU (client %.1f ms), latency median %s p95 %s, %.2f announcements",
			ok, failed.Load(), el.Round(time.Millisecond), b.sz.concurrency, msf(cpu)/float64(b.sz.tasks), msf(self1-self0)/float64(b.sz.tasks),
			ms(median(lat)), ms(percentile(lat, 0.95)), float64(announces)/float64(len(lat))))
	return nil
}

// cpuOf sums the CPU time the nodes' processes have used.
func cpuOf(nodes []*cluster.Node) time.Duration {
	var sum time.Duration
	for _, n := range nodes {
		if d, err := n.CPUTime(); err == nil {
			sum += d
		}
	}
	return sum
}

// taskWaitLimit bounds one trivial task from its submission to its
// terminal event, so that a lost answer or event fails the run with the
// task's id instead of holding it until the harness's overall timeout.
const taskWaitLimit = 2 * time.Minute

// runTasks submits n copies of spec with at most par in flight and waits
// for each; with failed nil any task that does not complete is an error,
// otherwise it is counted there. done, when set, sees every finished task
// and its latency from submission.
func runTasks(ctx context.Context, c *client.Client, spec client.TaskSpec, n, par int, failed *atomic.Int64, done func(*client.Task, time.Duration)) error {
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := func() error {
				t0 := time.Now()
				wctx, cancel := context.WithTimeout(ctx, taskWaitLimit)
				defer cancel()
				t, err := c.Submit(wctx, spec)
				if err != nil {
					return fmt.Errorf("submit: %w", err)
				}
				id := t.ID
				t, err = c.Wait(wctx, id)
				if err != nil && ctx.Err() == nil && wctx.Err() != nil {
					// Say what the node holds, so that a lost event is told
					// apart from a task that never ended.
					state := "unknown"
					if st, gerr := c.Get(ctx, id); gerr == nil {
						state = st.State
					}
					return fmt.Errorf("wait %s: no terminal event within %s; the node has it %s", id, taskWaitLimit, state)
				}
				if err != nil {
					return fmt.Errorf("wait %s: %w", id, err)
				}
				if done != nil {
					done(t, time.Since(t0))
				}
				if t.State != "completed" {
					if failed != nil {
						failed.Add(1)
						return nil
					}
					return fmt.Errorf("task %s %s: %s", t.ID, t.State, t.Error)
				}
				return nil
			}()
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func (b *bench) transfer(ctx context.Context, r *results) error {
	n := b.sz.transferBytes
	src := filepath.Join(b.dir, "transfer.bin")
	f, err := os.Create(src)
	if err != nil {
		return fmt.Errorf("transfer file: %w", err)
	}
	if _, err := io.Copy(f, io.LimitReader(rand.New(rand.NewSource(42)), n)); err != nil {
		f.Close()
		return fmt.Errorf("transfer file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("transfer file: %w", err)
	}
	// The requestor holds the bytes; each round a fresh node fetches them.
	// They are published (--public): content is private by default, served
	// only to the peers of the tasks that use it, and the fresh node runs
	// no task.
	out, err := b.cl.CLI(ctx, b.req.Home, "add", src, "--json", "--public")
	if err != nil {
		return err
	}
	var v struct{ CID string }
	if err := json.Unmarshal(out, &v); err != nil || v.CID == "" {
		return fmt.Errorf("add --json: %v: %s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("tcp baseline: %w", err)
	}
	defer ln.Close()
	go serveFile(ln, src)

	var bs, tcp time.Duration
	for i := 0; i < b.sz.transferRuns; i++ {
		recv, err := b.cl.Start(ctx, b.name("recv"), "--bootstrap", b.reqAddr)
		if err != nil {
			return err
		}
		dest := filepath.Join(b.dir, "bitswap.out")
		d, _, err := b.timeCLI(ctx, recv.Home, "get", v.CID, "-o", dest)
		recv.Stop()
		if err != nil {
			return err
		}
		if fi, err := os.Stat(dest); err != nil || fi.Size() != n {
			return fmt.Errorf("bitswap copy: %v (size %d, want %d)", err, sizeOf(fi), n)
		}
		os.Remove(dest)
		os.RemoveAll(recv.Home)
		bs += d

		tdest := filepath.Join(b.dir, "tcp.out")
		t0 := time.Now()
		if err := tcpReceive(ln.Addr().String(), tdest, n); err != nil {
			return err
		}
		tcp += time.Since(t0)
		os.Remove(tdest)
		b.logf("round %d: bitswap %s, tcp %s", i+1, ms(d), ms(time.Since(t0)))
	}
	os.Remove(src)
	mib := float64(n) * float64(b.sz.transferRuns) / (1 << 20)
	bsRate, tcpRate := mib/bs.Seconds(), mib/tcp.Seconds()
	r.set("bitswap_vs_tcp_ratio", bsRate/tcpRate,
		fmt.Sprintf("offload get %.0f MiB/s vs tcp %.0f MiB/s, %d MiB x %d", bsRate, tcpRate, n>>20, b.sz.transferRuns))
	return nil
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Size()
}

// serveFile sends the file to every connection (sendfile on Linux).
func serveFile(ln net.Listener, path string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			f, err := os.Open(path)
			if err != nil {
				return
			}
			defer f.Close()
			_, _ = io.Copy(c, f)
		}()
	}
}

// tcpReceive reads want bytes from addr into dest, hashing them as bitswap
// verifies its blocks.
func tcpReceive(addr, dest string, want int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("tcp dial: %w", err)
	}
	defer c.Close()
	f, err := os.Create(dest)
	if err != nil {
		return fmt.Errorf("tcp dest: %w", err)
	}
	h := sha256.New()
	got, err := io.Copy(io.MultiWriter(f, h), c)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("tcp copy: %w", err)
	}
	if got != want {
		return fmt.Errorf("tcp: got %d bytes, want %d", got, want)
	}
	return nil
}

func (b *bench) idleRSS(ctx context.Context, r *results) error {
	p, err := b.cl.Start(ctx, b.name("idle"), "--provider", "--bootstrap", b.bootAddr)
	if err != nil {
		return err
	}
	b.providers = append(b.providers, p)
	time.Sleep(5 * time.Second)
	var samples []time.Duration // bytes, reusing the duration helpers
	for i := 0; i < 5; i++ {
		v, err := p.RSS()
		if err != nil {
			return err
		}
		samples = append(samples, time.Duration(v))
		time.Sleep(200 * time.Millisecond)
	}
	v := float64(median(samples))
	r.set("idle_rss_bytes", v, fmt.Sprintf("%.1f MiB VmRSS of a provider 5 s after start", v/(1<<20)))
	return nil
}

func (b *bench) discovery(ctx context.Context, r *results) error {
	want := b.sz.providers
	t0 := time.Now()
	if err := b.addProviders(ctx, want, 4); err != nil {
		return err
	}
	b.logf("%d providers running after %s", len(b.providers), time.Since(t0).Round(time.Millisecond))
	if err := b.waitPool(ctx, b.req, want, 2*time.Minute); err != nil {
		return err
	}
	var ds []time.Duration
	for i := 0; i < b.sz.requestors; i++ {
		n, err := b.cl.Start(ctx, b.name("disc"), "--bootstrap", b.bootAddr)
		if err != nil {
			return err
		}
		err = b.waitPool(ctx, n, want, time.Minute)
		d := time.Since(n.Started)
		n.Stop()
		if err != nil {
			return err
		}
		b.logf("requestor %d saw %d providers after %s", i+1, want, ms(d))
		ds = append(ds, d)
	}
	p := percentile(ds, 0.95)
	r.set("discovery_p95_ms", msf(p), fmt.Sprintf("%d fresh requestors, %d providers, from exec; median %s", len(ds), want, ms(median(ds))))
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank percentile.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", msf(d)) }

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
