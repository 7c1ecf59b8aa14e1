//go:build linux

package market

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market/wire"
)

// namedExec is an executor of which prepare asks only the name.
type namedExec struct {
	executor.Executor
	name string
}

func (e namedExec) Name() string { return e.name }

// Real CIDs for the specs below (the fake store never parses them).
const (
	cidA = "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"
	cidB = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	cidC = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
	cidD = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
	cidE = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"
)

// fileOrDirTree writes a directory at a volume's destination and a file
// anywhere else (an input or a module).
func fileOrDirTree(dest string) error {
	if strings.Contains(dest, "/volumes/") {
		return os.Mkdir(dest, 0o755)
	}
	return os.WriteFile(dest, []byte("content"), 0o644)
}

// TestFetchLimitIsMinOfDeclaredAndProvider: every fetch of a task's
// content (its image, each input, each volume) is bounded by the smaller
// of its declared size and the provider's MaxFetchBytes, and by the
// provider's limit alone when nothing is declared.
func TestFetchLimitIsMinOfDeclaredAndProvider(t *testing.T) {
	const limit = 1 << 20
	for _, tc := range []struct {
		name     string
		provider int64 // ProviderConfig.MaxFetchBytes
		want     int64 // the provider's limit as applied
	}{
		{"configured", limit, limit},
		{"default", 0, DefaultMaxFetchBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := &fakeContent{tree: fileOrDirTree}
			p := &Provider{cfg: ProviderConfig{Content: fc, MaxFetchBytes: tc.provider, WorkDir: t.TempDir(), OutputsQuota: 1 << 20}}
			rec := &ExecRecord{Key: execKey("12D3KooWRequestor", "task-1", 1), TaskID: "task-1", Attempt: 1, Requestor: "12D3KooWRequestor",
				Spec: wire.TaskSpec{Runtime: "wasm", Image: cidA, ImageSize: 4096,
					Inputs: []wire.Input{
						{CID: cidB, Path: "/inputs/undeclared"},
						{CID: cidC, Path: "/inputs/small", Size: 1000},
						{CID: cidD, Path: "/inputs/huge", Size: 1 << 40},
					},
					Volumes: []wire.Volume{{Name: "v", Path: "/data", CID: cidE, Size: 2000}}}}
			pr, err := p.prepare(t.Context(), namedExec{name: "wasm"}, rec)
			if err != nil {
				t.Fatal(err)
			}
			pr.cleanup(p.log)
			want := map[string]int64{cidA: 4096, cidB: tc.want, cidC: 1000, cidD: tc.want, cidE: 2000}
			for c, w := range want {
				if got := fc.limits[c]; got != w {
					t.Errorf("fetch of %s bounded at %d, want %d (all: %v)", c, got, w, fc.limits)
				}
			}
		})
	}
}

// TestFetchOverDeclaredSizeIsNotContent: content larger than its declared
// size fails the preparation as not the content the task says (no other
// provider is tried), naming the input, the declared size and the bytes
// seen; content larger only than this provider's limit fails retryably.
func TestFetchOverDeclaredSizeIsNotContent(t *testing.T) {
	fc := &fakeContent{tree: fileOrDirTree, dagSize: 1 << 20}
	p := &Provider{cfg: ProviderConfig{Content: fc, MaxFetchBytes: 512 << 10, WorkDir: t.TempDir()}}
	run := func(in wire.Input) error {
		rec := &ExecRecord{Key: execKey("12D3KooWRequestor", "task-1", 1), TaskID: "task-1", Attempt: 1, Requestor: "12D3KooWRequestor",
			Spec: wire.TaskSpec{Image: "local-image", Inputs: []wire.Input{in}}}
		pr, err := p.prepare(t.Context(), namedExec{name: "docker"}, rec)
		pr.cleanup(p.log)
		return err
	}
	err := run(wire.Input{CID: cidB, Path: "/inputs/x", Size: 1024})
	if !errors.Is(err, errNotContent) || !errors.Is(err, ErrOverQuota) {
		t.Fatalf("over its declared size: %v, want errNotContent and ErrOverQuota", err)
	}
	for _, words := range []string{"input " + cidB + " for /inputs/x", "declared size of 1024 bytes", "1048576 fetched"} {
		if !strings.Contains(err.Error(), words) {
			t.Errorf("error %q does not say %q", err, words)
		}
	}
	for _, in := range []wire.Input{{CID: cidB, Path: "/inputs/x"}, {CID: cidB, Path: "/inputs/x", Size: 4 << 20}} {
		err = run(in)
		if !errors.Is(err, ErrOverQuota) || errors.Is(err, errNotContent) || !strings.Contains(err.Error(), "fetch limit of 524288 bytes") {
			t.Fatalf("declared %d, over this provider's limit only: %v, want a retryable ErrOverQuota naming the limit", in.Size, err)
		}
	}
}

// TestDeclareSizes: at submit the requestor declares the size of content
// it holds whole, keeps a larger size the user gave, leaves content it
// does not hold undeclared, refuses a declaration below what it holds, and
// never changes the caller's slices.
func TestDeclareSizes(t *testing.T) {
	fc := &fakeContent{sizes: map[string]int64{cidA: 5000, cidB: 300, cidC: 7000, cidE: 900}}
	r := &Requestor{cfg: RequestorConfig{Content: fc}}
	inputs := []wire.Input{{CID: cidB, Path: "/inputs/held"}, {CID: cidD, Path: "/inputs/elsewhere"}, {CID: cidC, Path: "/inputs/roomy", Size: 9000}}
	spec := wire.TaskSpec{Runtime: "wasm", Image: cidA, Inputs: inputs,
		Subtasks: []wire.Subtask{{Inputs: []wire.Input{{CID: cidE, Path: "/inputs/piece"}}}},
		Volumes:  []wire.Volume{{Name: "v", Path: "/data", CID: cidE}, {Name: "new", Path: "/new"}}}
	if err := r.declareSizes(t.Context(), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.ImageSize != 5000 || spec.Inputs[0].Size != 300 || spec.Inputs[1].Size != 0 || spec.Inputs[2].Size != 9000 ||
		spec.Subtasks[0].Inputs[0].Size != 900 || spec.Volumes[0].Size != 900 || spec.Volumes[1].Size != 0 {
		t.Fatalf("declared: image %d, inputs %+v, subtask %+v, volumes %+v", spec.ImageSize, spec.Inputs, spec.Subtasks[0].Inputs, spec.Volumes)
	}
	if inputs[0].Size != 0 {
		t.Fatal("the caller's inputs were changed")
	}

	small := wire.TaskSpec{Image: "local:1", Inputs: []wire.Input{{CID: cidC, Path: "/inputs/x", Size: 6999}}}
	err := r.declareSizes(t.Context(), &small)
	if !errors.Is(err, wire.ErrInvalid) || !strings.Contains(err.Error(), "declared size 6999 bytes is smaller than the 7000 bytes") ||
		!strings.Contains(err.Error(), "input "+cidC+" for /inputs/x") {
		t.Fatalf("under-declared input: %v", err)
	}
}
