package docker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/internal/testwait"
)

// getUntil GETs url until it answers or the deadline passes (the server in
// the container needs a moment to listen after its process started).
func getUntil(t *testing.T, url string, d time.Duration) string {
	t.Helper()
	var body string
	var err error
	if !testwait.Until(t.Context(), d, 50*time.Millisecond, func() bool {
		var resp *http.Response
		if resp, err = http.Get(url); err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return true
	}) {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body
}

func TestServiceOnInternalNetwork(t *testing.T) {
	e := newExecutor(t)
	id := taskID(t)
	netName := "offload-test-" + id[len(id)-8:]
	spec := executor.ServiceSpec{
		Spec:    executor.Spec{TaskID: id, Image: image, Cmd: []string{"serve", "8080", "svc-body"}},
		Network: netName, Aliases: []string{"web"}, Ports: []int{8080},
	}
	h, err := e.StartService(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			h.Stop()
		}
	})
	exists, internal, err := e.NetworkInternal(t.Context(), netName)
	if err != nil || !exists || !internal {
		t.Fatalf("network %s: exists=%v internal=%v err=%v", netName, exists, internal, err)
	}
	if _, err := h.Addr(t.Context(), 9999); !errors.Is(err, executor.ErrServiceNotFound) {
		t.Errorf("undeclared port: %v", err)
	}
	addr, err := h.Addr(t.Context(), 8080)
	if err != nil {
		t.Fatal(err)
	}
	if got := getUntil(t, "http://"+addr+"/", 10*time.Second); got != "svc-body" {
		t.Errorf("body = %q", got)
	}

	// Exec: output and exit code; a second service on the same network
	// reaches the first by its alias, nothing outside.
	var out, errOut bytes.Buffer
	code, err := h.Exec(t.Context(), []string{"/hello", "echo", "inside"}, &out, &errOut)
	if err != nil || code != 0 || out.String() != "inside\n" {
		t.Errorf("exec: code %d err %v out %q", code, err, out.String())
	}
	code, err = h.Exec(t.Context(), []string{"/hello", "exit", "3"}, io.Discard, io.Discard)
	if err != nil || code != 3 {
		t.Errorf("exec exit 3: code %d err %v", code, err)
	}

	res, err := h.Stop()
	stopped = true
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !strings.Contains(string(res.Stdout), "serving on :8080") || res.Usage.WallMS <= 0 {
		t.Errorf("result: %+v stdout %q", res.Usage, res.Stdout)
	}
	select {
	case <-h.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if _, err := h.Addr(t.Context(), 8080); !errors.Is(err, executor.ErrServiceNotFound) {
		t.Errorf("Addr after stop: %v", err)
	}
	assertNoContainers(t, e, id)
	if exists, _, _ := e.NetworkInternal(context.Background(), netName); exists {
		t.Errorf("network %s left behind", netName)
	}
}

func TestServiceReachesSiblingByAliasOnly(t *testing.T) {
	e := newExecutor(t)
	netName := "offload-test-" + taskID(t)[len(taskID(t))-8:]
	start := func(alias string, cmd ...string) executor.ServiceHandle {
		h, err := e.StartService(t.Context(), executor.ServiceSpec{
			Spec:    executor.Spec{TaskID: taskID(t), Image: image, Cmd: cmd},
			Network: netName, Aliases: []string{alias}, Ports: []int{8080},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Stop() })
		return h
	}
	a := start("alpha", "serve", "8080", "from-alpha")
	b := start("beta", "sleep", "60s")
	addr, _ := a.Addr(t.Context(), 8080)
	getUntil(t, "http://"+addr+"/", 10*time.Second)
	var out bytes.Buffer
	code, err := b.Exec(t.Context(), []string{"/hello", "get", "http://alpha:8080/"}, &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || out.String() != "from-alpha" {
		t.Errorf("beta -> alpha: exit %d, %q", code, out.String())
	}
	out.Reset()
	code, _ = b.Exec(t.Context(), []string{"/hello", "get", "http://1.1.1.1/"}, &out, &out)
	if code == 0 {
		t.Errorf("a service reached the outside: %q", out.String())
	}
}

// A service reaches nothing of the provider host: a server the host runs on
// every address is not reachable from inside the service, neither at the
// network's gateway nor at any other host address; the provider's own
// tunnel to the service still works. The firewall rules go when the
// network does.
func TestServiceCannotReachHost(t *testing.T) {
	e := newExecutor(t)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "host-secret") })}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	id := taskID(t)
	netName := "offload-test-" + id[len(id)-8:]
	h, err := e.StartService(t.Context(), executor.ServiceSpec{
		Spec:    executor.Spec{TaskID: id, Image: image, Cmd: []string{"serve", "8080", "svc-body"}},
		Network: netName, Ports: []int{8080},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	addr, err := h.Addr(t.Context(), 8080)
	if err != nil {
		t.Fatal(err)
	}
	if body := getUntil(t, "http://"+addr+"/", 10*time.Second); body != "svc-body" {
		t.Fatalf("tunnel to the service: %q", body)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ins, err := cli.NetworkInspect(t.Context(), netName, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, c := range ins.Network.IPAM.Config {
		if c.Gateway.IsValid() {
			targets = append(targets, c.Gateway.String())
		}
	}
	if len(targets) == 0 {
		t.Fatal("the service network has no gateway address to probe")
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			targets = append(targets, ipn.IP.String())
		}
	}
	for _, ip := range targets {
		var out bytes.Buffer
		code, err := h.Exec(t.Context(), []string{"/hello", "get", fmt.Sprintf("http://%s:%d/", ip, port)}, &out, &out)
		if err != nil {
			t.Fatal(err)
		}
		if code == 0 || strings.Contains(out.String(), "host-secret") {
			t.Errorf("the service reached the host at %s:%d: exit %d %q", ip, port, code, out.String())
		}
	}
	h.Stop()
	for _, r := range docker.HostRulesForTest(netName) {
		if exec.Command("iptables", append([]string{"-C"}, r...)...).Run() == nil {
			t.Errorf("firewall rule left after the network went: %v", r)
		}
	}
}
