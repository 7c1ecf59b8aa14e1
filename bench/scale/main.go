// Command scale is the scale harness of issue 16: one requestor and N
// providers, every one a real libp2p host (p2p.New: TCP on 127.0.0.1,
// Kademlia, gossipsub with the node's topic validators) running the real
// market (market.Requestor, market.Provider) and discovery (Pool,
// Advertiser), with in-memory stores and an executor that returns at once,
// so only the market is measured. The requestor lives in this process and
// the providers in worker processes of at most -per-proc each (this binary
// run as `scale worker`; worker.go), so that each process has its own
// open-file limit, heap and collector. For each N it builds a fresh swarm
// (each provider bootstrapped to a few random nodes already up), waits until the requestor's pool lists enough providers
// (-ready-known), runs a batch of tasks with a fixed number in flight,
// then times how soon fresh requestors, each bootstrapped to one random
// provider, have 3 and 16 candidates for the task (-discover), and prints
// tasks/s, CPU per task (every process's), messages per task, bids per task, latency,
// memory per node, adverts per provider per minute and discovery times,
// then the growth of each against the first N.
//
//	go run ./bench/scale -n 4,32,128,512 -tasks 200 -inflight 16
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	ns       []int
	tasks    []int
	inflight int
	// perProc is the most providers one worker process holds.
	perProc int
	// gcPercent is the GOGC in force (harnessGC).
	gcPercent int
	maxTime   time.Duration
	settle    time.Duration
	// settleMin is the least time from the build's end to the idle window.
	settleMin time.Duration
	idle      time.Duration
	ready     time.Duration
	known     int
	discover  int
	wait      time.Duration
	json      bool
	verbose   bool
	profile   string
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("n", "4,32,128,512", "provider counts, one swarm each, comma-separated")
	tasks := fs.String("tasks", "200,200,100,50", "tasks per N: one value for every N, or one per N")
	var o options
	fs.IntVar(&o.inflight, "inflight", 16, "tasks in flight")
	fs.IntVar(&o.perProc, "per-proc", 64, "most providers in one worker process (the requestor has a process of its own)")
	fs.DurationVar(&o.maxTime, "max-time", 60*time.Second, "stop submitting at one N after this long (tasks in flight are waited for)")
	fs.DurationVar(&o.settle, "settle", 3*time.Minute, "after the pool is complete, wait at most this long for the swarm's CPU to settle (1 s samples until 20 in a row are within 0.15 cores of their mean, under 3/4 of the cores)")
	fs.DurationVar(&o.settleMin, "settle-min", 80*time.Second, "measure nothing before this long after the build (the providers' first re-adverts, 1 minute ±20 % after each one's start, arrive in one wave)")
	fs.DurationVar(&o.idle, "idle", 3*time.Second, "idle window measured before the tasks (background CPU and messages)")
	fs.DurationVar(&o.ready, "ready", 60*time.Second, "how long to wait for the requestor's pool to list -ready-known providers")
	fs.IntVar(&o.known, "ready-known", 16, "providers the requestor's pool must list before the batch (all of them when N is smaller)")
	fs.IntVar(&o.discover, "discover", 5, "fresh requestors started one after another after the batch to time discovery (0: none)")
	fs.DurationVar(&o.wait, "wait", time.Minute, "how long to wait for one task to end before counting it failed")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON on stdout (the table goes to stderr)")
	fs.BoolVar(&o.verbose, "v", false, "log the nodes at debug level to stderr")
	fs.StringVar(&o.profile, "cpuprofile", "", "write CPU profiles of each N's idle window and batch (then discovery) to DIR/cpu-N-{idle,batch}[-wI].pprof, one per process (wI: worker I)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.ns, err = parseInts(*ns); err != nil {
		return o, fmt.Errorf("-n: %w", err)
	}
	if o.tasks, err = parseInts(*tasks); err != nil {
		return o, fmt.Errorf("-tasks: %w", err)
	}
	switch {
	case len(o.tasks) == 1:
		o.tasks = slices.Repeat(o.tasks, len(o.ns))
	case len(o.tasks) != len(o.ns):
		return o, fmt.Errorf("-tasks has %d values for %d values of -n", len(o.tasks), len(o.ns))
	}
	if o.inflight <= 0 {
		return o, fmt.Errorf("-inflight must be positive")
	}
	if o.perProc <= 0 {
		return o, fmt.Errorf("-per-proc must be positive")
	}
	return o, nil
}

// result is what one N measured.
type result struct {
	N         int     `json:"providers"`
	Submitted int     `json:"submitted"`
	Completed int     `json:"completed"`
	Failed    int     `json:"failed"`
	WallS     float64 `json:"wall_s"`
	TasksPerS float64 `json:"tasks_per_s"`
	// CPUPerTaskMS is the process's user+system CPU over the batch divided
	// by completed tasks; every node of the swarm lives in the process.
	CPUPerTaskMS float64 `json:"cpu_per_task_ms"`
	// IdleCores is the process CPU per second of wall time in the idle
	// window before the batch (gossipsub heartbeats, DHT, adverts...).
	IdleCores float64 `json:"idle_cores"`
	// NetCPUPerTaskMS subtracts IdleCores × batch wall time.
	NetCPUPerTaskMS float64 `json:"net_cpu_per_task_ms"`
	// Per completed task, over the batch window (background included).
	GossipTasksPerTask float64 `json:"gossip_tasks_per_task"`
	GossipCapsPerTask  float64 `json:"gossip_caps_per_task"`
	StreamsPerTask     float64 `json:"streams_per_task"`
	StreamMsgsPerTask  float64 `json:"stream_msgs_per_task"`
	MsgsPerTask        float64 `json:"msgs_per_task"`
	// IdleMsgsPerS is every counted message per second in the idle window.
	IdleMsgsPerS float64 `json:"idle_msgs_per_s"`
	// Bids: medians over completed tasks of the bid records (bids and
	// declines), of the bids alone, and of the announcements (attempts).
	AnswersMedian  int `json:"answers_median"`
	BidsMedian     int `json:"bids_median"`
	AttemptsMedian int `json:"attempts_median"`
	// Latency from Submit to Wait's return, nearest rank.
	P50MS float64 `json:"p50_ms"`
	P95MS float64 `json:"p95_ms"`
	// HeapPerNodeKiB is the live heap of every process with the swarm up
	// (as of each one's last GC cycle), less what each held before its
	// nodes were built, over the N+1 nodes.
	HeapPerNodeKiB float64 `json:"heap_per_node_kib"`
	Goroutines     int     `json:"goroutines_per_node"`
	// BuildS is how long the N+1 nodes took to build; ReadyS is from the
	// first host's start until the requestor's pool listed -ready-known
	// providers; Known is how many it listed when the batch started.
	BuildS float64 `json:"build_s"`
	ReadyS float64 `json:"ready_s"`
	Known  int     `json:"known"`
	// AdvertsPerProviderMin is the capability adverts the providers
	// published from the end of the build (their first adverts are
	// published while it runs) to the end of the discovery runs, per
	// provider and minute.
	AdvertsPerProviderMin float64 `json:"adverts_per_provider_min"`
	// Discovery times fresh requestors (after the batch).
	Discovery discoveryStats `json:"discovery"`
	// SettleS is how long after that the swarm's CPU was found settled
	// (-settle-min after the build at the least).
	SettleS float64 `json:"settle_s"`
	// ReqPeers is the requestor's connections after the batch.
	ReqPeers int `json:"requestor_peers"`
	// Streams and Msgs by protocol over the batch, and gossip by topic.
	Detail snapshot `json:"detail"`
	Errors []string `json:"errors,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "worker" {
		return runWorker(ctx, os.Stdin, stdout, stderr)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	o.gcPercent = harnessGC()
	if lim, err := raiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "scale: open-file limit stays %d: %v\n", lim, err)
	}
	var results []result
	for i, n := range o.ns {
		procs := (n + o.perProc - 1) / o.perProc
		fmt.Fprintf(stderr, "N=%d: building %d nodes: %d worker processes of at most %d providers, and the requestor here\n",
			n, n+1, procs, o.perProc)
		r, err := measure(ctx, o, n, o.tasks[i], log, stderr)
		if err != nil {
			return fmt.Errorf("N=%d: %w", n, err)
		}
		results = append(results, r)
		fmt.Fprintf(stderr, "N=%d: %d/%d completed, %.1f tasks/s, %.1f ms CPU/task, p95 %.0f ms\n",
			n, r.Completed, r.Submitted, r.TasksPerS, r.CPUPerTaskMS, r.P95MS)
		if ctx.Err() != nil {
			break
		}
	}
	table := stdout
	if o.json {
		table = stderr
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	}
	printTable(table, o, results)
	return nil
}

// taskSpec is every task of the batch: one CPU on the instant executor.
func taskSpec() wire.TaskSpec {
	return wire.TaskSpec{Image: scaleImage, Cmd: []string{"run"}, Resources: wire.Resources{CPUs: 1, MemoryBytes: 64 << 20}}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// liveHeap is the heap the collector found live at its last cycle
// (runtime/metrics /gc/heap/live:bytes) and the number of cycles so far.
// Unlike a forced GC, it costs nothing: with 513 nodes saturating the
// machine, two forced collections of a worker's 2.7 GB heap took minutes.
// A heap that no cycle has seen since an earlier reading (cycles the same)
// is small enough to collect once for the reading: heapSince.
func liveHeap() (bytes, cycles uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return 0, 0
		}
	}
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// heapBaseline collects the heap and returns what is live and the cycle
// count, for heapSince.
func heapBaseline() (bytes, cycles uint64) {
	runtime.GC()
	return liveHeap()
}

// heapSince is the live heap now less base, the baseline taken at cycle
// count cycles0; when no cycle ran since, it collects once first.
func heapSince(base, cycles0 uint64) int64 {
	live, cycles := liveHeap()
	if cycles == cycles0 {
		live, _ = heapBaseline()
	}
	return int64(live) - int64(base)
}

// measure builds a swarm of n providers, runs tasks through it and tears
// it down.
func measure(ctx context.Context, o options, n, tasks int, log *slog.Logger, stderr io.Writer) (result, error) {
	res := result{N: n}
	heap0, cycles0 := heapBaseline()
	g0 := runtime.NumGoroutine()
	start := time.Now()
	s, err := buildSwarm(ctx, o, n, log, stderr)
	if err != nil {
		return res, err
	}
	defer func() {
		// Each result is printed before the swarm closes, and a close that
		// hangs (seen at N=512: a libp2p host's Close stuck in its event
		// bus) costs at most a minute; its worker is then killed.
		if b, err := json.Marshal(res); err == nil {
			fmt.Fprintf(stderr, "N=%d: result %s\n", n, b)
		}
		t0 := time.Now()
		s.close()
		fmt.Fprintf(stderr, "N=%d: closed in %.1f s\n", n, time.Since(t0).Seconds())
	}()
	res.BuildS = time.Since(start).Seconds()
	st, err := s.status(false)
	if err != nil {
		return res, err
	}
	built, adv0 := time.Now(), st.adverts
	fmt.Fprintf(stderr, "N=%d: built in %.1f s (providers keep at most %d other peers), waiting for the pool\n", n, res.BuildS, s.workers[0].peerCap)
	if !s.waitReady(ctx, o.known, o.ready) {
		res.Errors = append(res.Errors, fmt.Sprintf("requestor's pool lists %d of %d providers after %s", s.known(), min(o.known, n), o.ready))
	}
	res.ReadyS = time.Since(start).Seconds()
	res.Known = s.known()
	fmt.Fprintf(stderr, "N=%d: pool lists %d after %.1f s\n", n, res.Known, res.ReadyS)
	// The first re-adverts come in one wave (every provider started within
	// the build), a minute after each start: a steady-looking window can
	// fall inside it (N=128: 0.78 cores and 1,162 messages a second "idle",
	// against 0.2 cores after it), so the samples start after it.
	ready := time.Now()
	sleep(ctx, o.settleMin-time.Since(built))
	settle(ctx, o.settle, s.cpu)
	res.SettleS = time.Since(ready).Seconds()
	fmt.Fprintf(stderr, "N=%d: settled after %.0f s more\n", n, res.SettleS)

	if o.profile != "" {
		if err := s.profile(o.profile, n, "idle"); err != nil {
			return res, err
		}
		defer s.profile(o.profile, n, "")
	}
	s0, err := s.status(false)
	if err != nil {
		return res, err
	}
	c0, t0 := s.cpu(), time.Now()
	sleep(ctx, o.idle)
	c1, idleWall := s.cpu(), time.Since(t0)
	s1, err := s.status(false)
	if err != nil {
		return res, err
	}
	res.IdleCores = float64(c1-c0) / float64(idleWall)
	idle := s1.counters.sub(s0.counters)
	res.IdleMsgsPerS = float64(sum(idle.Gossip)+sum(idle.Msgs)) / idleWall.Seconds()

	res.Known = s.known()
	if o.profile != "" {
		if err := s.profile(o.profile, n, "batch"); err != nil {
			return res, err
		}
	}
	c1, tb := s.cpu(), time.Now()
	lat, tasksDone, errs := runBatch(ctx, s.requestor.req, tasks, o.inflight, o.maxTime, o.wait)
	c2, wall := s.cpu(), time.Since(tb)
	s2, err := s.status(false)
	if err != nil {
		return res, err
	}
	res.Errors = append(res.Errors, errs...)
	res.Submitted = len(tasksDone)
	res.WallS = wall.Seconds()
	var answers, bids, attempts []int
	for _, t := range tasksDone {
		if t == nil || t.State != market.StateCompleted {
			res.Failed++
			continue
		}
		res.Completed++
		nb := 0
		for _, b := range t.Bids {
			if b.Decline == "" {
				nb++
			}
		}
		answers = append(answers, len(t.Bids))
		bids = append(bids, nb)
		attempts = append(attempts, t.Attempt)
	}
	res.AnswersMedian, res.BidsMedian, res.AttemptsMedian = median(answers), median(bids), median(attempts)
	slices.Sort(lat)
	res.P50MS, res.P95MS = rank(lat, 0.50), rank(lat, 0.95)
	d := s2.counters.sub(s1.counters)
	res.Detail = d
	if res.Completed > 0 {
		done := float64(res.Completed)
		res.TasksPerS = done / wall.Seconds()
		res.CPUPerTaskMS = float64(c2-c1) / 1e6 / done
		res.NetCPUPerTaskMS = (float64(c2-c1) - res.IdleCores*float64(wall)) / 1e6 / done
		res.GossipTasksPerTask = float64(d.Gossip[wire.TopicTasks]) / done
		res.GossipCapsPerTask = float64(d.Gossip[wire.TopicCaps]) / done
		res.StreamsPerTask = float64(sum(d.Streams)) / done
		res.StreamMsgsPerTask = float64(sum(d.Msgs)) / done
		res.MsgsPerTask = float64(sum(d.Gossip)+sum(d.Msgs)) / done
	}
	res.ReqPeers = len(s.requestor.h.Network().Peers())
	sh, err := s.status(true)
	if err != nil {
		return res, err
	}
	res.HeapPerNodeKiB = float64(heapSince(heap0, cycles0)+sh.heapDelta) / 1024 / float64(n+1)
	res.Goroutines = (runtime.NumGoroutine() - g0 + sh.goroutines) / (n + 1)
	if o.discover > 0 {
		if res.Discovery, err = measureDiscovery(ctx, s, o.discover, log); err != nil {
			res.Errors = append(res.Errors, "discovery: "+err.Error())
		}
		d := res.Discovery
		fmt.Fprintf(stderr, "N=%d: discovery of %d candidates p50/p95 %.0f / %.0f ms, of %d %.0f / %.0f ms (%d, %d short)\n", n,
			discoveryWants[0], d.P50MS[0], d.P95MS[0], discoveryWants[1], d.P50MS[1], d.P95MS[1], d.Short[0], d.Short[1])
	}
	if st, err := s.status(false); err == nil {
		res.AdvertsPerProviderMin = float64(st.adverts-adv0) / float64(n) / time.Since(built).Minutes()
	}
	return res, nil
}

// settleWindow is how many one-second CPU samples in a row must agree for
// settle to call the process quiet.
const settleWindow = 20

// settle waits, at most max, until the swarm's CPU (cpu: every process's) has been steady for
// settleWindow one-second samples in a row (each within 0.15 cores of
// their mean, under three quarters of the cores), and returns how long it
// waited. A swarm's start-up (DHT bootstrap and provider records, record
// exchanges, the first re-adverts) comes in waves: at N=128 on 2 cores
// the process runs saturated for about 30 s, quiet for a few seconds, busy
// again until about 70 s, then steady at 0.2 cores; a window of two
// samples took the saturated first wave (which agrees with itself) for the
// idle state, and one of 10 the 8 s gap between the waves.
// SCALE_TRACE_SETTLE=1 prints every sample.
func settle(ctx context.Context, max time.Duration, cpu func() time.Duration) float64 {
	start := time.Now()
	var window []float64
	for time.Since(start) < max && ctx.Err() == nil {
		c0, t0 := cpu(), time.Now()
		sleep(ctx, time.Second)
		cur := float64(cpu()-c0) / float64(time.Since(t0))
		if os.Getenv("SCALE_TRACE_SETTLE") != "" {
			fmt.Fprintf(os.Stderr, "settle: %.0f s %.2f cores\n", time.Since(start).Seconds(), cur)
		}
		window = append(window, cur)
		if len(window) > settleWindow {
			window = window[1:]
		}
		if len(window) == settleWindow && steady(window) {
			break
		}
	}
	return time.Since(start).Seconds()
}

// steady reports whether every sample is within 0.15 cores of their mean
// and the mean leaves at least a quarter of the cores free (a saturated
// process agrees with itself, but it is busy, not idle).
func steady(samples []float64) bool {
	var sum float64
	for _, v := range samples {
		sum += v
	}
	mean := sum / float64(len(samples))
	if mean > 0.75*float64(runtime.GOMAXPROCS(0)) {
		return false
	}
	for _, v := range samples {
		if math.Abs(v-mean) > 0.15 {
			return false
		}
	}
	return true
}

// harnessGCPercent is the GOGC of the harness's processes unless the
// environment sets one. The collector's mark work per byte allocated is
// about 100/GOGC of the live heap's marking whatever the heap's size, so
// 400 makes GC about four times cheaper than in a node process at the
// default 100, for every N alike; what it buys is room: when all nodes
// shared one process, N=128 with the default measured 410 tasks/s, 4.6 ms
// a task and a p95 of 83 ms, a third of the CPU in GC marking, and with
// 400, 729 tasks/s, 2.5 ms and 33 ms (N=4: 833 tasks/s and 2.1 ms either
// way). CPU per task here is therefore below what node processes spend
// (bench/run measures those); its growth with N is what this harness is
// for. It costs memory: a worker of 64 providers holds about 40 MB of RSS
// a node for 5 MB live.
const harnessGCPercent = 400

// harnessGC sets the collector's target to harnessGCPercent unless GOGC
// is set, and returns the target in force.
func harnessGC() int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(harnessGCPercent)
	}
	v := debug.SetGCPercent(-1)
	debug.SetGCPercent(v)
	return v
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// runBatch submits tasks with inflight of them at once until all were
// submitted or maxTime passed, and waits for each submitted one to end
// (at most wait each). It returns the latencies of the completed
// tasks (Submit to Wait's return, ms) and every submitted task as it
// ended (nil where Wait gave up).
func runBatch(ctx context.Context, r *market.Requestor, tasks, inflight int, maxTime, wait time.Duration) ([]float64, []*market.Task, []string) {
	var (
		mu    sync.Mutex
		lat   []float64
		ended []*market.Task
		errs  []string
		wg    sync.WaitGroup
	)
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, s)
		}
	}
	sem := make(chan struct{}, inflight)
	stopAt := time.Now().Add(maxTime)
	for range tasks {
		if time.Now().After(stopAt) || ctx.Err() != nil {
			fail(fmt.Sprintf("stopped submitting after %s", maxTime))
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			t, err := r.Submit(ctx, taskSpec())
			if err != nil {
				fail("submit: " + err.Error())
				mu.Lock()
				ended = append(ended, nil)
				mu.Unlock()
				return
			}
			wctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			done, err := r.Wait(wctx, t.ID)
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				ended = append(ended, nil)
				if len(errs) < 10 {
					errs = append(errs, fmt.Sprintf("task %s not ended: %v", t.ID, err))
				}
			case done.State != market.StateCompleted:
				ended = append(ended, done)
				if len(errs) < 10 {
					errs = append(errs, fmt.Sprintf("task %s %s: %s", t.ID, done.State, done.Reason))
				}
			default:
				ended = append(ended, done)
				lat = append(lat, float64(d)/1e6)
			}
		}()
	}
	wg.Wait()
	return lat, ended, errs
}

func median(v []int) int {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// rank is the nearest-rank percentile of sorted v.
func rank(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(float64(len(v))*p+0.999999) - 1
	return v[min(max(i, 0), len(v)-1)]
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// printTable prints the results and their growth against the first N as
// markdown.
func printTable(w io.Writer, o options, rs []result) {
	fmt.Fprintf(w, "\n%d in flight; %s; GOMAXPROCS %d; GOGC %d\n\n", o.inflight, runtime.Version(), runtime.GOMAXPROCS(0), o.gcPercent)
	fmt.Fprintln(w, "| providers | tasks done / failed | tasks/s | CPU per task (net of idle) | msgs per task: gossip tasks + caps, stream msgs (streams) | bids per task (answers, announcements) | p50 / p95 latency | heap per node | idle CPU, msgs/s | pool complete (+ settle) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %d | %d / %d | %.1f | %.1f ms (%.1f ms) | %.0f: %.0f + %.0f, %.0f (%.0f) | %d (%d, %d) | %.0f / %.0f ms | %.0f KiB | %.2f cores, %.0f | %.1f s (+%.0f s) |\n",
			r.N, r.Completed, r.Failed, r.TasksPerS, r.CPUPerTaskMS, r.NetCPUPerTaskMS,
			r.MsgsPerTask, r.GossipTasksPerTask, r.GossipCapsPerTask, r.StreamMsgsPerTask, r.StreamsPerTask,
			r.BidsMedian, r.AnswersMedian, r.AttemptsMedian, r.P50MS, r.P95MS, r.HeapPerNodeKiB,
			r.IdleCores, r.IdleMsgsPerS, r.ReadyS, r.SettleS)
	}
	fmt.Fprint(w, "\nBuild, adverts and discovery (fresh requestors bootstrapped to one random provider, after the batch; ms from the start of their host):\n\n")
	fmt.Fprintf(w, "| providers | build | requestor lists %d | adverts per provider per minute | discovery of %d candidates p50 / p95 | of %d (N if fewer) p50 / p95 | runs (short) |\n",
		o.known, discoveryWants[0], discoveryWants[1])
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rs {
		d := r.Discovery
		fmt.Fprintf(w, "| %d | %.1f s | %.1f s | %.2f | %.0f / %.0f ms | %.0f / %.0f ms | %d (%d, %d) |\n",
			r.N, r.BuildS, r.ReadyS, r.AdvertsPerProviderMin, d.P50MS[0], d.P95MS[0], d.P50MS[1], d.P95MS[1], len(d.Runs), d.Short[0], d.Short[1])
	}
	if len(rs) > 1 {
		b := rs[0]
		fmt.Fprintf(w, "\nGrowth against N = %d:\n\n", b.N)
		fmt.Fprintln(w, "| providers | tasks/s | CPU per task | msgs per task | bids per task | p95 latency | heap per node |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		for _, r := range rs[1:] {
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s |\n", r.N,
				ratio(r.TasksPerS, b.TasksPerS), ratio(r.CPUPerTaskMS, b.CPUPerTaskMS), ratio(r.MsgsPerTask, b.MsgsPerTask),
				ratio(float64(r.BidsMedian), float64(b.BidsMedian)), ratio(r.P95MS, b.P95MS), ratio(r.HeapPerNodeKiB, b.HeapPerNodeKiB))
		}
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		fmt.Fprintf(w, "N=%d: streams by protocol %v; stream msgs %v; requestor connections after the batch %d; goroutines per node %d\n",
			r.N, r.Detail.Streams, r.Detail.Msgs, r.ReqPeers, r.Goroutines)
		for _, e := range r.Errors {
			fmt.Fprintf(w, "N=%d: %s\n", r.N, e)
		}
	}
}
