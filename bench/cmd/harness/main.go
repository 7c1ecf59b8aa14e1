// Command harness is offload's benchmark harness, run by bench/run. It
// starts real `offload node` processes on loopback (one home each under a
// temporary directory), drives them through the offload CLI and the Go API
// client exactly as a user would, and measures seven numbers, each against a
// baseline taken in the same run where there is one:
//
//	e2e_docker_ratio      median `offload run --wait --json` of a trivial
//	                      scratch image / median plain `docker run --rm
//	                      --network none` of it (alternated)
//	gvisor_vs_runc_ratio  median `offload run --isolation gvisor` of the
//	                      same task / median `offload run` of it (runc)
//	e2e_wasm_ms           median `offload run --runtime wasm --wait` of a
//	                      trivial module, after one warm-up run
//	tasks_per_second      trivial WASM tasks through one requestor and four
//	                      providers, submitted over the HTTP API with bounded
//	                      concurrency
//	bitswap_vs_tcp_ratio  throughput of `offload get` between two node
//	                      processes / a raw loopback TCP copy of the same
//	                      bytes (hashed and written, as bitswap does)
//	idle_rss_bytes        VmRSS of an idle provider process after ~5 s
//	discovery_p95_ms      p95 over fresh requestor processes of the time
//	                      from exec until `Pool` lists N providers
//
// It prints a table, or with --json one JSON object with exactly those seven
// keys (the table then goes to stderr). A metric that cannot be measured on
// this machine (no Docker engine) is -1 and says why on stderr.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/offload-project/offload/bench/cluster"
)

// sizes are the knobs that differ between --quick and a full run.
type sizes struct {
	dockerRuns    int   // alternated pairs for e2e_docker_ratio
	wasmRuns      int   // timed runs for e2e_wasm_ms
	tasks         int   // tasks for tasks_per_second
	concurrency   int   // tasks in flight for tasks_per_second
	transferBytes int64 // bytes per bitswap/TCP round
	transferRuns  int   // rounds (a fresh receiving node each)
	providers     int   // providers a requestor must discover
	requestors    int   // fresh requestors timed for discovery
}

var (
	quickSizes = sizes{dockerRuns: 10, wasmRuns: 10, tasks: 200, concurrency: 32,
		transferBytes: 64 << 20, transferRuns: 3, providers: 20, requestors: 5}
	fullSizes = sizes{dockerRuns: 30, wasmRuns: 30, tasks: 1000, concurrency: 64,
		transferBytes: 512 << 20, transferRuns: 3, providers: 50, requestors: 10}
)

// metricOrder is the order of the table and of the JSON keys.
var metricOrder = []string{"e2e_docker_ratio", "gvisor_vs_runc_ratio", "e2e_wasm_ms", "tasks_per_second",
	"bitswap_vs_tcp_ratio", "idle_rss_bytes", "discovery_p95_ms"}

// targets are the goals each number is compared with in the table.
var targets = map[string]struct {
	cmp   string
	value float64
	unit  string
}{
	"e2e_docker_ratio":     {"<=", 0.75, "x"},
	"gvisor_vs_runc_ratio": {"<=", 3, "x"},
	"e2e_wasm_ms":          {"<=", 50, "ms"},
	"tasks_per_second":     {">=", 100, "/s"},
	"bitswap_vs_tcp_ratio": {">=", 0.25, "x"},
	"idle_rss_bytes":       {"<=", 80 << 20, "B"},
	"discovery_p95_ms":     {"<=", 2000, "ms"},
}

func main() {
	quick := flag.Bool("quick", false, "small sizes (under 4 minutes on 2 cores)")
	asJSON := flag.Bool("json", false, "print one JSON object with the seven numbers on stdout")
	bin := flag.String("bin", "bin/offload", "offload binary")
	only := flag.String("only", "", "comma-separated metrics to measure (default all)")
	keep := flag.Bool("keep", false, "keep the work directory (node homes and logs)")
	tasks := flag.Int("tasks", 0, "override the task count of tasks_per_second")
	conc := flag.Int("concurrency", 0, "override the tasks in flight of tasks_per_second")
	profDir := flag.String("cpuprofile", "", "write CPU profiles of the requestor and the four providers during tasks_per_second to DIR (nodes serve pprof on loopback through "+pprofEnv+")")
	profSecs := flag.Int("profile-seconds", 5, "length of each --cpuprofile profile, from the start of the tasks_per_second batch")
	flag.Parse()

	sz := fullSizes
	if *quick {
		sz = quickSizes
	}
	if *tasks > 0 {
		sz.tasks = *tasks
	}
	if *conc > 0 {
		sz.concurrency = *conc
	}
	out := io.Writer(os.Stdout)
	if *asJSON {
		out = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	prof := profiling{dir: *profDir, seconds: *profSecs}
	if prof.dir != "" {
		if err := os.MkdirAll(prof.dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			os.Exit(1)
		}
		// Every node process started from here on inherits it.
		os.Setenv(pprofEnv, "127.0.0.1:0")
	}
	res, err := run(ctx, *bin, sz, *only, *keep, prof, out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
	printTable(out, res, sz)
	if *asJSON {
		obj := map[string]float64{}
		for _, k := range metricOrder {
			obj[k] = res.values[k]
		}
		b, _ := json.Marshal(obj)
		fmt.Println(string(b))
	}
}

// results are the seven numbers and a line of detail each.
type results struct {
	values map[string]float64
	detail map[string]string
}

func (r *results) set(k string, v float64, detail string) {
	r.values[k] = v
	r.detail[k] = detail
}

func run(ctx context.Context, bin string, sz sizes, only string, keep bool, prof profiling, log io.Writer) (*results, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, fmt.Errorf("binary path: %w", err)
	}
	dir, err := os.MkdirTemp("", "offload-bench-")
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	if keep {
		fmt.Fprintln(log, "work dir (kept):", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	cl, err := cluster.New(abs, filepath.Join(dir, "nodes"))
	if err != nil {
		return nil, err
	}
	defer cl.Close()

	want := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			want[k] = true
		}
	}
	do := func(k string) bool { return len(want) == 0 || want[k] }

	res := &results{values: map[string]float64{}, detail: map[string]string{}}
	for _, k := range metricOrder {
		res.set(k, -1, "not measured")
	}
	b := &bench{cl: cl, dir: dir, sz: sz, log: log, prof: prof}
	step := func(k string, f func(context.Context, *results) error) error {
		if !do(k) {
			return nil
		}
		t0 := time.Now()
		fmt.Fprintf(log, "== %s\n", k)
		if err := f(ctx, res); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		fmt.Fprintf(log, "   %s = %.4g (%s) [%.1fs]\n", k, res.values[k], res.detail[k], time.Since(t0).Seconds())
		return nil
	}
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		k string
		f func(context.Context, *results) error
	}{
		{"e2e_docker_ratio", b.dockerRatio},
		{"gvisor_vs_runc_ratio", b.gvisorRatio},
		{"e2e_wasm_ms", b.wasmE2E},
		{"tasks_per_second", b.throughput},
		{"bitswap_vs_tcp_ratio", b.transfer},
		{"idle_rss_bytes", b.idleRSS},
		{"discovery_p95_ms", b.discovery},
	} {
		if err := step(s.k, s.f); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func printTable(w io.Writer, r *results, sz sizes) {
	fmt.Fprintf(w, "\noffload benchmarks (%d CPUs, %s/%s)\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "%-22s %14s %12s %5s  %s\n", "metric", "value", "target", "met", "detail")
	for _, k := range metricOrder {
		v := r.values[k]
		t := targets[k]
		met := "no"
		switch {
		case v < 0:
			met = "-"
		case t.cmp == "<=" && v <= t.value, t.cmp == ">=" && v >= t.value:
			met = "yes"
		}
		fmt.Fprintf(w, "%-22s %14.4g %12s %5s  %s\n", k, v, fmt.Sprintf("%s %.4g", t.cmp, t.value), met, r.detail[k])
	}
}

// dockerCLI returns the docker command and whether its engine answers.
func dockerCLI(ctx context.Context) (string, error) {
	path, err := exec.LookPath("docker")
	if err != nil {
		return "", fmt.Errorf("no docker CLI: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker engine does not answer (run scripts/ensure-docker.sh): %w: %s", err, out)
	}
	return path, nil
}
