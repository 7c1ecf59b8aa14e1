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
	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/market/wire"
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
// SIGKILLed, (as root) one provider inside a network namespace of the
// test's own is cut off, and the requestor is SIGKILLed and restarted.
// Every submitted task must end completed, or failed with a reason; none
// may be lost (missing from `offload list`, stuck non-terminal past the
// deadline, or failed without a reason). Each provider fault is made only
// while the provider runs a task, and must hit at least one: every task it
// hit must complete on another provider (a failover in its executions).
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
	logNames := []string{"req", "p00"} // and each provider a fault hit
	defer func() {
		cl.Close()
		if t.Failed() {
			for _, name := range logNames {
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
			// A listen address beyond loopback turns NAT traversal on, and
			// its UPnP/NAT-PMP port mapping would send to the machine's
			// own network: these nodes stay off it.
			a = append(a, "--listen", "/ip4/"+lab.hostIP+"/tcp/0", "--no-nat")
		}
		return a
	}

	// The providers a fault will hit (a third of them, never the bootstrap
	// node, and the one in the namespace) ask the lowest price: the
	// requestor, choosing the cheapest bid, gives them work first, whatever
	// the number of cores; failover goes to the dearer rest.
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kill := max(sz.providers/3, 1)
	doomed := map[int]bool{}
	for _, i := range rng.Perm(sz.providers - 1)[:kill] {
		doomed[i+1] = true
	}
	const cheap, dear = "0.01", "0.02"
	boot, err := cl.Start(ctx, "p00", append(hostListen(), "--provider", "--executors", "wasm", "--price", dear)...)
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
	provs := []*cluster.Node{boot}
	var victims []*cluster.Node // to be SIGKILLed
	for i := 1; i < sz.providers; i++ {
		price := dear
		if doomed[i] {
			price = cheap
		}
		p, err := cl.Start(ctx, fmt.Sprintf("p%02d", i), "--provider", "--executors", "wasm", "--price", price, "--bootstrap", bootAddr)
		if err != nil {
			t.Fatal(err)
		}
		provs = append(provs, p)
		if doomed[i] {
			victims = append(victims, p)
		}
	}
	var nsProv *cluster.Node
	if lab != nil && labBoot != "" {
		nsProv, err = cl.StartWrapped(ctx, []string{"ip", "netns", "exec", lab.ns}, "pns",
			"--listen", "/ip4/"+lab.insideIP+"/tcp/0", "--provider", "--executors", "wasm", "--price", cheap, "--bootstrap", labBoot)
		if err != nil {
			t.Fatal(err)
		}
		logNames = append(logNames, nsProv.Name)
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

	submitted := map[string]bool{}
	runs := map[string]time.Duration{} // how long each task's command sleeps (0 for echo)
	// submit sends n tasks: a third echo, the rest sleep between minMS and
	// minMS+spanMS milliseconds.
	submit := func(n, minMS, spanMS int) {
		c, err := req.Client()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			d := time.Duration(minMS+rng.Intn(spanMS)) * time.Millisecond
			cmd := []string{"sleep", d.String()}
			if i%3 == 0 {
				cmd, d = []string{"echo", "hi"}, 0
			}
			task, err := c.Submit(ctx, client.TaskSpec{Runtime: "wasm", Image: added.CID, Cmd: cmd, TimeoutMS: 30_000, Retries: wire.Retries(3)})
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			submitted[task.ID], runs[task.ID] = true, d
		}
	}

	// Peer IDs, to tell from the requestor's task list which provider
	// runs what. The provider in the namespace has its API on its own
	// loopback: it is found in the requestor's pool by its address.
	peerOf, nodeOf := map[string]string{}, map[string]string{}
	for _, p := range provs {
		id, err := p.Identity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		peerOf[p.Name], nodeOf[id.ID] = id.ID, p.Name
	}
	c, err := req.Client()
	if err != nil {
		t.Fatal(err)
	}
	if nsProv != nil {
		ps, err := c.Pool(ctx, client.PoolFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			for _, a := range p.Addrs {
				if strings.Contains(a, "/"+lab.insideIP+"/") {
					peerOf[nsProv.Name] = p.Peer
				}
			}
		}
		if peerOf[nsProv.Name] == "" {
			t.Fatalf("no provider in the requestor's pool has an address in the namespace (%s)", lab.insideIP)
		}
		nodeOf[peerOf[nsProv.Name]] = nsProv.Name
	}

	// The first half runs long enough (1-3 s a sleep) that each fault can
	// land on a provider while it runs a task, and each fault waits for
	// that: a doomed provider is SIGKILLed, and the namespaced one cut off,
	// only once the requestor lists a task running there that cannot have
	// ended for hitMargin yet. A provider reports "running" just before it
	// starts the command, so the command started no earlier than the last
	// poll that still saw the attempt "awarded" (or its award, when no poll
	// did), and ends no earlier than that plus its sleep. Should every
	// task end first, more are submitted.
	first := sz.tasks / 2
	firstAt := time.Now()
	submit(first, 1000, 2000)
	const hitMargin = 500 * time.Millisecond
	type fault struct {
		what, node, peer string
		tasks            []string // running on the provider when it was hit
	}
	var faults []fault
	killed, cut := 0, nsProv == nil
	awardedAt := map[string]time.Time{} // task/provider/attempt: last poll that saw it awarded, not yet running
	faultsDone := testwait.Until(ctx, time.Minute, 20*time.Millisecond, func() bool {
		polled := time.Now()
		ts, err := c.List(ctx)
		if err != nil {
			return false
		}
		now := time.Now()
		running, safe := map[string][]string{}, map[string]bool{}
		open := 0
		for _, task := range ts {
			if !submitted[task.ID] {
				continue
			}
			if !task.Terminal() {
				open++
			}
			key := fmt.Sprintf("%s/%s/%d", task.ID, task.Provider, task.Attempt)
			if task.State == "awarded" {
				awardedAt[key] = polled
			}
			if task.State != "running" || task.Provider == "" {
				continue
			}
			running[task.Provider] = append(running[task.Provider], task.ID)
			for _, e := range task.Executions {
				if e.Provider != task.Provider || e.Attempt != task.Attempt {
					continue
				}
				started := e.AwardedAt
				if t0, ok := awardedAt[key]; ok && t0.After(started) {
					started = t0
				}
				if started.Add(runs[task.ID]).Sub(now) > hitMargin {
					safe[task.Provider] = true
				}
			}
		}
		for _, p := range victims {
			id := peerOf[p.Name]
			if killed < kill && p.Running() && safe[id] {
				t.Logf("chaos: SIGKILL provider %s while it runs %s", p.Name, tasksOf(running[id]))
				p.Kill()
				faults = append(faults, fault{what: "SIGKILL", node: p.Name, peer: id, tasks: running[id]})
				logNames = append(logNames, p.Name)
				killed++
			}
		}
		if !cut && safe[peerOf[nsProv.Name]] {
			id := peerOf[nsProv.Name]
			t.Logf("chaos: cutting provider %s off (veth %s down) while it runs %s", nsProv.Name, lab.hostIf, tasksOf(running[id]))
			if err := lab.cut(); err != nil {
				t.Fatal(err)
			}
			faults = append(faults, fault{what: "cut", node: nsProv.Name, peer: id, tasks: running[id]})
			cut = true
		}
		if killed == kill && cut {
			return true
		}
		if open == 0 {
			t.Logf("chaos: every task ended before the faults were made (%d of %d SIGKILLs to go, cut to go: %v); submitting %d more", kill-killed, kill, !cut, want)
			submit(want, 1000, 2000)
		}
		return false
	})
	if !faultsDone {
		t.Fatalf("chaos: no running task to hit within a minute (%d of %d SIGKILLs to go, cut to go: %v)", kill-killed, kill, !cut)
	}
	t.Logf("chaos: faults made within %s of the first submission", time.Since(firstAt).Round(100*time.Millisecond))

	// The requestor dies at once, while the tasks it had awarded to the
	// dead providers are still recorded as running there: once restarted,
	// it must notice from its own records that they went silent.
	inFlight := 0
	if ts, err := c.List(ctx); err == nil {
		for _, task := range ts {
			if submitted[task.ID] && !task.Terminal() {
				inFlight++
			}
		}
	}
	t.Logf("chaos: SIGKILL requestor with %d tasks in flight", inFlight)
	req.Kill()
	if err := req.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("chaos: requestor restarted")
	submit(sz.tasks-first, 200, 1300)

	// Wait until every task ends, or the deadline.
	c, err = req.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitStart := time.Now()
	testwait.Until(ctx, sz.deadline, 200*time.Millisecond, func() bool {
		ts, err := c.List(ctx)
		return err == nil && allEnded(ts, submitted)
	})
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
	// The slowest task, and where its time went.
	var slowest client.Task
	for id := range submitted {
		if task, ok := byID[id]; ok && task.UpdatedAt.Sub(task.CreatedAt) > slowest.UpdatedAt.Sub(slowest.CreatedAt) {
			slowest = task
		}
	}
	if slowest.ID != "" {
		var ex []string
		for _, e := range slowest.Executions {
			end := "-"
			if e.FinishedAt != nil {
				end = e.FinishedAt.Sub(slowest.CreatedAt).Round(100 * time.Millisecond).String()
			}
			ex = append(ex, fmt.Sprintf("attempt %d on %s: %s, awarded +%s, ended +%s", e.Attempt, nodeOf[e.Provider], e.State,
				e.AwardedAt.Sub(slowest.CreatedAt).Round(100*time.Millisecond), end))
		}
		t.Logf("chaos: slowest task %s (%s) took %s: %s", slowest.ID, slowest.State,
			slowest.UpdatedAt.Sub(slowest.CreatedAt).Round(100*time.Millisecond), strings.Join(ex, "; "))
	}
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

	// Each fault hit at least one task while it ran there, and every task
	// it hit failed over: its execution there did not complete, and the
	// task completed on another provider in a later attempt. A task that
	// finished there just before the fault is no hit.
	hits := 0
	for _, f := range faults {
		n := 0
		for _, id := range f.tasks {
			task := byID[id]
			there, elsewhere := -1, ""
			for _, e := range task.Executions {
				if e.Provider == f.peer && e.State != "completed" {
					there = e.Attempt
				}
			}
			for _, e := range task.Executions {
				if there >= 0 && e.Provider != f.peer && e.Attempt > there && e.State == "completed" {
					elsewhere = e.Provider
				}
			}
			switch {
			case there < 0:
				t.Logf("chaos: task %s finished on %s before the %s", id, f.node, f.what)
			case task.State == "completed" && elsewhere != "" && task.Provider == elsewhere:
				n++
			default:
				t.Errorf("chaos: the %s of %s hit task %s, which did not fail over: %s on %s (%s), executions %+v",
					f.what, f.node, id, task.State, task.Provider, task.Reason, task.Executions)
			}
		}
		t.Logf("chaos: %s of %s hit %d of the %d tasks running there; each failed over and completed on another provider", f.what, f.node, n, len(f.tasks))
		if n == 0 {
			t.Errorf("chaos: the %s of %s hit no running task (running there then: %v)", f.what, f.node, f.tasks)
		}
		hits += n
	}
	t.Logf("chaos: %d faults (%d SIGKILL, cut %v) hit %d running tasks, all of which failed over", len(faults), killed, nsProv != nil, hits)
}

// tasksOf says "1 task (ID)" or "n tasks (ID, ...)".
func tasksOf(ids []string) string {
	if len(ids) == 1 {
		return "1 task (" + ids[0] + ")"
	}
	return fmt.Sprintf("%d tasks (%s)", len(ids), strings.Join(ids, ", "))
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
	var ps []client.Provider
	if !testwait.Until(ctx, time.Minute, 50*time.Millisecond, func() bool {
		ps, err = c.Pool(ctx, client.PoolFilter{})
		return err == nil && len(ps) >= want
	}) {
		t.Fatalf("%s sees %d providers, want %d (err %v)", n.Name, len(ps), want, err)
	}
}
