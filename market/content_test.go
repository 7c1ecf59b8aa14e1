//go:build linux

package market

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/internal/safefs"
	"github.com/offload-project/offload/market/wire"
)

// secret is what a host file outside every work directory holds.
const secret = "SECRET-host-file"

// fakeContent records what the market adds and writes trees for GetTo.
type fakeContent struct {
	added map[string]string // pin name -> dir
	// tree builds the content of GetTo at dest.
	tree func(dest string) error
	// seen holds every regular file's bytes under an added dir, read when
	// AddDir was called (the dir is gone after the run).
	seen [][]byte
	// limits records the maxBytes each GetTo was given, by CID.
	limits map[string]int64
	// sizes are the DAG sizes Size reports (CIDs held whole).
	sizes map[string]int64
	// dagSize, when set, is the size of every DAG GetTo is asked for:
	// GetTo fails as the real store does when it is over maxBytes.
	dagSize int64
}

func (f *fakeContent) GetTo(_ context.Context, c string, dest string, _ peer.ID, maxBytes int64) error {
	if f.limits == nil {
		f.limits = map[string]int64{}
	}
	f.limits[c] = maxBytes
	if f.dagSize > 0 && maxBytes > 0 && f.dagSize > maxBytes {
		return fmt.Errorf("%w: the DAG holds more than %d bytes (%d fetched so far)", ErrOverQuota, maxBytes, f.dagSize)
	}
	return f.tree(dest)
}

func (f *fakeContent) Size(_ context.Context, c string) (int64, bool) {
	n, ok := f.sizes[c]
	return n, ok
}
func (f *fakeContent) FetchPin(context.Context, string, peer.ID, string) error { return nil }

// AddDir holds to the contract of an untrusted add as the real store does
// (it reads the tree through safefs: no link followed, special files and
// hard links refused, bytes counted).
func (f *fakeContent) AddDir(_ context.Context, dir, name string, maxBytes int64) (string, error) {
	tmp, err := os.MkdirTemp("", "fake-add-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := safefs.Copy(dir, ".", tmp, &safefs.Limit{Max: maxBytes}); err != nil {
		if errors.Is(err, safefs.ErrQuota) {
			return "", fmt.Errorf("%w: %w", ErrOverQuota, err)
		}
		return "", err
	}
	// Only a tree that was accepted is added (and pinned).
	if f.added == nil {
		f.added = map[string]string{}
	}
	f.added[name] = dir
	err = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.seen = append(f.seen, b)
		}
		return err
	})
	return "bafy-" + name, err
}
func (f *fakeContent) Unpin(context.Context, string) error           { return nil }
func (f *fakeContent) Share(peer.ID, ...string) func()               { return func() {} }
func (f *fakeContent) Has(context.Context, string) bool              { return false }
func (f *fakeContent) LocalFraction(context.Context, string) float64 { return 0 }
func (f *fakeContent) leaked() bool {
	for _, b := range f.seen {
		if bytes.Contains(b, []byte(secret)) {
			return true
		}
	}
	return false
}

// hostFile is a file outside the provider's work directory, standing for
// /etc/shadow, mode 0600.
func hostFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkHostFile(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host file mode changed: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(p); string(b) != secret {
		t.Fatalf("host file changed: %q", b)
	}
}

// testRun lays out an execution's directories as prepare does and returns
// the provider, its record and the prepared run.
func testRun(t *testing.T, quota int64, artifacts ...string) (*Provider, *fakeContent, *ExecRecord, *prepared) {
	t.Helper()
	fc := &fakeContent{tree: func(string) error { return nil }}
	p := &Provider{cfg: ProviderConfig{Content: fc, OutputsQuota: quota, WorkDir: t.TempDir()}}
	rec := &ExecRecord{Key: execKey("12D3KooWRequestor", "task-1", 1), TaskID: "task-1", Attempt: 1, Requestor: "12D3KooWRequestor",
		Spec: wire.TaskSpec{Image: "local-image", Artifacts: artifacts}}
	pr, err := p.prepare(t.Context(), nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	return p, fc, rec, pr
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestArtifactThroughSymlinkRefused(t *testing.T) {
	host := hostFile(t)
	for _, tc := range []struct {
		name, artifact, link, target, want string
	}{
		{"outputs component", "/outputs/link" + host, "outputs/link", "/", `path component "link" is a symbolic link`},
		{"outputs last element", "/outputs/x", "outputs/x", host, `"x" is a symbolic link`},
		{"work component", "/work/w/" + filepath.Base(host), "work/w", filepath.Dir(host), `path component "w" is a symbolic link`},
		{"nested component", "/outputs/a/b/" + filepath.Base(host), "outputs/a/b", filepath.Dir(host), `path component "a/b" is a symbolic link`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, fc, rec, pr := testRun(t, 1<<20, tc.artifact)
			link := filepath.Join(pr.workDir, tc.link)
			os.MkdirAll(filepath.Dir(link), 0o755)
			if err := os.Symlink(tc.target, link); err != nil {
				t.Fatal(err)
			}
			c, err := p.collectOutputs(t.Context(), rec, pr)
			if err == nil || !strings.Contains(err.Error(), "artifact "+tc.artifact+": refused: "+tc.want) {
				t.Fatalf("got %q %v", c, err)
			}
			if len(fc.added) != 0 || fc.leaked() {
				t.Fatalf("added %v", fc.added)
			}
			checkHostFile(t, host)
		})
	}
}

func TestOutputsKeepSymlinksAsLinks(t *testing.T) {
	host := hostFile(t)
	for _, artifacts := range [][]string{nil, {"/outputs/d"}} {
		p, fc, rec, pr := testRun(t, 1<<20, artifacts...)
		write(t, filepath.Join(pr.spec.OutputsDir, "d", "ok.txt"), "result")
		os.Symlink(host, filepath.Join(pr.spec.OutputsDir, "d", "abs"))
		os.Symlink("/", filepath.Join(pr.spec.OutputsDir, "d", "root"))
		c, err := p.collectOutputs(t.Context(), rec, pr)
		if err != nil || c == "" {
			t.Fatalf("%v: %q %v", artifacts, c, err)
		}
		dir := fc.added["outputs:"+rec.Key]
		if got, _ := os.Readlink(filepath.Join(dir, "d", "abs")); got != host {
			t.Errorf("%v: link copied as %q", artifacts, got)
		}
		if fc.leaked() || len(fc.seen) != 1 || string(fc.seen[0]) != "result" {
			t.Errorf("%v: added files %q", artifacts, fc.seen)
		}
	}
}

func TestOutputsRefuseHardLinksAndSpecialFiles(t *testing.T) {
	host := hostFile(t)
	for _, tc := range []struct {
		name string
		make func(t *testing.T, p string)
		want string
	}{
		{"hard link", func(t *testing.T, p string) {
			if err := os.Link(host, p); err != nil {
				t.Skip("host file on another file system:", err)
			}
		}, "is a hard link"},
		{"fifo", func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o666); err != nil {
				t.Fatal(err)
			}
		}, "is a named pipe"},
		{"device", func(t *testing.T, p string) {
			if os.Geteuid() != 0 {
				t.Skip("mknod needs root")
			}
			if err := syscall.Mknod(p, syscall.S_IFBLK|0o600, 7<<8); err != nil {
				t.Fatal(err)
			}
		}, "is a block device"},
	} {
		for _, artifacts := range [][]string{nil, {"/outputs/d"}, {"/outputs/d/x"}} {
			t.Run(tc.name+" "+strings.Join(artifacts, ","), func(t *testing.T) {
				p, fc, rec, pr := testRun(t, 1<<20, artifacts...)
				os.MkdirAll(filepath.Join(pr.spec.OutputsDir, "d"), 0o755)
				tc.make(t, filepath.Join(pr.spec.OutputsDir, "d", "x"))
				done := make(chan error, 1)
				go func() {
					_, err := p.collectOutputs(t.Context(), rec, pr)
					done <- err
				}()
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), "refused: ") || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("got %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("collecting blocked")
				}
				if len(fc.added) != 0 || fc.leaked() {
					t.Fatalf("added %v", fc.added)
				}
				checkHostFile(t, host)
			})
		}
	}
}

func TestOutputsQuotaWhileCopying(t *testing.T) {
	for _, artifacts := range [][]string{nil, {"/outputs/a", "/outputs/b"}} {
		p, fc, rec, pr := testRun(t, 10, artifacts...)
		write(t, filepath.Join(pr.spec.OutputsDir, "a"), "123456")
		write(t, filepath.Join(pr.spec.OutputsDir, "b"), "123456")
		_, err := p.collectOutputs(t.Context(), rec, pr)
		if err == nil || !strings.Contains(err.Error(), "over this provider's quota of 10 bytes") {
			t.Fatalf("%v: %v", artifacts, err)
		}
		if len(fc.added) != 0 {
			t.Fatalf("added %v", fc.added)
		}
	}
}

func TestArtifactMissingOrColliding(t *testing.T) {
	p, _, rec, pr := testRun(t, 1<<20, "/outputs/missing.bin")
	if _, err := p.collectOutputs(t.Context(), rec, pr); err == nil || !strings.Contains(err.Error(), "missing.bin was not produced") {
		t.Fatalf("missing: %v", err)
	}
	p, _, rec, pr = testRun(t, 1<<20, "/outputs/d", "/outputs/d/f")
	write(t, filepath.Join(pr.spec.OutputsDir, "d", "f"), "x")
	if _, err := p.collectOutputs(t.Context(), rec, pr); err == nil || !strings.Contains(err.Error(), "collides") {
		t.Fatalf("collision: %v", err)
	}
}

// TestContentTenantsApart: two requestors' awards of one task id and
// attempt get different work directories and pin names.
func TestContentTenantsApart(t *testing.T) {
	a := &ExecRecord{Key: execKey("12D3KooWAlice", "same-task", 1), TaskID: "same-task", Attempt: 1}
	b := &ExecRecord{Key: execKey("12D3KooWMallory", "same-task", 1), TaskID: "same-task", Attempt: 1}
	if execDirName(a) == execDirName(b) {
		t.Fatalf("both get %s", execDirName(a))
	}
	if !strings.HasPrefix(execDirName(a), "sametask-") || len(execDirName(a)) != len("sametask-")+64 {
		t.Errorf("dir name %s", execDirName(a))
	}
	evil := &ExecRecord{Key: execKey("p", "../../etc", 1), TaskID: "../../etc", Attempt: 1}
	if n := execDirName(evil); strings.ContainsAny(n, "./") {
		t.Errorf("dir name %s", n)
	}
	p, fc, rec, pr := testRun(t, 1<<20)
	write(t, filepath.Join(pr.spec.OutputsDir, "r"), "x")
	if _, err := p.collectOutputs(t.Context(), rec, pr); err != nil {
		t.Fatal(err)
	}
	if _, ok := fc.added["outputs:"+rec.Key]; !ok {
		t.Errorf("pins %v", fc.added)
	}
	if filepath.Base(pr.workDir) != execDirName(rec) {
		t.Errorf("work dir %s", pr.workDir)
	}
}

// TestVolumeChmodAndCollectNeverFollow: a fetched volume (the requestor's
// tree) holds a symlink to a host file; opening it up for the task must
// not chmod the host file, and collecting it after the run must keep the
// link a link and refuse a hard link the task made.
func TestVolumeChmodAndCollectNeverFollow(t *testing.T) {
	host := hostFile(t)
	fc := &fakeContent{tree: func(dest string) error {
		write(t, filepath.Join(dest, "data.txt"), "vol")
		return os.Symlink(host, filepath.Join(dest, "shadow"))
	}}
	p := &Provider{cfg: ProviderConfig{Content: fc, OutputsQuota: 1 << 20, WorkDir: t.TempDir()}}
	rec := &ExecRecord{Key: execKey("req", "t", 0), TaskID: "t", Requestor: "req",
		Spec: wire.TaskSpec{Image: "img", Volumes: []wire.Volume{{Name: "v", Path: "/v", CID: "bafyvolume"}}}}
	pr, err := p.prepare(t.Context(), nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	checkHostFile(t, host)
	dir := pr.volumes[0].dir
	if fi, _ := os.Stat(filepath.Join(dir, "data.txt")); fi.Mode().Perm() != 0o666 {
		t.Errorf("volume file mode %v", fi.Mode())
	}
	res, err := p.collectVolumes(t.Context(), rec, pr)
	if err != nil || len(res) != 1 || res[0].Size != 3 || res[0].CID != "bafy-volume:"+rec.Key+":v" {
		t.Fatalf("collect: %+v %v", res, err)
	}
	if fc.leaked() {
		t.Fatal("host file added")
	}
	if err := os.Link(host, filepath.Join(dir, "hard")); err != nil {
		t.Skip("host file on another file system:", err)
	}
	os.RemoveAll(filepath.Join(pr.workDir, "collected"))
	if _, err := p.collectVolumes(t.Context(), rec, pr); err == nil || !strings.Contains(err.Error(), `"hard" is a hard link`) {
		t.Fatalf("hard link: %v", err)
	}
	checkHostFile(t, host)
}

// TestVolumeFetchedAsSymlinkRefused: a volume whose fetched root is a
// symlink is not chmodded through.
func TestVolumeFetchedAsSymlinkRefused(t *testing.T) {
	host := hostFile(t)
	fc := &fakeContent{tree: func(dest string) error { return os.Symlink(filepath.Dir(host), dest) }}
	p := &Provider{cfg: ProviderConfig{Content: fc, OutputsQuota: 1 << 20, WorkDir: t.TempDir()}}
	rec := &ExecRecord{Key: execKey("req", "t", 0), TaskID: "t", Requestor: "req",
		Spec: wire.TaskSpec{Image: "img", Volumes: []wire.Volume{{Name: "v", Path: "/v", CID: "bafyvolume"}}}}
	if _, err := p.prepare(t.Context(), nil, rec); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("got %v", err)
	}
	checkHostFile(t, host)
	if fi, _ := os.Stat(filepath.Dir(host)); fi.Mode().Perm() == 0o777 {
		t.Fatal("chmodded the host directory")
	}
}

// TestKeyLocks: loads of one image take turns, loads of different images
// do not wait for each other, a waiter gives up with its context, and no
// entry outlives its users.
func TestKeyLocks(t *testing.T) {
	var k keyLocks
	unlockA, err := k.lock(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := k.lock(t.Context(), "b") // another image: no wait
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := k.lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held image: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := k.lock(t.Context(), "a")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlockA()
	unlockA() // twice is harmless
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	unlockB()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) != 0 {
		t.Fatalf("%d lock entries left", len(k.m))
	}
}

// quotaDirs mounts no filesystem: it makes the directory and counts mounts.
type quotaDirs struct{ mounted int }

func (q *quotaDirs) MountQuota(_ context.Context, dir string, _ int64) (io.Closer, error) {
	q.mounted++
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	return closerFunc(func() error { return os.RemoveAll(dir) }), nil
}

func (q *quotaDirs) ReleaseQuota(string) error { return nil }

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// boundingExecutor is an executor that bounds its tasks' writes itself.
type boundingExecutor struct{ executor.Executor }

func (boundingExecutor) BoundsDisk() bool { return true }

// makingExecutor makes /outputs itself, as executor/wasm does.
type makingExecutor struct{ boundingExecutor }

func (makingExecutor) MakesOutputsDir() bool { return true }

// TestPrepareOutputsLazy: an outputs-only task whose executor makes
// /outputs on first use gets no directory before its run; cleanup removes
// the directory when the task made one and is quiet when it did not.
func TestPrepareOutputsLazy(t *testing.T) {
	p := &Provider{cfg: ProviderConfig{WorkDir: filepath.Join(t.TempDir(), "work"), OutputsQuota: 1 << 20}}
	rec := func(task string) *ExecRecord {
		return &ExecRecord{Key: execKey("12D3KooWRequestor", task, 1), TaskID: task, Attempt: 1, Requestor: "12D3KooWRequestor",
			Spec: wire.TaskSpec{Image: "local-module"}}
	}
	for _, wrote := range []bool{false, true} {
		pr, err := p.prepare(t.Context(), makingExecutor{}, rec(fmt.Sprint("wrote-", wrote)))
		if err != nil {
			t.Fatal(err)
		}
		if !pr.bare || pr.spec.OutputsDir != pr.workDir {
			t.Fatalf("outputs-only layout: %+v", pr)
		}
		if _, err := os.Lstat(pr.workDir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the directory was made before the run: %v", err)
		}
		if wrote {
			write(t, filepath.Join(pr.spec.OutputsDir, "out.txt"), "result")
		}
		pr.cleanup(slog.New(slog.DiscardHandler))
		if _, err := os.Lstat(pr.workDir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("wrote %v: left after cleanup: %v", wrote, err)
		}
	}
}

// TestPrepareOutputsOnly: a task that needs nothing but /outputs (and no
// quota mount) gets its execution directory as its outputs directory, its
// own, fresh (whatever lay under its name is gone), writable by any user,
// and removed by cleanup whether it is empty or not; a task with anything
// more, or one whose writes a quota mount bounds, keeps the full layout.
func TestPrepareOutputsOnly(t *testing.T) {
	root := t.TempDir()
	q := &quotaDirs{}
	p := &Provider{cfg: ProviderConfig{WorkDir: filepath.Join(root, "work"), DiskQuota: q, OutputsQuota: 1 << 20}}
	rec := func(task string, s wire.TaskSpec) *ExecRecord {
		s.Image = "local-image"
		return &ExecRecord{Key: execKey("12D3KooWRequestor", task, 1), TaskID: task, Attempt: 1, Requestor: "12D3KooWRequestor", Spec: s}
	}
	bounding := boundingExecutor{}

	a, b := rec("a", wire.TaskSpec{}), rec("b", wire.TaskSpec{})
	// A stale directory under a's name is replaced, not reused.
	stale := filepath.Join(p.cfg.WorkDir, execDirName(a))
	write(t, filepath.Join(stale, "old", "f"), "stale")
	pa, err := p.prepare(t.Context(), bounding, a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.prepare(t.Context(), bounding, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range []*prepared{pa, pb} {
		if !pr.bare || pr.spec.OutputsDir != pr.workDir || pr.rwDir != pr.workDir || pr.quota != nil {
			t.Fatalf("outputs-only layout: %+v", pr)
		}
		entries, err := os.ReadDir(pr.spec.OutputsDir)
		if err != nil || len(entries) != 0 {
			t.Fatalf("outputs dir not fresh: %v %v", entries, err)
		}
		if fi, _ := os.Stat(pr.spec.OutputsDir); fi.Mode().Perm() != 0o777 {
			t.Fatalf("outputs dir mode %v", fi.Mode())
		}
	}
	if pa.spec.OutputsDir == pb.spec.OutputsDir {
		t.Fatal("two executions share an outputs dir")
	}
	write(t, filepath.Join(pa.spec.OutputsDir, "d", "out.txt"), "result")
	pa.cleanup(slog.New(slog.DiscardHandler))
	pb.cleanup(slog.New(slog.DiscardHandler)) // left empty
	if q.mounted != 0 {
		t.Fatalf("%d quota mounts for a task whose executor bounds its writes", q.mounted)
	}
	if entries, _ := os.ReadDir(p.cfg.WorkDir); len(entries) != 0 {
		t.Fatalf("left on disk: %v", entries)
	}

	for _, tc := range []struct {
		name  string
		ex    executor.Executor
		spec  wire.TaskSpec
		quota bool
	}{
		{"quota mount", nil, wire.TaskSpec{}, true},
		{"artifacts", bounding, wire.TaskSpec{Artifacts: []string{"/outputs/x"}}, false},
		{"stages", bounding, wire.TaskSpec{Stages: []wire.Stage{{Cmd: []string{"true"}}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q.mounted = 0
			r := rec(tc.name, tc.spec)
			pr, err := p.prepare(t.Context(), tc.ex, r)
			if err != nil {
				t.Fatal(err)
			}
			if pr.bare || pr.spec.OutputsDir != filepath.Join(pr.rwDir, "outputs") || (pr.quota != nil) != tc.quota || q.mounted != map[bool]int{false: 0, true: 1}[tc.quota] {
				t.Fatalf("layout: %+v (%d mounts)", pr, q.mounted)
			}
			if fi, err := os.Stat(pr.spec.OutputsDir); err != nil || fi.Mode().Perm() != 0o777 {
				t.Fatalf("outputs dir: %v %v", fi, err)
			}
			if fi, _ := os.Stat(pr.workDir); fi.Mode().Perm() != 0o700 {
				t.Fatalf("work dir mode %v", fi.Mode())
			}
			write(t, filepath.Join(pr.spec.OutputsDir, "out.txt"), "result")
			pr.cleanup(slog.New(slog.DiscardHandler))
			if entries, _ := os.ReadDir(p.cfg.WorkDir); len(entries) != 0 {
				t.Fatalf("left on disk: %v", entries)
			}
		})
	}
}
