package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/bench/cluster"
	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
)

// chaosSize is the scale of TestChaos: a small batch by default (part of
// `make test`), a bigger one with OFFLOAD_CHAOS=full (`make chaos`).
type chaosSize struct {
	providers int           // loopback providers, the first is the bootstrap node
	tasks     int           // tasks submitted, half before and half after the requestor restarts
	deadline  time.Duration // how long every task has to end after the last fault
}

func chaosSizes() chaosSize {
	if os.Getenv("OFFLOAD_CHAOS") == "full" {
		return chaosSize{providers: 9, tasks: 200, deadline: 3 * time.Minute}
	}
	return chaosSize{providers: 6, tasks: 40, deadline: 2 * time.Minute}
}

// netnsLab is a network namespace with one veth pair to the root
// namespace, made by the test and removed after it. Only the two veth
// addresses carry traffic.
type netnsLab struct {
	ns, hostIf       string
	hostIP, insideIP string
}

const (
	labHostIP   = "10.213.77.1"
	labInsideIP = "10.213.77.2"
)

// newNetnsLab creates the namespace, or says why it cannot.
func newNetnsLab(t *testing.T) (*netnsLab, string) {
	if os.Geteuid() != 0 {
		return nil, "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, "no ip command"
	}
	if out, _ := exec.Command("ip", "-o", "addr").Output(); strings.Contains(string(out), "10.213.77.") {
		return nil, "10.213.77.0/30 already in use on this machine"
	}
	suffix := fmt.Sprint(os.Getpid() % 100000)
	lab := &netnsLab{ns: "offload-chaos-" + suffix, hostIf: "ocH" + suffix, hostIP: labHostIP, insideIP: labInsideIP}
	inIf := "ocN" + suffix
	steps := [][]string{
		{"netns", "add", lab.ns},
		{"link", "add", lab.hostIf, "type", "veth", "peer", "name", inIf},
		{"link", "set", inIf, "netns", lab.ns},
		{"addr", "add", lab.hostIP + "/30", "dev", lab.hostIf},
		{"link", "set", lab.hostIf, "up"},
		{"-n", lab.ns, "addr", "add", lab.insideIP + "/30", "dev", inIf},
		{"-n", lab.ns, "link", "set", inIf, "up"},
		{"-n", lab.ns, "link", "set", "lo", "up"},
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", lab.hostIf).Run()
		_ = exec.Command("ip", "netns", "del", lab.ns).Run()
	})
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return nil, fmt.Sprintf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return lab, ""
}

// cut takes the veth down: the provider inside is cut off from the swarm.
func (l *netnsLab) cut() error {
	if out, err := exec.Command("ip", "link", "set", l.hostIf, "down").CombinedOutput(); err != nil {
		return fmt.Errorf("cut %s: %w: %s", l.hostIf, err, out)
	}
	return nil
}

// TestChaos runs a batch of WASM tasks while a third of the providers are
// SIGKILLed, the requestor is SIGKILLed and restarted, and (as root) one
// provider inside a network namespace of the test's own is cut off. Every
// submitted task must end completed, or failed with a reason; none may be
// lost (missing from `offload list`, stuck non-terminal past the deadline,
// or failed without a reason).
func TestChaos(t *testing.T) {
	sz := chaosSizes()
	ctx, cancel := context.WithTimeout(t.Context(), sz.deadline+3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "offload")
	if err := cluster.Build(ctx, "..", bin); err != nil {
		t.Fatal(err)
	}
	wasm := testimage.BuildWASM(t)
	cl, err := cluster.New(bin, filepath.Join(t.TempDir(), "nodes"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cl.Close()
		if t.Failed() {
			for _, name := range []string{"req", "p00", "p01", "pns"} {
				b, _ := os.ReadFile(filepath.Join(cl.Dir, name+".log"))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("log of %s:\n%s", name, b)
			}
		}
	}()

	lab, why := newNetnsLab(t)
	if lab == nil {
		t.Logf("chaos: skipping the network-namespace cut: %s", why)
	}
	hostListen := func() []string {
		a := []string{"--listen", "/ip4/127.0.0.1/tcp/0"}
		if lab != nil {
			a = append(a, "--listen", "/ip4/"+lab.hostIP+"/tcp/0")
		}
		return a
	}

	boot, err := cl.Start(ctx, "p00", append(hostListen(), "--provider", "--executors", "wasm")...)
	if err != nil {
		t.Fatal(err)
	}
	bid, err := boot.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bootAddr, labBoot := bid.Addrs[0], ""
	for _, a := range bid.Addrs {
		if lab != nil && strings.Contains(a, "/"+lab.hostIP+"/") {
			labBoot = a
		}
		if strings.Contains(a, "/127.0.0.1/") {
			bootAddr = a
		}
	}
	var victims []*cluster.Node
	for i := 1; i < sz.providers; i++ {
		p, err := cl.Start(ctx, fmt.Sprintf("p%02d", i), "--provider", "--executors", "wasm", "--bootstrap", bootAddr)
		if err != nil {
			t.Fatal(err)
		}
		victims = append(victims, p)
	}
	var nsProv *cluster.Node
	if lab != nil && labBoot != "" {
		nsProv, err = cl.StartWrapped(ctx, []string{"ip", "netns", "exec", lab.ns}, "pns",
			"--listen", "/ip4/"+lab.insideIP+"/tcp/0", "--provider", "--executors", "wasm", "--bootstrap", labBoot)
		if err != nil {
			t.Fatal(err)
		}
	}
	req, err := cl.Start(ctx, "req", append(hostListen(), "--bootstrap", bootAddr)...)
	if err != nil {
		t.Fatal(err)
	}
	want := sz.providers
	if nsProv != nil {
		want++
	}
	waitPool(t, ctx, req, want)
	out, err := cl.CLI(ctx, req.Home, "add", wasm, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var added struct{ CID string }
	if err := json.Unmarshal(out, &added); err != nil || added.CID == "" {
		t.Fatalf("add: %v %s", err, out)
	}

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	submitted := map[string]bool{}
	submit := func(n int) {
		c, err := req.Client()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			cmd := []string{"sleep", fmt.Sprintf("%dms", 200+rng.Intn(1300))}
			if i%3 == 0 {
				cmd = []string{"echo", "hi"}
			}
			task, err := c.Submit(ctx, client.TaskSpec{Runtime: "wasm", Image: added.CID, Cmd: cmd, TimeoutMS: 30_000, Retries: 3})
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			submitted[task.ID] = true
		}
	}

	first := sz.tasks / 2
	submit(first)
	time.Sleep(1500 * time.Millisecond)
	// A third of the providers, never the bootstrap node.
	rng.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
	kill := max(sz.providers/3, 1)
	for _, p := range victims[:kill] {
		t.Logf("chaos: SIGKILL provider %s", p.Name)
		p.Kill()
	}
	if nsProv != nil {
		time.Sleep(500 * time.Millisecond)
		t.Logf("chaos: cutting provider %s off (veth %s down)", nsProv.Name, lab.hostIf)
		if err := lab.cut(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	t.Logf("chaos: SIGKILL requestor")
	req.Kill()
	time.Sleep(500 * time.Millisecond)
	if err := req.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("chaos: requestor restarted")
	submit(sz.tasks - first)

	// Wait until every task ends, or the deadline.
	c, err := req.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitStart := time.Now()
	deadline := waitStart.Add(sz.deadline)
	for time.Now().Before(deadline) {
		ts, err := c.List(ctx)
		if err == nil && allEnded(ts, submitted) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("chaos: waited %s after the last submission", time.Since(waitStart).Round(100*time.Millisecond))

	// The verdict comes from the CLI a user would run.
	out, err = cl.CLI(ctx, req.Home, "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []client.Task
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("list --json: %v", err)
	}
	byID := map[string]client.Task{}
	for _, task := range list {
		byID[task.ID] = task
	}
	completed, failed, lost := 0, 0, 0
	reasons := map[string]int{}
	var lostWhy []string
	for id := range submitted {
		task, ok := byID[id]
		switch {
		case !ok:
			lost++
			lostWhy = append(lostWhy, id+": missing from offload list")
		case task.State == "completed":
			completed++
		case task.State == "failed" || task.State == "canceled":
			why := task.Error
			if why == "" {
				why = task.Reason
			}
			if why == "" {
				lost++
				lostWhy = append(lostWhy, id+": failed without a reason")
				continue
			}
			failed++
			reasons[shorten(why)]++
		default:
			lost++
			lostWhy = append(lostWhy, fmt.Sprintf("%s: still %s after the deadline (%s)", id, task.State, task.Reason))
		}
	}
	t.Logf("chaos: submitted %d, completed %d, failed %d, lost %d (providers %d, killed %d, cut %v, requestor killed and restarted)",
		len(submitted), completed, failed, lost, want, kill, nsProv != nil)
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("chaos: failed %d x %s", reasons[k], k)
	}
	if lost > 0 {
		sort.Strings(lostWhy)
		t.Errorf("chaos: %d tasks lost:\n%s", lost, strings.Join(lostWhy, "\n"))
	}
}

func allEnded(ts []client.Task, ids map[string]bool) bool {
	n := 0
	for _, task := range ts {
		if ids[task.ID] {
			if !task.Terminal() {
				return false
			}
			n++
		}
	}
	return n == len(ids)
}

// shorten keeps a failure reason short enough to group by, without task
// ids or peer ids.
func shorten(s string) string {
	f := strings.Fields(s)
	for i, w := range f {
		if len(w) > 20 {
			f[i] = "…"
		}
	}
	s = strings.Join(f, " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func waitPool(t *testing.T, ctx context.Context, n *cluster.Node, want int) {
	t.Helper()
	c, err := n.Client()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ps, err := c.Pool(ctx, client.PoolFilter{})
		if err == nil && len(ps) >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s sees %d providers, want %d (err %v)", n.Name, len(ps), want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
