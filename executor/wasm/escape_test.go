package wasm_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/internal/testimage"
)

// attackDir holds the attack guest built for this test process; TestMain
// removes it.
var attackDir string

// attackModule builds testdata/attack (a hostile guest) for wasip1 once per
// test process, into a temporary directory.
var attackModule = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "offload-wasm-attack-")
	if err != nil {
		return "", err
	}
	attackDir = dir
	out := filepath.Join(dir, "attack.wasm")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := testimage.CompileGo(ctx, filepath.Join("testdata", "attack"), "wasip1", "wasm", out); err != nil {
		return "", err
	}
	return out, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if attackDir != "" {
		os.RemoveAll(attackDir)
	}
	os.Exit(code)
}

func buildAttack(t *testing.T) string {
	t.Helper()
	p, err := attackModule()
	if err != nil {
		t.Fatalf("build the attack guest: %v", err)
	}
	return p
}

// attacks parses the guest's "ATTACK name: outcome" lines.
func attacks(t *testing.T, stdout []byte) map[string]string {
	t.Helper()
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "ATTACK ")
		if !ok {
			continue
		}
		name, outcome, ok := strings.Cut(rest, ": ")
		if !ok {
			t.Errorf("bad attack line %q", sc.Text())
			continue
		}
		got[name] = outcome
	}
	return got
}

// checkAttacks compares the outcomes with want (name -> outcome, such as
// "refused: EPERM" or "ok") and reports any attack the guest ran that want
// does not list.
func checkAttacks(t *testing.T, got, want map[string]string) {
	t.Helper()
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch outcome, ok := got[name]; {
		case !ok:
			t.Errorf("attack %s: did not run", name)
		case strings.HasPrefix(outcome, "ESCAPED"):
			t.Errorf("attack %s: %s", name, outcome)
		case outcome != want[name]:
			t.Errorf("attack %s: %q, want %q", name, outcome, want[name])
		}
	}
	for name, outcome := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("attack %s (%s) is not checked by the test", name, outcome)
		}
	}
}

// tree lists every path under dir (links not followed) with its type, size
// and mode, skipping the directories in skip.
func tree(t *testing.T, dir string, skip ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, s := range skip {
			if p == s {
				out = append(out, p+" (mount)")
				return filepath.SkipDir
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, p+" "+fi.Mode().String()+" "+strconv.FormatInt(fi.Size(), 10))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// noSecret fails when any regular file under dir holds secret.
func noSecret(t *testing.T, dir, secret string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})
}

// TestGuestCannotEscapeMounts runs a hostile guest that tries every way out
// of its mounts it can think of, through links it makes, links planted on
// the host, "..", directory descriptors, renames and hard links, and checks
// that each is refused and that nothing outside the mounts was read,
// changed or created.
func TestGuestCannotEscapeMounts(t *testing.T) {
	base := t.TempDir()
	secretDir := filepath.Join(base, "secret")
	outside := filepath.Join(base, "outside")
	in := filepath.Join(base, "in")
	out := filepath.Join(base, "out")
	work := filepath.Join(base, "work")
	tmpRoot := filepath.Join(base, "tmp")
	for _, d := range []string{secretDir, outside, in, out, work, tmpRoot, filepath.Join(in, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const secret = "TOP-SECRET-8c1f0e"
	marker := filepath.Join(secretDir, "marker.txt")
	must(t, os.WriteFile(marker, []byte(secret), 0o600))
	must(t, os.WriteFile(filepath.Join(in, "data.txt"), []byte("input!"), 0o644))
	// Links a requester could ship in its inputs, or a previous run leave in
	// a writable mount.
	must(t, os.Symlink(marker, filepath.Join(in, "abs")))
	must(t, os.Symlink("../secret/marker.txt", filepath.Join(in, "up")))
	must(t, os.Symlink("abs", filepath.Join(in, "chain")))
	must(t, os.Symlink(outside, filepath.Join(work, "outdir")))
	must(t, os.Symlink("../secret", filepath.Join(work, "secretdir")))
	before := tree(t, base, in, out, work, tmpRoot)

	e, _ := newExecutor(t, wasm.WithCacheDir(sharedCache()), wasm.WithTempRoot(tmpRoot))
	res, err := e.Run(t.Context(), executor.Spec{
		Image:      buildAttack(t),
		Cmd:        []string{"escape"},
		Env:        map[string]string{"MARKER": marker},
		OutputsDir: out,
		Mounts: []executor.Mount{
			{Source: in, Target: "/inputs", ReadOnly: true},
			{Source: work, Target: "/work"},
		},
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("guest stdout:\n%s", res.Stdout)
	if res.ExitCode != 0 || len(res.Stderr) > 0 {
		t.Errorf("exit %d, stderr %q", res.ExitCode, res.Stderr)
	}

	const eperm, erofs = "refused: EPERM", "refused: EROFS"
	checkAttacks(t, attacks(t, res.Stdout), map[string]string{
		"symlink-abs":                eperm, // absolute targets are refused at creation
		"symlink-dotdot":             eperm,
		"chain-make-l1":              "ok", // targets that stay inside as text are allowed
		"chain-make-l2":              "ok",
		"chain-make-l3":              "ok",
		"chain-make-l4":              "ok",
		"chain-make-lo":              "ok",
		"symlink-chain-read":         eperm, // following them out is not
		"symlink-chain-path":         eperm,
		"symlink-chain-stat":         eperm,
		"symlink-chain-create":       eperm,
		"symlink-chain-create-path":  eperm,
		"symlink-chain-mkdir":        eperm,
		"symlink-chain-readdir":      eperm,
		"symlink-nofollow":           "refused: ELOOP",
		"planted-abs-read":           eperm,
		"planted-up-read":            eperm,
		"planted-chain-read":         eperm,
		"planted-abs-stat":           eperm,
		"planted-dir-create":         eperm,
		"planted-dir-mkdir":          eperm,
		"planted-dir-symlink":        eperm,
		"planted-dir-open-directory": eperm,
		"planted-dir-readdir":        eperm,
		"planted-truncate":           eperm,
		"planted-unlink":             eperm,
		"planted-chtimes":            eperm,
		"hardlink-dotdot":            eperm, // wazero refuses a path starting with ..
		"hardlink-via-dirlink":       eperm,
		"hardlink-of-symlink-made":   "ok", // links the link itself
		"hardlink-of-symlink-read":   eperm,
		"rename-prepare":             "ok",
		"rename-cross-mount":         "refused: EXDEV",
		"rename-link-cross-mount":    "refused: EXDEV",
		"rename-raw-dotdot":          eperm,
		"rename-through-link":        eperm,
		"rename-prepare-2":           "ok",
		"rename-into-outside":        eperm,
		"dirfd-open":                 "ok",
		"dirfd-dotdot":               eperm,
		"dirfd-dotdot-marker":        eperm,
		"subdir-make":                "ok",
		"subdir-open":                "ok",
		"subdir-dotdot-dotdot":       eperm,
		"preopen-dotdot":             eperm,
		"preopen-link-directory":     eperm,
		"tmp-dotdot-list":            "refused: EBADF", // Go cleans it to "/", which is no mount
		"ro-write":                   erofs,
		"ro-create":                  erofs,
		"ro-append":                  erofs,
		"ro-truncate":                erofs,
		"ro-mkdir":                   erofs,
		"ro-unlink":                  erofs,
		"ro-rmdir":                   erofs,
		"ro-rename":                  erofs,
		"ro-link":                    erofs,
		"ro-symlink":                 erofs,
		"ro-chtimes":                 erofs,
		"ro-read":                    "ok",
	})

	if bytes.Contains(res.Stdout, []byte(secret)) || bytes.Contains(res.Stderr, []byte(secret)) {
		t.Error("the secret reached the guest's output")
	}
	noSecret(t, out, secret)
	noSecret(t, work, secret)
	if after := tree(t, base, in, out, work, tmpRoot); !slices.Equal(before, after) {
		t.Errorf("outside the mounts changed:\nbefore %q\nafter  %q", before, after)
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != secret {
		t.Errorf("marker: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(tmpRoot); len(ents) != 0 {
		t.Errorf("the run's /tmp was left behind: %v", ents)
	}
	if b, err := os.ReadFile(filepath.Join(in, "data.txt")); err != nil || string(b) != "input!" {
		t.Errorf("read-only input changed: %q, %v", b, err)
	}
}

// TestDiskQuota fills the quota across two writable mounts and checks that
// every way to write more is refused with ENOSPC, that the host never holds
// more than the quota, and that the result says so.
func TestDiskQuota(t *testing.T) {
	const quota = 1 << 20
	out, work := t.TempDir(), t.TempDir()
	e, _ := newExecutor(t, wasm.WithCacheDir(sharedCache()), wasm.WithDiskQuota(quota))
	res, err := e.Run(t.Context(), executor.Spec{
		Image:      buildAttack(t),
		Cmd:        []string{"fill"},
		OutputsDir: out,
		Mounts:     []executor.Mount{{Source: work, Target: "/work"}},
	})
	if !errors.Is(err, wasm.ErrDiskQuota) || res == nil {
		t.Fatalf("got %v, %v; want a result and ErrDiskQuota", res, err)
	}
	t.Logf("%v\nguest stdout:\n%s", err, res.Stdout)
	if res.ExitCode != 3 {
		t.Errorf("exit code %d, want 3", res.ExitCode)
	}
	if want := "offload: disk quota of 1048576 bytes reached (ENOSPC)\n"; !strings.HasSuffix(string(res.Stderr), want) {
		t.Errorf("stderr %q does not end with %q", res.Stderr, want)
	}

	const enospc = "refused: ENOSPC"
	checkAttacks(t, attacks(t, res.Stdout), map[string]string{
		"fill-open-a":             "ok",
		"fill-open-b":             "ok",
		"quota-fill":              enospc,
		"quota-pwrite-hole":       enospc,
		"quota-truncate-grow":     enospc,
		"quota-tmp":               enospc,
		"quota-mkdir":             enospc,
		"quota-unlink-open":       "ok",
		"quota-after-unlink-open": enospc, // the open file still holds its bytes
		"quota-close":             "ok",
		"quota-after-close":       "ok", // now they are back
	})

	var wrote int64
	for line := range strings.Lines(string(res.Stdout)) {
		if s, ok := strings.CutPrefix(line, "wrote "); ok {
			wrote, _ = strconv.ParseInt(strings.Fields(s)[0], 10, 64)
		}
	}
	if wrote <= 0 || wrote > quota {
		t.Errorf("the guest wrote %d bytes, quota %d", wrote, quota)
	}
	var onDisk int64
	for _, dir := range []string{out, work} {
		for _, p := range tree(t, dir) {
			f := strings.Fields(p)
			if n, err := strconv.ParseInt(f[len(f)-1], 10, 64); err == nil && !strings.HasPrefix(f[len(f)-2], "d") {
				onDisk += n
			}
		}
	}
	if onDisk > quota+4096 {
		t.Errorf("%d bytes on the host after the run, quota %d", onDisk, quota)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
