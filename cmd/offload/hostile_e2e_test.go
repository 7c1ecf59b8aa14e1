package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	dockerclient "github.com/moby/moby/client"
	"github.com/multiformats/go-multihash"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
)

// The hostile suite runs internal/testimage/hostile as real tasks, Docker
// and WASM, between two real node processes, and proves the provider safe
// from them: a secret marker file placed outside every mount never reaches
// the requestor, its directory and the provider's home stay as they were,
// every attack reports "refused", and where the provider refused to return
// something it says what.
//
// Run it alone: go test ./cmd/offload -run TestHostileWorkloads -v
//
// Not covered: a second requestor awarding a task id that belongs to
// another requestor's task. The CLI and the client library cannot send an
// award for an id of their choosing; it needs the market's wire protocol.

// markerPrefix starts the marker file; the hostile program recognizes the
// marker by it (hostile.MarkerPrefix). The secret after it is what must
// never leak.
const markerPrefix = "OFFLOAD-HOSTILE-MARKER\n"

// outputsQuota is the provider's bound on a task's disk (its --task-disk);
// fill-disk writes a little more than that per directory, so a disk bound
// at the quota stops it.
const outputsQuota = 64 << 20

type hostileCase struct {
	attack   string
	runtimes []string
	// artifacts are listed in a task file; "{MARKER}" becomes the marker's
	// host path.
	artifacts []string
	volume    bool // mount a fresh volume at /vol (VOLUME_PATH)
	service   bool // run as a service (a bridge network instead of none)
	// allowOK: the attack line may say "ok" (a measurement, or a trap laid
	// for the provider that the checks below judge).
	allowOK bool
	// names: what a refusal by the provider (a failed task's error, or a
	// failed `offload get`) must name.
	names []string
	// boundedBy: a task that failed with an error naming this, before it
	// could print its line, was stopped by a bound of its sandbox.
	boundedBy string
	check     func(t *testing.T, s *hostileSuite, r *hostileRun)
}

const (
	rtDocker = "docker"
	rtWASM   = "wasm"
)

var bothRuntimes = []string{rtDocker, rtWASM}

var hostileCases = []hostileCase{
	{attack: "uid", runtimes: bothRuntimes, allowOK: true, check: checkUID},
	{attack: "read-marker", runtimes: bothRuntimes},
	{attack: "outputs-symlink-file", runtimes: bothRuntimes, names: []string{"leak", "up", "symlink"},
		check: checkLinksNotFollowed("leak", "up")},
	{attack: "outputs-symlink-dir-artifact", runtimes: bothRuntimes, artifacts: []string{"/outputs/root{MARKER}"},
		names: []string{"/outputs/root"}, check: checkArtifactRefused},
	{attack: "work-symlink-artifact", runtimes: bothRuntimes, artifacts: []string{"/work/root{MARKER}"},
		names: []string{"/work/root"}, check: checkArtifactRefused},
	{attack: "outputs-hardlink", runtimes: bothRuntimes, names: []string{"hl-", "hard link"}, check: checkHardlinks},
	{attack: "outputs-fifo", runtimes: bothRuntimes, allowOK: true, names: []string{"fifo"},
		check: checkNoSpecialFile("fifo", fs.ModeNamedPipe)},
	{attack: "outputs-socket", runtimes: bothRuntimes, allowOK: true, names: []string{"sock"},
		check: checkNoSpecialFile("sock", fs.ModeSocket)},
	{attack: "outputs-device", runtimes: bothRuntimes, names: []string{"null", "disk", "loop"},
		check: checkNoSpecialFile("null", fs.ModeDevice)},
	{attack: "wasi-escape", runtimes: bothRuntimes, names: []string{"symlink", "renamed", "hl-"},
		check: checkLinksNotFollowed("m", "renamed")},
	{attack: "net-probe", runtimes: bothRuntimes, check: checkNoConnection},
	{attack: "net-probe", runtimes: []string{rtDocker}, service: true, check: checkNoConnection},
	{attack: "volume-symlink", runtimes: bothRuntimes, volume: true, names: []string{"leak", "up", "root", "symlink"},
		check: checkLinksNotFollowed("leak", "up", "root")},
	{attack: "fill-disk", runtimes: bothRuntimes, names: []string{"fill", "quota", "space"}},
	// A container's /tmp is a tmpfs charged to its memory: a kill at the
	// memory limit bounds it as well as ENOSPC would.
	{attack: "fill-tmp", runtimes: bothRuntimes, names: []string{"fill", "quota", "space", "memory"}, boundedBy: "memory"},
}

func TestHostileWorkloads(t *testing.T) {
	s := newHostileSuite(t)
	for _, c := range hostileCases {
		for _, rt := range c.runtimes {
			name := c.attack
			if c.service {
				name += "-service"
			}
			t.Run(name+"/"+rt, func(t *testing.T) {
				s.newSecret(t)
				r := s.run(t, c, rt)
				s.checkCommon(t, c, r)
				if c.check != nil {
					c.check(t, s, r)
				}
			})
		}
	}
	t.Run("image-tarball-tags/docker", s.imageTarballTags)
}

// imageTarballTags: a requestor sends the hostile image as a tarball whose
// manifest claims the tag of an image the operator runs by name (the
// hostile tag itself, allowed on this provider) and a fresh one. The task
// runs, by content; neither tag moves or appears on the provider's engine.
func (s *hostileSuite) imageTarballTags(t *testing.T) {
	ctx := t.Context()
	cli, err := dockerclient.New(dockerclient.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	testimage.Ensure(t, testimage.DefaultTag)
	victim, err := cli.ImageInspect(ctx, testimage.DefaultTag)
	if err != nil {
		t.Fatal(err)
	}
	fresh := "offload-test/planted:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	rc, err := cli.ImageSave(ctx, []string{s.tag})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "hostile.tar")
	if err := os.WriteFile(tarPath, testimage.RetagImageTar(t, saved, []string{testimage.DefaultTag, fresh}), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := hostileCLI(t, 60*time.Second, "add", "--home", s.requestor.home, "--json", tarPath)
	var added struct {
		CID string `json:"cid"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil || added.CID == "" {
		t.Fatalf("add: %d %s %s", code, out, stderr)
	}
	out, stderr, _ = hostileCLI(t, 90*time.Second, "run", "--home", s.requestor.home, "--image", added.CID,
		"--timeout", "60s", "--retries", "0", "--wait", "--json", "--", "/hostile", "uid")
	var task client.Task
	if err := json.Unmarshal([]byte(out), &task); err != nil || task.State != "completed" || !strings.Contains(task.Stdout, "ATTACK uid: ok") {
		t.Fatalf("the task by CID: %v %+v\n%s\nprovider log:\n%s", err, task, stderr, s.provider.log)
	}
	after, err := cli.ImageInspect(ctx, testimage.DefaultTag)
	if err != nil || after.ID != victim.ID {
		t.Fatalf("%s moved from %s to %s (%v)", testimage.DefaultTag, victim.ID, after.ID, err)
	}
	if _, err := cli.ImageInspect(ctx, fresh); err == nil {
		cli.ImageRemove(ctx, fresh, dockerclient.ImageRemoveOptions{})
		t.Fatalf("the tarball planted the tag %s", fresh)
	}
}

// hostileSuite is what all subtests share: one provider, one requestor,
// the marker and the hostile workload.
type hostileSuite struct {
	dir                 string
	provider, requestor *nodeProc
	tag, wasmCID        string
	markerPath          string
	markerDir           string
	markerBytes         []byte
	secret              string
	// hostPorts are ports of the host: the provider's API and libp2p
	// ports (loopback) and a listener of this test on every interface.
	hostPorts []string
	accepted  atomic.Int64 // connections the listener accepted
	// homes: provider and requestor homes as they were after start.
	homes map[string]map[string]string
}

func newHostileSuite(t *testing.T) *hostileSuite {
	tag, wasmPath := testimage.BuildHostile(t)
	s := &hostileSuite{dir: t.TempDir(), tag: tag}

	// The marker: a file in a directory of its own, outside every home,
	// work dir and mount. Each subtest gives it a new secret (newSecret).
	s.markerDir = filepath.Join(s.dir, "marker-dir")
	s.markerPath = filepath.Join(s.markerDir, "marker.txt")
	if err := os.Mkdir(s.markerDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.newSecret(t)

	// A host service on every interface, as an operator might run: a task
	// must not reach it (nor the nodes' loopback ports).
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			c.Close()
		}
	}()

	args := []string{"--provider", "--task-disk", strconv.Itoa(outputsQuota)}
	if allowImageFlag(t) {
		args = append(args, "--allow-image", tag)
	}
	s.provider = startNodeProc(t, filepath.Join(s.dir, "provider"), args...)
	pid := s.provider.id(t)
	s.requestor = startNodeProc(t, filepath.Join(s.dir, "requestor"), "--bootstrap", pid.Addrs[0])

	api, err := os.ReadFile(filepath.Join(s.provider.home, client.APIFile))
	if err != nil {
		t.Fatal(err)
	}
	apiHost := strings.TrimPrefix(strings.TrimSpace(string(api)), "http://")
	_, lnPort, _ := net.SplitHostPort(ln.Addr().String())
	s.hostPorts = []string{apiHost, "127.0.0.1:" + lnPort}
	if m := regexp.MustCompile(`/tcp/(\d+)`).FindStringSubmatch(pid.Addrs[0]); m != nil {
		s.hostPorts = append(s.hostPorts, "127.0.0.1:"+m[1])
	}

	out, stderr, code := offload(t, "add", "--json", "--home", s.requestor.home, wasmPath)
	var added map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil || added["cid"] == "" {
		t.Fatalf("add hostile.wasm: %d %s %s", code, out, stderr)
	}
	s.wasmCID = added["cid"]

	s.homes = map[string]map[string]string{}
	for _, n := range []*nodeProc{s.provider, s.requestor} {
		s.homes[n.home] = homeSnapshot(t, n.home)
	}
	return s
}

// newSecret writes a fresh secret to the marker, so that a leak is pinned
// on the subtest that caused it.
func (s *hostileSuite) newSecret(t *testing.T) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	s.secret = "secret-" + hex.EncodeToString(secret)
	s.markerBytes = []byte(markerPrefix + s.secret + "\n")
	if err := os.WriteFile(s.markerPath, s.markerBytes, 0o644); err != nil {
		t.Fatal(err)
	}
}

// markerServed says whether the requestor's node hands out data as
// content: the CID a provider gives a small file when it adds it to a
// task's outputs (one raw block, CIDv1), asked for with a short limit.
// A provider that put the marker into the outputs leaked it to the
// requestor even when `offload get` refuses the tree around it.
func (s *hostileSuite) markerServed(t *testing.T, data []byte) bool {
	c, err := client.FromHome(s.requestor.home)
	if err != nil {
		t.Fatal(err)
	}
	mh, err := multihash.Sum(data, multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	rc, err := c.Cat(ctx, cid.NewCidV1(cid.Raw, mh).String())
	if err != nil {
		return false
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return bytes.Contains(b, []byte(s.secret))
}

// allowImageFlag says whether `offload node` takes --allow-image (providers
// that run local images only when the operator allowed them).
func allowImageFlag(t *testing.T) bool {
	out, _, _ := offload(t, "node", "--help")
	return strings.Contains(out, "--allow-image")
}

// hostileRun is one attack run as a task, and what came back of it.
type hostileRun struct {
	runtime string
	task    client.Task
	// cli is everything the CLI printed (run or submit, then get).
	cli string
	// fetched is the directory `offload get` wrote the outputs (or the
	// volume) to; "" when there was nothing to fetch or the get failed.
	fetched string
	// getFailed holds the stderr of a failed `offload get`.
	getFailed string
	// line is the attack's line; verdict and detail are its parts.
	line, verdict, detail string
}

func (s *hostileSuite) run(t *testing.T, c hostileCase, rt string) *hostileRun {
	r := &hostileRun{runtime: rt}
	home := s.requestor.home
	env := map[string]string{
		"MARKER_PATH": s.markerPath,
		"MARKER_DIR":  s.markerDir,
		"HOME_PATH":   s.provider.home,
		"HOST_PORTS":  strings.Join(s.hostPorts, ","),
		"FILL_LIMIT":  strconv.Itoa(outputsQuota + 64<<20),
	}
	image, cmd := s.tag, []string{"/hostile", c.attack}
	if rt == rtWASM {
		image, cmd = s.wasmCID, []string{c.attack}
	}
	volName := fmt.Sprintf("hostile-%s-%d", rt, time.Now().UnixNano())
	if c.volume {
		env["VOLUME_PATH"] = "/vol"
	}

	args := []string{"--home", home, "--wait", "--json"}
	if len(c.artifacts) > 0 {
		// Artifacts need a task file.
		var artifacts []string
		for _, a := range c.artifacts {
			artifacts = append(artifacts, strings.ReplaceAll(a, "{MARKER}", s.markerPath))
		}
		tf, err := json.Marshal(map[string]any{
			"runtime": rt, "image": image, "command": cmd, "env": env,
			"timeout": "60s", "retries": 0, "artifacts": artifacts,
		})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "task.json")
		if err := os.WriteFile(file, tf, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"submit", "-f", file}, args...)
	} else {
		args = append([]string{"run", "--runtime", rt, "--image", image, "--timeout", "60s", "--retries", "0"}, args...)
		for k, v := range env {
			args = append(args, "--env", k+"="+v)
		}
		if c.volume {
			args = append(args, "--volume", volName+":/vol")
		}
		if c.service {
			args = append(args, "--service")
		}
		if c.attack == "fill-tmp" && rt == rtDocker {
			// A container's /tmp is a tmpfs of its memory limit: make the
			// limit smaller than what the attack writes.
			args = append(args, "--memory", "64MiB")
		}
		args = append(append(args, "--"), cmd...)
	}

	out, stderr, code := hostileCLI(t, 90*time.Second, args...)
	r.cli = out + stderr
	if err := json.Unmarshal([]byte(out), &r.task); err != nil {
		t.Fatalf("%s exited %d with no task JSON: %v\nstdout: %s\nstderr: %s\nprovider log:\n%s",
			args[0], code, err, out, stderr, s.provider.log)
	}
	t.Logf("task %s: state=%s error=%q\nstdout: %s\nstderr: %s", r.task.ID, r.task.State, r.task.Error, r.task.Stdout, r.task.Stderr)

	fetchCID := r.task.Outputs
	if c.volume {
		fetchCID = s.volumeCID(t, volName)
	}
	if fetchCID != "" {
		dest := filepath.Join(t.TempDir(), "fetched")
		gout, gerr, gcode := hostileCLI(t, 60*time.Second, "get", fetchCID, "-o", dest, "--home", home)
		r.cli += gout + gerr
		if gcode != 0 {
			r.getFailed = gerr
			t.Logf("get %s failed: %s", fetchCID, gerr)
		} else {
			r.fetched = dest
		}
	}
	if c.volume {
		if _, stderr, code := offload(t, "volume", "rm", volName, "--home", home); code != 0 {
			t.Errorf("volume rm %s: %s", volName, stderr)
		}
	}

	prefix := "ATTACK " + c.attack + ": "
	for _, l := range strings.Split(r.task.Stdout, "\n") {
		if rest, found := strings.CutPrefix(l, prefix); found {
			r.line = l
			r.verdict, r.detail, _ = strings.Cut(rest, ": ")
		}
	}
	return r
}

// volumeCID is the CID the requestor keeps for volume name ("" if none).
func (s *hostileSuite) volumeCID(t *testing.T, name string) string {
	out, stderr, code := offload(t, "volume", "ls", "--json", "--home", s.requestor.home)
	var vols []client.Volume
	if code != 0 || json.Unmarshal([]byte(out), &vols) != nil {
		t.Fatalf("volume ls --json: %d %s %s", code, out, stderr)
	}
	for _, v := range vols {
		if v.Name == name {
			return v.CID
		}
	}
	return ""
}

// checkCommon asserts what holds for every attack.
func (s *hostileSuite) checkCommon(t *testing.T, c hostileCase, r *hostileRun) {
	t.Helper()
	// (a) The secret never reaches the requestor.
	for what, text := range map[string]string{
		"task stdout": r.task.Stdout, "task stderr": r.task.Stderr, "task error": r.task.Error,
		"task reason": r.task.Reason, "CLI output": r.cli,
	} {
		if strings.Contains(text, s.secret) {
			t.Errorf("LEAK: the marker's secret is in the %s", what)
		}
	}
	if r.fetched != "" {
		s.checkTreeHasNoSecret(t, r.fetched)
	}
	if r.getFailed != "" {
		// The marker as placed, and as the task may have changed it.
		candidates := [][]byte{s.markerBytes}
		if now, err := os.ReadFile(s.markerPath); err == nil && !bytes.Equal(now, s.markerBytes) {
			candidates = append(candidates, now)
		}
		for _, data := range candidates {
			if s.markerServed(t, data) {
				t.Errorf("LEAK: the requestor's node serves the marker's bytes: they are in the outputs, behind what `offload get` refused")
			}
		}
	}

	// (b) The marker's directory and the nodes' homes are as they were.
	entries, err := os.ReadDir(s.markerDir)
	if err != nil {
		t.Fatal(err)
	}
	if names := dirNames(entries); !slices.Equal(names, []string{"marker.txt"}) {
		t.Errorf("the marker's directory changed: %v", names)
		for _, n := range names {
			if n != "marker.txt" {
				os.RemoveAll(filepath.Join(s.markerDir, n)) // keep later subtests meaningful
			}
		}
	}
	if b, err := os.ReadFile(s.markerPath); err != nil || !bytes.Equal(b, s.markerBytes) {
		t.Errorf("the marker changed: %q %v", b, err)
		os.WriteFile(s.markerPath, s.markerBytes, 0o644)
	}
	for home, before := range s.homes {
		after := homeSnapshot(t, home)
		for _, d := range diffSnapshots(before, after) {
			t.Errorf("node home %s changed: %s", home, d)
		}
		s.homes[home] = after
	}

	// (c) The attack ran and was refused.
	switch {
	case r.line == "" && c.boundedBy != "" && r.task.State == "failed" && strings.Contains(r.task.Error, c.boundedBy):
		t.Logf("stopped by its %s bound: %s", c.boundedBy, r.task.Error)
	case r.line == "":
		t.Errorf("no %q line in the task's stdout (state %s, error %q, stderr %q)",
			"ATTACK "+c.attack, r.task.State, r.task.Error, r.task.Stderr)
	case r.verdict == "ESCAPED":
		t.Errorf("%s", r.line)
	case r.verdict == "ok" && !c.allowOK:
		t.Errorf("want refused: %s", r.line)
	case r.verdict != "refused" && r.verdict != "ok":
		t.Errorf("unknown verdict: %s", r.line)
	}

	// A provider that refused to return something says what.
	if len(c.names) > 0 && r.task.State != "completed" && !mentionsAny(r.task.Error, c.names) {
		t.Errorf("task %s with error %q, which names none of %q", r.task.State, r.task.Error, c.names)
	}
	if len(c.names) > 0 && r.getFailed != "" && !mentionsAny(r.getFailed, c.names) {
		t.Errorf("offload get failed with %q, which names none of %q", r.getFailed, c.names)
	}
}

// checkTreeHasNoSecret walks a fetched tree without following links: no
// file holds the secret and no link target carries it.
func (s *hostileSuite) checkTreeHasNoSecret(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if strings.Contains(target, s.secret) {
				t.Errorf("LEAK: the link %s carries the secret", p)
			}
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(s.secret)) {
				t.Errorf("LEAK: the fetched file %s holds the marker's secret", strings.TrimPrefix(p, root))
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk the fetched outputs: %v", err)
	}
}

func checkUID(t *testing.T, _ *hostileSuite, r *hostileRun) {
	if r.runtime != rtDocker || r.line == "" {
		return
	}
	m := regexp.MustCompile(`uid=(-?\d+) euid=(-?\d+)`).FindStringSubmatch(r.detail)
	if m == nil {
		t.Fatalf("no uid in %q", r.line)
	}
	if m[1] == "0" || m[2] == "0" {
		t.Errorf("a Docker task runs as root: %s", r.line)
	}
}

// checkLinksNotFollowed: where the fetched tree has these names, they are
// links (the get did not follow them) or files that are not the marker
// (checked by checkCommon).
func checkLinksNotFollowed(names ...string) func(*testing.T, *hostileSuite, *hostileRun) {
	return func(t *testing.T, s *hostileSuite, r *hostileRun) {
		if r.fetched == "" {
			return
		}
		for _, n := range names {
			fi, err := os.Lstat(filepath.Join(r.fetched, n))
			if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
				continue
			}
			if fi.IsDir() {
				t.Errorf("the fetched %s is a directory: a link to one was followed", n)
			}
		}
	}
}

// checkArtifactRefused: an artifact whose path goes through a link the task
// made must not be returned.
func checkArtifactRefused(t *testing.T, s *hostileSuite, r *hostileRun) {
	if r.task.State == "completed" {
		t.Errorf("the task completed with an artifact through a link (outputs %s); want it refused", r.task.Outputs)
	}
	if r.fetched == "" {
		return
	}
	err := filepath.WalkDir(r.fetched, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == filepath.Base(s.markerPath) {
			t.Errorf("the outputs hold %s", strings.TrimPrefix(p, r.fetched))
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
}

// checkHardlinks: the hard link between two output files comes back as two
// files with the same content (or the task was refused, checked by
// checkCommon), and nothing linked from outside /outputs came back as the
// marker.
func checkHardlinks(t *testing.T, _ *hostileSuite, r *hostileRun) {
	if r.fetched == "" {
		return
	}
	for _, n := range []string{"hl-a", "hl-b"} {
		b, err := os.ReadFile(filepath.Join(r.fetched, n))
		if err == nil && string(b) != "hardlink-source\n" {
			t.Errorf("fetched %s = %q, want the file the task wrote", n, b)
		}
	}
}

// checkNoSpecialFile: the special file the task planted does not come
// back as one.
func checkNoSpecialFile(name string, mode fs.FileMode) func(*testing.T, *hostileSuite, *hostileRun) {
	return func(t *testing.T, _ *hostileSuite, r *hostileRun) {
		if r.fetched == "" {
			return
		}
		if fi, err := os.Lstat(filepath.Join(r.fetched, name)); err == nil && fi.Mode()&mode != 0 {
			t.Errorf("the outputs hold the special file %s (%v)", name, fi.Mode())
		}
	}
}

func checkNoConnection(t *testing.T, s *hostileSuite, r *hostileRun) {
	if n := s.accepted.Swap(0); n != 0 {
		t.Errorf("the host listener accepted %d connection(s) from the task", n)
	}
}

// homeSnapshot lists a node's home (type, size and hash of each file),
// leaving out what the node itself changes while it runs: its database,
// block store, work and module cache directories.
func homeSnapshot(t *testing.T, home string) map[string]string {
	t.Helper()
	skip := map[string]bool{"db": true, "blocks": true, "work": true, "wasm-cache": true}
	snap := map[string]string{}
	err := filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(home, p)
		if d.IsDir() && skip[rel] {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += fmt.Sprintf(" %d %x", len(b), sum[:8])
		}
		snap[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", home, err)
	}
	return snap
}

func diffSnapshots(before, after map[string]string) []string {
	var diffs []string
	for p, b := range before {
		if a, found := after[p]; !found {
			diffs = append(diffs, "removed "+p)
		} else if a != b {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, found := before[p]; !found {
			diffs = append(diffs, "added "+p)
		}
	}
	slices.Sort(diffs)
	return diffs
}

func dirNames(entries []os.DirEntry) []string {
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func mentionsAny(text string, words []string) bool {
	for _, w := range words {
		if strings.Contains(text, w) {
			return true
		}
	}
	return false
}

// hostileCLI is offload with its own time limit: a provider that blocks on
// a trap must fail the subtest, not hang the suite.
func hostileCLI(t *testing.T, limit time.Duration, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("offload %s did not finish within %s\nstderr: %s", args[0], limit, stderr.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("offload %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}
