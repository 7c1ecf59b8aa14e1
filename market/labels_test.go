package market_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// TestLabelRequirements: a task that requires a label runs only on
// providers that have it (with the value asked, or any value for
// wire.LabelAny), a task no provider's labels meet fails saying which
// label is missing, and a provider refuses an award whose spec asks for
// labels it lacks even after bidding for an announcement that did not.
func TestLabelRequirements(t *testing.T) {
	s := newSwarm(t)
	labelled := func(labels map[string]string) *testProvider {
		cfg := providerConfig(t, 1)
		cfg.Hardware.Labels = labels
		return s.provider(cfg)
	}
	xilinx := labelled(map[string]string{"fpga": "xilinx"})
	intel := labelled(map[string]string{"fpga": "intel", "site": "lab"})
	plain := labelled(nil)
	req := s.requestor(fastRequestor())
	rg := &rogue{t: t, peerNode: s.newPeer()}
	s.connect()

	runsOn := func(labels map[string]string) string {
		t.Helper()
		task := req.wait(t, req.submit(t, wire.TaskSpec{Labels: labels}), 10*time.Second)
		if task.State != market.StateCompleted {
			t.Fatalf("task needing %v: %s: %s", labels, task.State, task.Reason)
		}
		return task.Provider
	}
	for range 4 {
		if p := runsOn(map[string]string{"fpga": "xilinx"}); p != xilinx.h.ID().String() {
			t.Fatalf("fpga=xilinx ran on %s, not the xilinx provider", p)
		}
		if p := runsOn(map[string]string{"fpga": wire.LabelAny}); p == plain.h.ID().String() {
			t.Fatal("fpga=* ran on the provider without an fpga label")
		}
		if p := runsOn(map[string]string{"fpga": "", "site": "lab"}); p != intel.h.ID().String() {
			t.Fatalf("fpga, site=lab ran on %s, not the intel provider", p)
		}
	}
	none := req.wait(t, req.submit(t, wire.TaskSpec{Labels: map[string]string{"gpu-kind": "tpu"}}), 10*time.Second)
	if none.State != market.StateFailed || !strings.Contains(none.Reason, "no label gpu-kind") {
		t.Fatalf("a label nobody has: %s: %q", none.State, none.Reason)
	}

	// The rogue bids for an announcement without labels, then awards a
	// spec that needs one: refused, and the reservation is given back.
	free := plain.p.Free()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := rg.h.NewStream(ctx, plain.h.ID(), wire.ProtoAsk)
	if err != nil {
		t.Fatal(err)
	}
	spec := wire.TaskSpec{Image: "test:1", Cmd: []string{"x"}}
	ann := wire.Announce{Version: wire.Version, TaskID: "swap", Attempt: 1, Requestor: rg.h.ID().String(),
		Req: wire.RequirementsOf(spec), BidDeadline: time.Now().Add(2 * time.Second).UnixMilli()}
	if err := stream.WriteMsg(st, &ann); err != nil {
		t.Fatal(err)
	}
	var bid wire.Bid
	if err := stream.ReadMsg(stream.NewReader(st), wire.MaxBidSize, &bid); err != nil || bid.Decline != "" {
		t.Fatalf("bid %+v, %v", bid, err)
	}
	if err := stream.WriteMsg(st, &wire.BidAck{OK: true}); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	spec.Labels = map[string]string{"fpga": wire.LabelAny}
	got := ack[wire.AwardReply](t, "award", rg.send(plain.h.ID(), wire.ProtoAward, frame(t, &wire.Award{TaskID: "swap", Attempt: 1, Spec: spec})))
	if got.Accepted || !strings.Contains(got.Reason, "no label fpga") {
		t.Fatalf("award needing a label the provider lacks: %+v", got)
	}
	waitFor(t, 2*time.Second, "reservation given back", func() bool { return plain.p.Free() == free })
	if recs := mustList(t, plain.store); len(recs) != 0 {
		t.Fatalf("the refused award left %d records", len(recs))
	}
}

// TestMachineRequirements: a task that asks for an architecture, a CPU
// model, CPUs or memory in the machine runs only on a provider whose
// machine has them, and fails naming what each provider lacks when none
// does.
func TestMachineRequirements(t *testing.T) {
	s := newSwarm(t)
	machine := func(hw wire.Hardware) *testProvider {
		cfg := providerConfig(t, 1)
		cfg.Hardware = hw
		return s.provider(cfg)
	}
	epyc := machine(wire.Hardware{OS: "linux", Arch: "amd64", CPUModel: "AMD EPYC 7763 64-Core Processor", CPUs: 64, MemoryBytes: 256 << 30})
	graviton := machine(wire.Hardware{OS: "linux", Arch: "arm64", CPUModel: "Neoverse-V1", CPUs: 8, MemoryBytes: 16 << 30})
	req := s.requestor(fastRequestor())
	s.connect()
	for _, tc := range []struct {
		m    wire.MachineRequirements
		want *testProvider
	}{
		{wire.MachineRequirements{Arch: "aarch64"}, graviton},
		{wire.MachineRequirements{Arch: "x86_64", OS: "Linux"}, epyc},
		{wire.MachineRequirements{CPUModel: "epyc"}, epyc},
		{wire.MachineRequirements{CPUs: 16}, epyc},
		{wire.MachineRequirements{MemoryBytes: 64 << 30}, epyc},
		{wire.MachineRequirements{OS: "linux", CPUs: 8, MemoryBytes: 16 << 30, CPUModel: "neoverse"}, graviton},
	} {
		task := req.wait(t, req.submit(t, wire.TaskSpec{Machine: &tc.m}), 10*time.Second)
		if task.State != market.StateCompleted || task.Provider != tc.want.h.ID().String() {
			t.Fatalf("machine %+v: %s on %s: %s", tc.m, task.State, task.Provider, task.Reason)
		}
	}
	none := req.wait(t, req.submit(t, wire.TaskSpec{Machine: &wire.MachineRequirements{Arch: "riscv64"}}), 10*time.Second)
	if none.State != market.StateFailed || !strings.Contains(none.Reason, "arch amd64, not riscv64") || !strings.Contains(none.Reason, "arch arm64, not riscv64") {
		t.Fatalf("an arch nobody has: %s: %q", none.State, none.Reason)
	}
}
