package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

// liar runs the task and lies about its stdout: a legitimate adversary for
// redundancy and verification.
type liar struct{ executor.Executor }

func (l liar) Run(ctx context.Context, spec executor.Spec) (*executor.Result, error) {
	res, err := l.Executor.Run(ctx, spec)
	if res != nil {
		res.Stdout = []byte("lies\n")
	}
	return res, err
}

func wasmExec(t *testing.T, lying bool) []executor.Executor {
	ex, err := wasm.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.Close() })
	if lying {
		return []executor.Executor{liar{ex}}
	}
	return []executor.Executor{ex}
}

// wasmSwarm starts providers (true = lying) and a requestor, all connected,
// and returns the requestor and the hello module's CID.
func wasmSwarm(t *testing.T, lying ...bool) (*node.Node, []*node.Node, string) {
	t.Helper()
	mod := testimage.BuildWASM(t)
	var provs []*node.Node
	var boot []string
	for i, l := range lying {
		p := startNode(t, t.TempDir(), true, boot, func(c *node.Config) {
			c.ExecutorImpls = wasmExec(t, l)
			c.Price = 0.1 * float64(i+1)
		})
		provs = append(provs, p)
		boot = provs[0].Identity().Addrs
	}
	req := startNode(t, t.TempDir(), false, boot)
	waitPeers(t, req, len(provs))
	waitPool(t, req, provs, 15*time.Second) // every provider a candidate
	c, err := req.Add(t.Context(), mod, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	return req, provs, c
}

func TestRedundancyAgreement(t *testing.T) {
	req, provs, mod := wasmSwarm(t, false, false)
	spec := node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"echo", "same"}, TimeoutMS: 60_000, Redundancy: 2}
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.Stdout != "same\n" {
		t.Fatalf("redundant task: %s %q (%s)", got.State, got.Stdout, got.Error)
	}
	seen := map[string]bool{}
	for _, e := range got.Executions {
		seen[e.Provider] = true
	}
	if len(got.Executions) != 2 || len(seen) != 2 || !seen[provs[0].ID().String()] || !seen[provs[1].ID().String()] {
		t.Fatalf("want one execution on each provider, got %+v", got.Executions)
	}
}

func TestRedundancyDisagreementFailsUnverified(t *testing.T) {
	req, _, mod := wasmSwarm(t, false, true)
	spec := node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"echo", "truth"}, TimeoutMS: 60_000, Redundancy: 2}
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "failed" || !strings.Contains(got.Error, "unverified") || len(got.Executions) != 2 {
		t.Fatalf("want failed unverified with both executions, got %s %q %d", got.State, got.Error, len(got.Executions))
	}
}

func TestSubtasksWithGoVerifyRerunRejectedPieces(t *testing.T) {
	req, provs, mod := wasmSwarm(t, true, false) // the cheapest provider lies
	spec := node.TaskSpec{Runtime: "wasm", Image: mod, TimeoutMS: 60_000, Retries: wire.Retries(2)}
	for i := range 4 {
		spec.Subtasks = append(spec.Subtasks, wire.Subtask{Cmd: []string{"echo", "piece", string(rune('a' + i))}})
	}
	rejected := 0
	verify := func(ctx context.Context, piece int, child *node.MarketTask) error {
		if child.Result.Stdout != "piece "+string(rune('a'+piece))+"\n" {
			rejected++
			return errors.New("wrong answer")
		}
		return nil
	}
	sub, err := req.SubmitVerified(t.Context(), spec, verify)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, 2*time.Minute)
	if got.State != "completed" {
		t.Fatalf("subtasks: %s %q children=%+v", got.State, got.Error, got.Children)
	}
	if got.Stdout != "piece a\npiece b\npiece c\npiece d\n" {
		t.Errorf("aggregate stdout = %q", got.Stdout)
	}
	if rejected == 0 {
		t.Error("the lying provider's pieces were never rejected")
	}
	accepted := 0
	for _, c := range got.Children {
		if c.Verdict == "accepted" {
			accepted++
			if c.Provider == provs[0].ID().String() {
				t.Errorf("a piece from the liar was accepted: %+v", c)
			}
		}
	}
	if accepted != 4 {
		t.Errorf("accepted pieces = %d, children %+v", accepted, got.Children)
	}
}

func TestSubtasksVerifyStepOnRequestor(t *testing.T) {
	req, _, mod := wasmSwarm(t, false)
	base := node.TaskSpec{Runtime: "wasm", Image: mod, TimeoutMS: 60_000, Retries: wire.Retries(1),
		Subtasks: []wire.Subtask{{Cmd: []string{"write", "/outputs/r.txt", "one"}}, {Cmd: []string{"write", "/outputs/r.txt", "two"}}}}

	pass := base
	pass.Verify = &wire.Verify{Runtime: "wasm", Image: mod, Cmd: []string{"cat", "/inputs/piece/r.txt"}}
	sub, err := req.Submit(t.Context(), pass)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, req, sub.ID, 2*time.Minute); got.State != "completed" || len(got.Children) != 2 {
		t.Fatalf("verify pass: %s %q %+v", got.State, got.Error, got.Children)
	}

	fail := base
	fail.Verify = &wire.Verify{Runtime: "wasm", Image: mod, Cmd: []string{"exit", "1"}}
	sub, err = req.Submit(t.Context(), fail)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, 2*time.Minute)
	if got.State != "failed" || !strings.Contains(got.Error, "rejected: verify exited 1") || !strings.Contains(got.Error, "excluded") {
		t.Fatalf("verify fail: %s %q", got.State, got.Error)
	}
}
