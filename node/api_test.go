package node_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/node"
)

// apiCall is one request to a node's API.
type apiCall struct {
	method, path string
	body         string
	noToken      bool
}

func (c apiCall) do(t *testing.T, cl *client.Client) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), c.method, cl.BaseURL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if !c.noToken {
		req.Header.Set("Authorization", "Bearer "+cl.Token)
	}
	resp, err := cl.HTTP.Do(req) // pins the API's certificate when it serves HTTPS
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, b
}

// TestAPIStatusCodes runs every route through its success and error
// statuses on a live node (no Docker needed).
func TestAPIStatusCodes(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) {
		c.ProviderWait = 200 * time.Millisecond
		c.ContentTimeout = time.Second
	})
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	// Fixtures: content the node holds, a finished (failed) task, a file
	// on the node's disk.
	have, err := cl.AddReader(t.Context(), strings.NewReader("hello api"), "hello.txt", 1)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := n.Submit(t.Context(), node.TaskSpec{Image: "x:1"})
	if err != nil {
		t.Fatal(err)
	}
	failed := waitFor(t, n, sub.ID, 10*time.Second)
	if failed.State != "failed" {
		t.Fatalf("fixture task: %s", failed.State)
	}
	file := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(file, []byte("on disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	const missing = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba" // valid, held by nobody
	dest := func() string { return filepath.Join(t.TempDir(), "out") }
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	huge := `{"path":"` + strings.Repeat("a", 2<<20) + `"}`

	cases := []struct {
		name string
		call apiCall
		want int
	}{
		{"dashboard", apiCall{method: "GET", path: "/", noToken: true}, 200},
		{"openapi", apiCall{method: "GET", path: "/openapi.json", noToken: true}, 200},
		{"metrics without token", apiCall{method: "GET", path: "/metrics", noToken: true}, 401},
		{"metrics", apiCall{method: "GET", path: "/metrics"}, 200},
		{"no token", apiCall{method: "GET", path: "/api/v1/id", noToken: true}, 401},
		{"id", apiCall{method: "GET", path: "/api/v1/id"}, 200},
		{"peers", apiCall{method: "GET", path: "/api/v1/peers"}, 200},
		{"unknown route", apiCall{method: "GET", path: "/api/v1/nope"}, 404},
		{"wrong method", apiCall{method: "DELETE", path: "/api/v1/tasks"}, 405},
		{"submit malformed", apiCall{method: "POST", path: "/api/v1/tasks", body: "{nope"}, 400},
		{"submit unknown field", apiCall{method: "POST", path: "/api/v1/tasks", body: `{"image":"a","colour":1}`}, 400},
		{"submit invalid", apiCall{method: "POST", path: "/api/v1/tasks", body: `{"image":"a","timeout_ms":-5}`}, 400},
		{"submit too large", apiCall{method: "POST", path: "/api/v1/tasks", body: huge}, 413},
		{"list", apiCall{method: "GET", path: "/api/v1/tasks"}, 200},
		{"list by state", apiCall{method: "GET", path: "/api/v1/tasks?state=failed,running"}, 200},
		{"list by unknown state", apiCall{method: "GET", path: "/api/v1/tasks?state=sleeping"}, 400},
		{"get", apiCall{method: "GET", path: "/api/v1/tasks/" + sub.ID}, 200},
		{"get unknown", apiCall{method: "GET", path: "/api/v1/tasks/nope"}, 404},
		{"events of ended task", apiCall{method: "GET", path: "/api/v1/tasks/" + sub.ID + "/events"}, 200},
		{"events unknown", apiCall{method: "GET", path: "/api/v1/tasks/nope/events"}, 404},
		{"final event of ended task", apiCall{method: "GET", path: "/api/v1/tasks/" + sub.ID + "/events?final=true"}, 200},
		{"final event unknown", apiCall{method: "GET", path: "/api/v1/tasks/nope/events?final=true"}, 404},
		{"logs of ended task", apiCall{method: "GET", path: "/api/v1/tasks/" + sub.ID + "/logs"}, 200},
		{"logs bad position", apiCall{method: "GET", path: "/api/v1/tasks/" + sub.ID + "/logs?from=x"}, 400},
		{"logs unknown", apiCall{method: "GET", path: "/api/v1/tasks/nope/logs"}, 404},
		{"cancel unknown", apiCall{method: "POST", path: "/api/v1/tasks/nope/cancel"}, 404},
		{"cancel ended", apiCall{method: "POST", path: "/api/v1/tasks/" + sub.ID + "/cancel"}, 409},
		{"results unknown", apiCall{method: "POST", path: "/api/v1/tasks/nope/results", body: js(map[string]string{"dest": dest()})}, 404},
		{"results relative", apiCall{method: "POST", path: "/api/v1/tasks/" + sub.ID + "/results", body: `{"dest":"rel"}`}, 400},
		{"results malformed", apiCall{method: "POST", path: "/api/v1/tasks/" + sub.ID + "/results", body: `[`}, 400},
		{"results of a task without outputs", apiCall{method: "POST", path: "/api/v1/tasks/" + sub.ID + "/results", body: js(map[string]string{"dest": dest()})}, 409},
		{"all events bad snapshot", apiCall{method: "GET", path: "/api/v1/events?snapshot=yes"}, 400},
		{"pool", apiCall{method: "GET", path: "/api/v1/pool?gpus=any"}, 200},
		{"pool bad filter", apiCall{method: "GET", path: "/api/v1/pool?cpus=lots"}, 400},
		{"pool stats", apiCall{method: "GET", path: "/api/v1/pool/stats"}, 200},
		{"ledger", apiCall{method: "GET", path: "/api/v1/ledger"}, 200},
		{"add path", apiCall{method: "POST", path: "/api/v1/content/add", body: js(map[string]string{"path": file})}, 200},
		{"add relative path", apiCall{method: "POST", path: "/api/v1/content/add", body: `{"path":"f.txt"}`}, 400},
		{"add missing path", apiCall{method: "POST", path: "/api/v1/content/add", body: js(map[string]string{"path": file + ".gone"})}, 400},
		{"add bad cid version", apiCall{method: "POST", path: "/api/v1/content/add", body: js(map[string]any{"path": file, "cid_version": 7})}, 400},
		{"add malformed", apiCall{method: "POST", path: "/api/v1/content/add", body: `{"path":`}, 400},
		{"add too large", apiCall{method: "POST", path: "/api/v1/content/add", body: huge}, 413},
		{"add body", apiCall{method: "POST", path: "/api/v1/content?name=x", body: "bytes"}, 200},
		{"add body bad cid version", apiCall{method: "POST", path: "/api/v1/content?cid_version=2", body: "bytes"}, 400},
		{"cat", apiCall{method: "GET", path: "/api/v1/content/" + have}, 200},
		{"cat bad cid", apiCall{method: "GET", path: "/api/v1/content/notacid"}, 400},
		{"cat missing", apiCall{method: "GET", path: "/api/v1/content/" + missing}, 404},
		{"get content", apiCall{method: "POST", path: "/api/v1/content/" + have + "/get", body: js(map[string]string{"dest": dest()})}, 200},
		{"get content bad cid", apiCall{method: "POST", path: "/api/v1/content/notacid/get", body: js(map[string]string{"dest": dest()})}, 400},
		{"get content relative", apiCall{method: "POST", path: "/api/v1/content/" + have + "/get", body: `{"dest":"x"}`}, 400},
		{"pins", apiCall{method: "GET", path: "/api/v1/pins"}, 200},
		{"unpin bad cid", apiCall{method: "DELETE", path: "/api/v1/pins/notacid"}, 400},
		{"image push without ref", apiCall{method: "POST", path: "/api/v1/images/push", body: `{}`}, 400},
		{"image push malformed", apiCall{method: "POST", path: "/api/v1/images/push", body: `{"ref":1}`}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.call.do(t, cl)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: status %d, want %d: %s", tc.call.method, tc.call.path, resp.StatusCode, tc.want, body)
			}
			if resp.StatusCode >= 400 {
				var e client.Error
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error without a JSON message: %q", body)
				}
			}
		})
	}
	ts, err := cl.List(t.Context())
	if err != nil || len(ts) != 1 {
		t.Errorf("bad requests created tasks: %v, %d tasks", err, len(ts))
	}
}

// TestListTasksByState: ?state= keeps only the tasks in those states.
func TestListTasksByState(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.ProviderWait = 200 * time.Millisecond })
	sub, err := n.Submit(t.Context(), node.TaskSpec{Image: "x:1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, n, sub.ID, 10*time.Second)
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	for state, want := range map[string]int{"failed": 1, "running": 0, "running,FAILED": 1, "": 1} {
		var got []client.Task
		_, body := apiCall{method: "GET", path: "/api/v1/tasks?state=" + state}.do(t, cl)
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("state=%s: %v %s", state, err, body)
		}
		if len(got) != want {
			t.Errorf("state=%s: %d tasks, want %d", state, len(got), want)
		}
	}
}

// TestAllEventsStream: GET /api/v1/events sends the snapshot, then every
// change of any task, ending with its terminal state.
func TestAllEventsStream(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.ProviderWait = 300 * time.Millisecond })
	old, err := n.Submit(t.Context(), node.TaskSpec{Image: "old:1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, n, old.ID, 10*time.Second)
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", cl.BaseURL+"/api/v1/events?snapshot=1", nil)
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	events := make(chan client.Task)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
			if !ok {
				continue
			}
			var task client.Task
			if json.Unmarshal(data, &task) == nil {
				select {
				case events <- task:
				case <-t.Context().Done():
					return
				}
			}
		}
	}()
	next := func() client.Task {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return client.Task{}
	}
	if ev := next(); ev.ID != old.ID || ev.State != "failed" {
		t.Fatalf("snapshot: %s %s", ev.ID, ev.State)
	}
	sub, err := n.Submit(t.Context(), node.TaskSpec{Image: "new:1"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		ev := next()
		if ev.ID != sub.ID {
			t.Fatalf("event of another task: %s", ev.ID)
		}
		seen = append(seen, ev.State)
		if ev.State == "failed" {
			break
		}
	}
	t.Logf("states seen: %v", seen)
}

func TestPostTaskRefusesTrailingData(t *testing.T) {
	home := t.TempDir()
	startNode(t, home, false, nil)
	c, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"image":"a"} {"image":"b"}`, `{"image":"a"}x000`} {
		req, _ := http.NewRequest("POST", c.BaseURL+"/api/v1/tasks", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", body, resp.StatusCode)
		}
	}
	if ts, _ := c.List(t.Context()); len(ts) != 0 {
		t.Errorf("trailing data created %d tasks", len(ts))
	}
}

// readHomeFile returns a file of a node's home, trimmed, and checks that
// only its owner may read it.
func readHomeFile(t *testing.T, home, name string) string {
	t.Helper()
	path := filepath.Join(home, name)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", name, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestAPIOverTLS attacks a node whose API serves HTTPS with the
// certificate it generated (forced on loopback; beyond loopback it is the
// only way the API serves, see TestRemoteAPINeedsTLS): the client that
// pins the right fingerprint works, a wrong pin or no pin is refused
// before the token is sent, plain HTTP to the port gets nothing, and the
// certificate survives a restart.
func TestAPIOverTLS(t *testing.T) {
	// Loopback without a certificate stays plain HTTP and pins nothing.
	plainHome := t.TempDir()
	startNode(t, plainHome, false, nil)
	if u := readHomeFile(t, plainHome, client.APIFile); !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Errorf("loopback API: %s, want plain http", u)
	}
	if _, err := os.Stat(filepath.Join(plainHome, client.FingerprintFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plain API wrote %s: %v", client.FingerprintFile, err)
	}

	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.APITLS = true })
	base := readHomeFile(t, home, client.APIFile)
	if !strings.HasPrefix(base, "https://127.0.0.1:") || base != n.APIURL() {
		t.Fatalf("$home/api = %q (APIURL %q), want https://127.0.0.1:PORT", base, n.APIURL())
	}
	fp := readHomeFile(t, home, client.FingerprintFile)
	if fp != n.APIFingerprint() || !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+64 {
		t.Fatalf("api.fingerprint %q, APIFingerprint %q", fp, n.APIFingerprint())
	}
	readHomeFile(t, home, node.APICertFile)
	readHomeFile(t, home, node.APIKeyFile)

	t.Run("right fingerprint", func(t *testing.T) {
		cl, err := client.FromHome(home) // pins api.fingerprint
		if err != nil {
			t.Fatal(err)
		}
		id, err := cl.ID(t.Context())
		if err != nil || id.ID != n.ID().String() {
			t.Fatalf("pinned client: %v %+v", err, id)
		}
		for call, want := range map[apiCall]int{
			{method: "GET", path: "/metrics"}:                  200,
			{method: "GET", path: "/metrics", noToken: true}:   401,
			{method: "GET", path: "/api/v1/id", noToken: true}: 401,
		} {
			if resp, body := call.do(t, cl); resp.StatusCode != want {
				t.Errorf("%s %s (token %v) over TLS: %d, want %d: %s", call.method, call.path, !call.noToken, resp.StatusCode, want, body)
			}
		}
		// The pin from the environment, and one written as openssl prints it.
		colons := strings.ToUpper(strings.TrimPrefix(fp, "sha256:"))
		var b strings.Builder
		for i := 0; i < len(colons); i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(colons[i : i+2])
		}
		t.Setenv(client.FingerprintEnv, b.String())
		cl, err = client.FromHome(home)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.ID(t.Context()); err != nil {
			t.Fatalf("pin from %s: %v", client.FingerprintEnv, err)
		}
	})

	t.Run("wrong fingerprint", func(t *testing.T) {
		other := client.Fingerprint([]byte("some other certificate"))
		t.Setenv(client.FingerprintEnv, other) // over the home's file
		cl, err := client.FromHome(home)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.ID(t.Context())
		if !errors.Is(err, client.ErrFingerprintMismatch) || errors.Is(err, client.ErrNoNode) {
			t.Fatalf("wrong pin: %v, want ErrFingerprintMismatch", err)
		}
		if msg := err.Error(); !strings.Contains(msg, fp) || !strings.Contains(msg, other) {
			t.Errorf("error does not name both fingerprints: %s", msg)
		}
	})

	t.Run("no pin", func(t *testing.T) {
		cl := client.New(base, "token") // system roots only
		_, err := cl.ID(t.Context())
		if err == nil || !strings.Contains(err.Error(), "not trusted") {
			t.Fatalf("unpinned client against a self-signed API: %v", err)
		}
	})

	t.Run("plain http to the TLS port", func(t *testing.T) {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := client.FromHome(home)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+u.Host+"/api/v1/id", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+cl.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("plain HTTP to the TLS port: %v (net/http answers such a request 400)", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), n.ID().String()) {
			t.Fatalf("plain HTTP to the TLS port: %d %s, want 400 and no API answer", resp.StatusCode, body)
		}
	})

	// The certificate is generated once: a restart serves the same one.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, home, false, nil, func(c *node.Config) { c.APITLS = true })
	if n.APIFingerprint() != fp {
		t.Fatalf("fingerprint after restart %s, want %s", n.APIFingerprint(), fp)
	}
}

// TestAPIOperatorCertificate: a certificate the operator gives is served
// (on loopback too), its fingerprint is what the node writes, and the node
// generates none of its own.
func TestAPIOperatorCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der := writeTestCert(t, certFile, keyFile)
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.APITLSCert, c.APITLSKey = certFile, keyFile })
	if want := client.Fingerprint(der); n.APIFingerprint() != want || readHomeFile(t, home, client.FingerprintFile) != want {
		t.Fatalf("fingerprint %s, want the operator's certificate's %s", n.APIFingerprint(), want)
	}
	if !strings.HasPrefix(n.APIURL(), "https://") {
		t.Fatalf("API URL %s, want https", n.APIURL())
	}
	if _, err := os.Stat(filepath.Join(home, node.APICertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node generated a certificate although one was given: %v", err)
	}
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ID(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Half a certificate is refused at start.
	_, err = node.New(t.Context(), node.Config{Home: t.TempDir(), Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		APIAddr: "127.0.0.1:0", APITLSCert: certFile})
	if err == nil || !strings.Contains(err.Error(), "--api-tls-key") {
		t.Errorf("certificate without key: %v", err)
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files and returns the certificate's DER.
func writeTestCert(t *testing.T, certFile, keyFile string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "operator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return der
}

// TestWaitGetsOnlyTheFinalEvent: client.Wait asks for the terminal
// snapshot alone (?final=true): the stream holds exactly one event, the
// ended task.
func TestWaitGetsOnlyTheFinalEvent(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.ProviderWait = 300 * time.Millisecond })
	sub, err := n.Submit(t.Context(), node.TaskSpec{Image: "x:1"})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", cl.BaseURL+"/api/v1/tasks/"+sub.ID+"/events?final=true", nil)
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := bytes.Count(body, []byte("event: task")); got != 1 || !bytes.Contains(body, []byte(`"state":"failed"`)) {
		t.Fatalf("%d events: %s", got, body)
	}
	task, err := cl.Wait(t.Context(), sub.ID)
	if err != nil || task.State != "failed" {
		t.Fatalf("Wait: %v %+v", err, task)
	}
}
