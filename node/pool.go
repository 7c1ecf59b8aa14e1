package node

import (
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/executor/hardware"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/storage"
)

// startPool joins the capability topic, registers the validators of every
// topic the node joins (topicRules: the capability topic's check is the
// pool's) and starts the pool every node runs. It runs before the market
// subscribes to the task topic and before the pool subscribes to its own,
// so that no gossip message is delivered or relayed unchecked.
func (n *Node) startPool() error {
	topic, err := n.host.PubSub.Join(n.host.Topic(wire.TopicCaps))
	if err != nil {
		return fmt.Errorf("join capability topic: %w", err)
	}
	n.pool, err = discovery.NewPool(discovery.Network{Host: n.host, PubSub: n.host.PubSub, Routing: n.host.DHT, Namespace: n.host.Namespace}, topic, storage.NewTable[discovery.PoolEntry](n.db, "pool"), discovery.PoolConfig{Logger: n.cfg.Logger})
	if err != nil {
		return fmt.Errorf("open pool: %w", err)
	}
	if err := n.registerTopicRules(); err != nil {
		return fmt.Errorf("topic validators: %w", err)
	}
	if err := n.pool.Start(); err != nil {
		return fmt.Errorf("start pool: %w", err)
	}
	return nil
}

// advertHardware is the machine as a provider advertises it (and checks
// tasks' label and machine requirements against).
func advertHardware(info hardware.Info) wire.Hardware {
	hw := wire.Hardware{
		OS: info.OS, Arch: info.Arch, CPUModel: info.CPUModel, CPUs: info.CPUs,
		MemoryBytes: info.MemoryBytes, DiskFreeBytes: info.DiskFreeBytes,
		GPUs: []wire.GPU{}, Labels: info.Labels,
	}
	for _, g := range info.GPUs {
		hw.GPUs = append(hw.GPUs, advertGPU(g))
	}
	return hw
}

// newAdvertiser prepares the provider's adverts of its machine hw;
// the provider's OnChange (advertChanged) reaches it once n.adv is set.
func (n *Node) newAdvertiser(hw wire.Hardware, capacity market.Capacity) error {
	var err error
	var exs []string
	for _, e := range n.executors {
		exs = append(exs, e.Name())
	}
	n.adv, err = discovery.NewAdvertiser(n.pool, discovery.AdvertiserConfig{
		Hardware: hw, Executors: exs, Price: n.cfg.Price, Capacity: wire.Resources(capacity),
		Isolation: n.isolation, IsolationRequired: n.cfg.RequireGVisor,
		Free: func() wire.Resources {
			if n.prov == nil {
				return wire.Resources(capacity)
			}
			return wire.Resources(n.prov.Free())
		},
		Software: softwareVersion(), Logger: n.cfg.Logger,
	})
	return err
}

// advertChanged is the provider's OnChange hook.
func (n *Node) advertChanged() {
	if n.adv != nil {
		n.adv.Changed()
	}
}

// closePool stops advertising and the pool.
func (n *Node) closePool() error {
	if n.adv != nil {
		n.adv.Close()
	}
	if n.pool != nil {
		return n.pool.Close()
	}
	return nil
}

func softwareVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return "offload/" + bi.Main.Version
	}
	return "offload/devel"
}

// Pool lists the providers this node knows (itself included when it is a
// provider) that match f, ordered by peer ID.
func (n *Node) Pool(f client.PoolFilter) []client.Provider {
	df := discovery.PoolFilter{
		CPUs: f.CPUs, MemoryBytes: f.MemoryBytes, GPUs: f.GPUs, GPU: f.GPURequirements(),
		Arch: f.Arch, OS: f.OS, Executor: f.Executor, Isolation: f.Isolation, Labels: f.Labels,
	}
	list := df
	if f.Explain {
		list = discovery.PoolFilter{} // every provider, each with what it fails
	}
	entries := n.pool.List(list)
	out := make([]client.Provider, 0, len(entries))
	for _, e := range entries {
		r := e.Record
		hw := r.Hardware
		if hw.GPUs == nil {
			hw.GPUs = []wire.GPU{}
		}
		if hw.Labels == nil {
			hw.Labels = map[string]string{}
		}
		out = append(out, client.Provider{
			Peer: r.Peer, Addrs: nonNil(r.Addrs), Hardware: hw, Executors: nonNil(r.Executors), Price: r.Price,
			Isolation: nonNil(r.Isolation), IsolationRequired: r.IsolationRequired,
			Capacity: client.Capacity(r.Capacity), Free: client.Capacity(r.Free), Software: r.Software,
			SeenAt: e.SeenAt, Expires: time.UnixMilli(r.Expires).UTC(), Unmet: df.Why(&e.Record),
		})
	}
	return out
}

// PoolStats returns the pool's counters of accepted, ignored, rejected,
// expired and evicted records.
func (n *Node) PoolStats() discovery.PoolStats { return n.pool.Stats() }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// advertGPU is what a GPU's record says of it (never its device id).
func advertGPU(g hardware.GPU) wire.GPU {
	return wire.GPU{Vendor: g.Vendor, Model: g.Model, MemoryBytes: g.MemoryBytes,
		ComputeCapability: g.ComputeCapability, DriverVersion: g.DriverVersion, CUDAVersion: g.CUDAVersion}
}

// gpuDevices are the provider's GPUs, given to tasks by device id; with
// a configured capacity of fewer GPUs than detected, the first ones.
func gpuDevices(info hardware.Info, capacity market.Capacity) []market.GPUDevice {
	var out []market.GPUDevice
	for _, g := range info.GPUs {
		if len(out) == capacity.GPUs {
			break
		}
		out = append(out, market.GPUDevice{ID: g.DeviceID(), GPU: advertGPU(g)})
	}
	return out
}
