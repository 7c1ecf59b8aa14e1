//go:build linux

package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
)

// The NAT lab: network namespaces the test creates (as root) and deletes.
//
//	                      pub (the "internet", forwarding)
//	  7.77.0.1  offload bootstrap + relay node (--reachability public)
//	  7.77.0.2-5 plain IPFS nodes (DHT servers; they also let the nodes
//	             behind NAT learn their public address: libp2p believes an
//	             observed address once 4 peers on distinct IPs report it)
//	      |7.77.1.0/24           |7.77.2.0/24            |7.77.3.0/24
//	    router A               router B                router C
//	    masquerade             masquerade              masquerade random
//	      |192.168.1.0/24        |192.168.2.0/24         |192.168.3.0/24
//	    provider               requestor B             requestor C
//
// Each router is a home router: it masquerades what leaves its LAN and
// drops every packet from the WAN that is not part of a connection its LAN
// opened (conntrack established/related). Router C maps every connection
// to a random port, so hole punching through it fails and C's traffic
// must stay on the relay. The 7.77.0.0/16 addresses look public to libp2p
// (which runs AutoNAT, relays and hole punching only for public
// addresses); they exist only inside these namespaces, which have no link
// to the machine's own network: nothing leaves the lab.

// labNode is a process running in one of the lab's namespaces.
type labNode struct {
	name, ns, home string
	cmd            *exec.Cmd
	logPath        string
	stdin          io.WriteCloser // plainipfsd stops when it closes
	exited         chan struct{}
}

type natLab struct {
	t      *testing.T
	id     string
	dir    string
	plain  string // plainipfsd binary
	ns     map[string]string
	procs  []*labNode
	procMu sync.Mutex
}

var labSeq atomic.Int32

// newNATLab builds the namespaces, or skips the test when it cannot (not
// root, no ip or nft): never under CI=true, where it fails instead.
func newNATLab(t *testing.T) *natLab {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "the NAT lab needs root (network namespaces, nftables)"
	default:
		for _, tool := range []string{"ip", "nft"} {
			if _, err := exec.LookPath(tool); err != nil {
				why = "the NAT lab needs the " + tool + " command"
			}
		}
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why + " (CI=true: not skipped)")
		}
		t.Skip(why)
	}
	if out, _ := exec.Command("ip", "-o", "addr").Output(); strings.Contains(string(out), " 7.77.") {
		t.Fatal("7.77.0.0/16 is configured on this machine's own interfaces; the lab would shadow it")
	}
	lab := &natLab{t: t, id: fmt.Sprintf("%d%d", os.Getpid()%10000, labSeq.Add(1)), dir: t.TempDir(), ns: map[string]string{}}
	for _, role := range []string{"pub", "ra", "rb", "rc", "a", "b", "c"} {
		lab.ns[role] = "olab" + lab.id + role
	}
	t.Cleanup(lab.close)
	for _, ns := range lab.ns {
		lab.ip("netns", "add", ns)
		lab.ip("-n", ns, "link", "set", "lo", "up")
	}
	// The internet: the public nodes' addresses sit on its loopback
	// interface (this kernel may lack the dummy link type).
	for i := 1; i <= 5; i++ {
		lab.ip("-n", lab.ns["pub"], "addr", "add", fmt.Sprintf("7.77.0.%d/32", i), "dev", "lo")
	}
	lab.sysctl("pub", "net.ipv4.ip_forward=1")
	for i, site := range []string{"a", "b", "c"} {
		n := i + 1
		router := "r" + site
		lab.veth("pub", fmt.Sprintf("to%s", site), fmt.Sprintf("7.77.%d.1/24", n), router, "wan", fmt.Sprintf("7.77.%d.2/24", n))
		lab.veth(router, "lan", fmt.Sprintf("192.168.%d.1/24", n), site, "eth0", fmt.Sprintf("192.168.%d.2/24", n))
		lab.ip("-n", lab.ns[router], "route", "add", "default", "via", fmt.Sprintf("7.77.%d.1", n))
		lab.ip("-n", lab.ns[site], "route", "add", "default", "via", fmt.Sprintf("192.168.%d.1", n))
		lab.sysctl(router, "net.ipv4.ip_forward=1")
		masq := "masquerade"
		if site == "c" {
			masq = "masquerade random"
		}
		lab.nft(router, `table inet home {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "lan" oifname "wan" accept
	}
	chain input {
		type filter hook input priority 0; policy drop;
		ct state established,related accept
		iifname "lo" accept
		iifname "lan" accept
	}
}
table ip nat {
	chain postrouting {
		type nat hook postrouting priority 100;
		oifname "wan" `+masq+`
	}
}
`)
	}
	lab.plain = filepath.Join(lab.dir, "plainipfsd")
	if out, err := exec.Command("go", "build", "-o", lab.plain, "../../internal/plainipfs/plainipfsd").CombinedOutput(); err != nil {
		t.Fatalf("build plainipfsd: %v\n%s", err, out)
	}
	return lab
}

func (l *natLab) run(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (l *natLab) ip(args ...string) { l.t.Helper(); l.run("ip", args...) }

func (l *natLab) sysctl(role, kv string) {
	l.t.Helper()
	l.run("ip", "netns", "exec", l.ns[role], "sysctl", "-q", "-w", kv)
}

func (l *natLab) nft(role, rules string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns[role], "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("nft in %s: %v\n%s", role, err, out)
	}
}

// veth links namespace roles r1 and r2 with a veth pair named n1 and n2
// inside them, addressed a1 and a2.
func (l *natLab) veth(r1, n1, a1, r2, n2, a2 string) {
	l.t.Helper()
	tmp1, tmp2 := "ol"+l.id+"x"+r1+n1, "ol"+l.id+"y"+r2+n2
	tmp1, tmp2 = tmp1[:min(len(tmp1), 15)], tmp2[:min(len(tmp2), 15)]
	l.ip("link", "add", tmp1, "type", "veth", "peer", "name", tmp2)
	l.ip("link", "set", tmp1, "netns", l.ns[r1])
	l.ip("link", "set", tmp2, "netns", l.ns[r2])
	l.ip("-n", l.ns[r1], "link", "set", tmp1, "name", n1)
	l.ip("-n", l.ns[r2], "link", "set", tmp2, "name", n2)
	l.ip("-n", l.ns[r1], "addr", "add", a1, "dev", n1)
	l.ip("-n", l.ns[r2], "addr", "add", a2, "dev", n2)
	l.ip("-n", l.ns[r1], "link", "set", n1, "up")
	l.ip("-n", l.ns[r2], "link", "set", n2, "up")
}

func (l *natLab) close() {
	l.procMu.Lock()
	procs := l.procs
	l.procMu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	for _, ns := range l.ns {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	if keep := os.Getenv("OFFLOAD_NATLAB_LOGS"); keep != "" {
		os.MkdirAll(keep, 0o755)
		for _, p := range procs {
			if b, err := os.ReadFile(p.logPath); err == nil {
				_ = os.WriteFile(filepath.Join(keep, p.name+".log"), b, 0o644)
			}
		}
	}
	if l.t.Failed() {
		for _, p := range procs {
			b, _ := os.ReadFile(p.logPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			l.t.Logf("--- %s log (tail) ---\n%s", p.name, b)
		}
	}
}

func (p *labNode) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (l *natLab) start(name, role string, stdin bool, prog string, args ...string) *labNode {
	l.t.Helper()
	p := &labNode{name: name, ns: l.ns[role], logPath: filepath.Join(l.dir, name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", p.ns, prog}, args...)...)
	p.cmd.Stderr = logf
	if stdin {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			l.t.Fatal(err)
		}
	} else {
		p.cmd.Stdout = logf
	}
	return l.launch(p, logf)
}

func (l *natLab) launch(p *labNode, logf *os.File) *labNode {
	l.t.Helper()
	var out io.ReadCloser
	if p.stdin != nil {
		var err error
		if out, err = p.cmd.StdoutPipe(); err != nil {
			l.t.Fatal(err)
		}
	}
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	l.procMu.Lock()
	l.procs = append(l.procs, p)
	l.procMu.Unlock()
	if out != nil {
		// plainipfsd prints its addresses, then "ready".
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				break
			}
			fmt.Fprintln(logf, sc.Text())
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
	}
	return p
}

// node starts `offload node` in role's namespace and waits for its API.
func (l *natLab) node(name, role string, args ...string) *labNode {
	l.t.Helper()
	home := filepath.Join(l.dir, name)
	if out, err := exec.Command(bin, "init", "--home", home).CombinedOutput(); err != nil {
		l.t.Fatalf("init %s: %v\n%s", name, err, out)
	}
	all := append([]string{"node", "--home", home, "--api", "127.0.0.1:0", "--log-level", "debug"}, args...)
	p := l.start(name, role, false, bin, all...)
	p.home = home
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(home, client.APIFile)); err == nil {
			return p
		}
		select {
		case <-p.exited:
			l.t.Fatalf("node %s exited before it was ready", name)
		default:
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("node %s did not start within 30 s", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cli runs an offload command against p's node, inside p's namespace
// (the API listens on that namespace's loopback).
func (l *natLab) cli(ctx context.Context, p *labNode, args ...string) ([]byte, error) {
	all := append([]string{"netns", "exec", p.ns, bin, args[0], "--home", p.home}, args[1:]...)
	cmd := exec.CommandContext(ctx, "ip", all...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("offload %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func (l *natLab) identity(p *labNode) client.Identity {
	l.t.Helper()
	out, err := l.cli(l.t.Context(), p, "id", "--json")
	if err != nil {
		l.t.Fatal(err)
	}
	var id client.Identity
	if err := json.Unmarshal(out, &id); err != nil {
		l.t.Fatalf("id --json: %v: %s", err, out)
	}
	return id
}

// waitReachability waits until p's node says it is want.
func (l *natLab) waitReachability(p *labNode, want string, d time.Duration) {
	l.t.Helper()
	start := time.Now()
	for {
		id := l.identity(p)
		if id.Reachability == want {
			return
		}
		if time.Since(start) > d {
			l.t.Fatalf("%s: reachability %q after %s, want %q (addrs %v)", p.name, id.Reachability, d, want, id.Addrs)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// peerAddrs returns the addresses of p's connections to peer id.
func (l *natLab) peerAddrs(p *labNode, id string) []string {
	l.t.Helper()
	out, err := l.cli(l.t.Context(), p, "peers", "--json")
	if err != nil {
		l.t.Fatal(err)
	}
	var peers []client.Peer
	if err := json.Unmarshal(out, &peers); err != nil {
		l.t.Fatalf("peers --json: %v: %s", err, out)
	}
	for _, x := range peers {
		if x.ID == id {
			return x.Addrs
		}
	}
	return nil
}

// waitPeer waits until p's node is connected to peer id.
func (l *natLab) waitPeer(p *labNode, id string, d time.Duration) {
	l.t.Helper()
	start := time.Now()
	for len(l.peerAddrs(p, id)) == 0 {
		if time.Since(start) > d {
			l.t.Fatalf("%s did not connect to %s within %s", p.name, id, d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// publicNet starts the public side: the bootstrap/relay offload node (with
// relayArgs) and four plain IPFS nodes; it returns the bootstrap flags for
// the nodes behind NAT.
func (l *natLab) publicNet(relayArgs ...string) (*labNode, []string) {
	l.t.Helper()
	relay := l.node("relay", "pub", append([]string{"--listen", "/ip4/7.77.0.1/tcp/4001", "--listen", "/ip4/7.77.0.1/udp/4001/quic-v1",
		"--reachability", "public"}, relayArgs...)...)
	rid := l.identity(relay)
	// Both transports of every public node: libp2p dials QUIC first, and
	// UDP hole punching needs observed QUIC addresses.
	boot := []string{"--bootstrap", "/ip4/7.77.0.1/tcp/4001/p2p/" + rid.ID, "--bootstrap", "/ip4/7.77.0.1/udp/4001/quic-v1/p2p/" + rid.ID}
	for i := 2; i <= 5; i++ {
		ma := fmt.Sprintf("/ip4/7.77.0.%d/tcp/4001", i)
		p := l.start(fmt.Sprintf("ipfs%d", i), "pub", true, l.plain, "-listen", ma,
			"-listen", fmt.Sprintf("/ip4/7.77.0.%d/udp/4001/quic-v1", i), "-bootstrap", boot[1])
		b, _ := os.ReadFile(p.logPath)
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, fmt.Sprintf("/ip4/7.77.0.%d/", i)) {
				boot = append(boot, "--bootstrap", line)
				n++
			}
		}
		if n == 0 {
			l.t.Fatalf("plain IPFS node %d printed no address:\n%s", i, b)
		}
	}
	return relay, boot
}

// unlimitedRelay are the flags of a relay whose operator lets content
// through it.
var unlimitedRelay = []string{"--relay-max-data", "none", "--relay-max-duration", "none"}

// natListen are the listen addresses of a node behind NAT.
var natListen = []string{"--listen", "/ip4/0.0.0.0/tcp/4001", "--listen", "/ip4/0.0.0.0/udp/4001/quic-v1"}

// labTransfer is what one requestor measured.
type labTransfer struct {
	site      string
	task      time.Duration // submit to completed (10 MB in, 10 MB out)
	results   time.Duration // fetching the 10 MB output
	direct    bool          // the requestor-provider connection at the end
	connAddrs []string
}

// runTransfer runs, from requestor req, a task on the provider that copies
// a 10 MB input to a 10 MB output, fetches the output and checks it.
func (l *natLab) runTransfer(ctx context.Context, site string, req *labNode, provID, mod string) (labTransfer, error) {
	res := labTransfer{site: site}
	dir := filepath.Join(l.dir, "in-"+site)
	os.MkdirAll(dir, 0o755)
	data := make([]byte, 10<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "big"), data, 0o644); err != nil {
		return res, err
	}
	out, err := l.cli(ctx, req, "add", dir, "--json")
	if err != nil {
		return res, err
	}
	var added struct{ CID string }
	if err := json.Unmarshal(out, &added); err != nil {
		return res, fmt.Errorf("add --json: %w: %s", err, out)
	}
	start := time.Now()
	out, err = l.cli(ctx, req, "run", "--wait", "--json", "--runtime", "wasm", "--image", mod, "--timeout", "5m",
		"--input", added.CID+":/inputs/d", "--", "copy", "/inputs/d/big", "/outputs/big")
	var task client.Task
	if jerr := json.Unmarshal(out, &task); jerr != nil {
		return res, fmt.Errorf("run: %v %v: %s", err, jerr, out)
	}
	if task.State != "completed" {
		return res, fmt.Errorf("task %s on %s: %s (%s)", task.ID, task.Provider, task.State, task.Error)
	}
	if task.Provider != provID {
		return res, fmt.Errorf("task ran on %s, not the provider %s", task.Provider, provID)
	}
	res.task = time.Since(start)
	start = time.Now()
	dest := filepath.Join(l.dir, "out-"+site)
	if _, err := l.cli(ctx, req, "results", task.ID, "-o", dest); err != nil {
		return res, err
	}
	res.results = time.Since(start)
	got, err := os.ReadFile(filepath.Join(dest, "big"))
	if err != nil {
		return res, err
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return res, fmt.Errorf("the output differs from the input (%d bytes)", len(got))
	}
	res.direct, res.connAddrs = l.direct(req, provID)
	return res, nil
}

// direct says whether p's node has a direct (not relayed) connection to
// peer id, and lists its connections' addresses.
func (l *natLab) direct(p *labNode, id string) (bool, []string) {
	addrs := l.peerAddrs(p, id)
	for _, a := range addrs {
		if !strings.Contains(a, "/p2p-circuit") {
			return true, addrs
		}
	}
	return false, addrs
}

// TestNATLab: a provider behind one home NAT, a requestor behind another
// and a second requestor behind a NAT with random port mapping meet
// through a public bootstrap/relay node; each requestor runs a task that
// moves 10 MB to the provider and 10 MB back. Both tasks must complete;
// the test reports whether each connection ended direct (hole punched) or
// relayed, and how long things took.
func TestNATLab(t *testing.T) {
	lab := newNATLab(t)
	mod := testimage.BuildWASM(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	started := time.Now()
	// The operator of this relay lets content through it: no limits, so
	// relayed connections are ordinary ones (see p2p.RelayLimits).
	relay, boot := lab.publicNet(unlimitedRelay...)
	prov := lab.node("provider", "a", append(append([]string{"--provider", "--executors", "wasm"}, natListen...), boot...)...)
	reqB := lab.node("requestor-b", "b", append(append([]string{}, natListen...), boot...)...)
	reqC := lab.node("requestor-c", "c", append(append([]string{}, natListen...), boot...)...)
	if r := lab.identity(relay).Reachability; r != "public" {
		t.Errorf("relay node reachability %q, want public", r)
	}
	for _, p := range []*labNode{prov, reqB, reqC} {
		lab.waitReachability(p, "relayed", 60*time.Second)
		t.Logf("%s relayed %s after the lab's nodes started (AutoNAT, then a relay reservation)", p.name, time.Since(started).Round(100*time.Millisecond))
	}
	provID := lab.identity(prov).ID
	for _, p := range []*labNode{reqB, reqC} {
		lab.waitPeer(p, provID, 30*time.Second)
		t.Logf("%s connected to the provider %s after the lab's nodes started", p.name, time.Since(started).Round(100*time.Millisecond))
	}
	mods := map[string]string{}
	for _, p := range []*labNode{reqB, reqC} {
		out, err := lab.cli(ctx, p, "add", mod, "--json", "--cid-version", "1")
		if err != nil {
			t.Fatal(err)
		}
		var added struct{ CID string }
		if err := json.Unmarshal(out, &added); err != nil {
			t.Fatal(err)
		}
		mods[p.name] = added.CID
	}
	var wg sync.WaitGroup
	results := make([]labTransfer, 2)
	errs := make([]error, 2)
	for i, site := range []struct {
		name string
		req  *labNode
	}{{"b", reqB}, {"c", reqC}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = lab.runTransfer(ctx, site.name, site.req, provID, mods[site.req.name])
		}()
	}
	wg.Wait()
	// Hole punching runs beside the relayed connection and may end after
	// the task: give it a few seconds before saying how the sites ended.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if d, _ := lab.direct(reqB, provID); d {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for i, req := range []*labNode{reqB, reqC} {
		results[i].direct, results[i].connAddrs = lab.direct(req, provID)
	}
	for i, r := range results {
		if errs[i] != nil {
			t.Errorf("requestor %s: %v", r.site, errs[i])
			continue
		}
		how := "relayed"
		if r.direct {
			how = "direct (hole punched)"
		}
		t.Logf("requestor %s: task with 10 MB in and 10 MB out completed in %s; output fetched in %s (%.1f MB/s); connection to the provider at the end: %s %v",
			r.site, r.task.Round(10*time.Millisecond), r.results.Round(10*time.Millisecond), 10.0*(1<<20)/1e6/r.results.Seconds(), how, r.connAddrs)
	}
	t.Logf("lab total %s", time.Since(started).Round(100*time.Millisecond))
}

// TestNATLabLimitedRelay: with a relay at its default limits (2 minutes and
// 1 MiB each way per relayed connection), bids and awards cross the relay
// and content waits for hole punching: a requestor behind one home NAT
// runs a task moving 10 MB each way on a provider behind another, over the
// direct connection hole punching made. (Behind a random-port NAT, where
// hole punching fails, content cannot move through a limited relay: the
// README says so; TestNATLab covers an unlimited relay.)
func TestNATLabLimitedRelay(t *testing.T) {
	lab := newNATLab(t)
	mod := testimage.BuildWASM(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	started := time.Now()
	_, boot := lab.publicNet()
	prov := lab.node("provider", "a", append(append([]string{"--provider", "--executors", "wasm"}, natListen...), boot...)...)
	req := lab.node("requestor-b", "b", append(append([]string{}, natListen...), boot...)...)
	provID := lab.identity(prov).ID
	lab.waitPeer(req, provID, 45*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		direct, addrs := lab.direct(req, provID)
		if direct {
			t.Logf("hole punched %s after start: %v", time.Since(started).Round(100*time.Millisecond), addrs)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no direct connection 20 s after meeting through a limited relay: %v", addrs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	out, err := lab.cli(ctx, req, "add", mod, "--json", "--cid-version", "1")
	if err != nil {
		t.Fatal(err)
	}
	var added struct{ CID string }
	if err := json.Unmarshal(out, &added); err != nil {
		t.Fatal(err)
	}
	r, err := lab.runTransfer(ctx, "b", req, provID, added.CID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("task with 10 MB in and 10 MB out completed in %s; connection at the end: direct=%v %v; lab total %s",
		r.task.Round(10*time.Millisecond), r.direct, r.connAddrs, time.Since(started).Round(100*time.Millisecond))
}

// TestNATLabBench measures the lab (OFFLOAD_NATLAB=bench, `make natlab`):
// five times, a fresh provider behind NAT A and a fresh requestor behind
// NAT B start and the requestor submits a small task at once, again until
// one completes: the time from the nodes' start to that first completed
// task, and to their meeting; then the throughput of a 32 MiB fetch from
// the provider to a requestor over a hole-punched connection (B) and over
// the relay (C, random port mapping).
func TestNATLabBench(t *testing.T) {
	if os.Getenv("OFFLOAD_NATLAB") != "bench" {
		t.Skip("a benchmark: OFFLOAD_NATLAB=bench (make natlab)")
	}
	lab := newNATLab(t)
	mod := testimage.BuildWASM(t)
	_, boot := lab.publicNet(unlimitedRelay...)
	var firsts, meets []time.Duration
	for round := range 5 {
		started := time.Now()
		prov := lab.node(fmt.Sprintf("provider%d", round), "a", append(append([]string{"--provider", "--executors", "wasm"}, natListen...), boot...)...)
		req := lab.node(fmt.Sprintf("requestor%d", round), "b", append(append([]string{}, natListen...), boot...)...)
		provID := lab.identity(prov).ID
		out, err := lab.cli(t.Context(), req, "add", mod, "--json", "--cid-version", "1")
		if err != nil {
			t.Fatal(err)
		}
		var added struct{ CID string }
		if err := json.Unmarshal(out, &added); err != nil {
			t.Fatal(err)
		}
		var met time.Duration
		done := make(chan struct{})
		go func() {
			defer close(done)
			for time.Since(started) < 2*time.Minute {
				if len(lab.peerAddrs(req, provID)) > 0 {
					met = time.Since(started)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		tries := 0
		var first time.Duration
		for time.Since(started) < 2*time.Minute {
			tries++
			out, _ := lab.cli(t.Context(), req, "run", "--wait", "--json", "--runtime", "wasm", "--image", added.CID, "--", "echo", "hi")
			var task client.Task
			if json.Unmarshal(out, &task) == nil && task.State == "completed" {
				first = time.Since(started)
				break
			}
		}
		<-done
		if first == 0 {
			t.Fatalf("round %d: no task completed within 2 minutes of the nodes' start", round)
		}
		t.Logf("round %d: met after %s, first task completed %s after start (%d submissions)", round, met.Round(100*time.Millisecond), first.Round(100*time.Millisecond), tries)
		firsts, meets = append(firsts, first), append(meets, met)
		req.stop()
		prov.stop()
	}
	t.Logf("start to first completed task across two NATs: median %s of %v", median(firsts), firsts)
	t.Logf("start to meeting: median %s of %v", median(meets), meets)

	// Throughput: a published 32 MiB file fetched from the provider by a
	// requestor with a direct connection and by one behind the relay.
	prov := lab.node("provider-tp", "a", append(append([]string{"--provider", "--executors", "wasm"}, natListen...), boot...)...)
	reqB := lab.node("requestor-b-tp", "b", append(append([]string{}, natListen...), boot...)...)
	reqC := lab.node("requestor-c-tp", "c", append(append([]string{}, natListen...), boot...)...)
	provID := lab.identity(prov).ID
	src := filepath.Join(lab.dir, "tp.bin")
	data := make([]byte, 32<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := lab.cli(t.Context(), prov, "add", src, "--json", "--public")
	if err != nil {
		t.Fatal(err)
	}
	var added struct{ CID string }
	if err := json.Unmarshal(out, &added); err != nil {
		t.Fatal(err)
	}
	for _, req := range []*labNode{reqB, reqC} {
		lab.waitPeer(req, provID, time.Minute)
	}
	// B: wait for the hole punch (up to 30 s); C stays relayed.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if d, _ := lab.direct(reqB, provID); d {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, req := range []*labNode{reqB, reqC} {
		direct, addrs := lab.direct(req, provID)
		start := time.Now()
		if _, err := lab.cli(t.Context(), req, "get", added.CID, "-o", filepath.Join(lab.dir, "got-"+req.name)); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		t.Logf("%s: 32 MiB fetched in %s = %.1f MiB/s, direct=%v %v", req.name, d.Round(time.Millisecond), 32/d.Seconds(), direct, addrs)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(100 * time.Millisecond)
}
