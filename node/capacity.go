package node

import (
	"runtime"

	"github.com/offload-project/offload/executor/hardware"
	"github.com/offload-project/offload/market"
)

// capacityOf is what a provider offers by default: every core, the
// machine's memory less a quarter kept for the host, and every GPU found.
func capacityOf(info hardware.Info) market.Capacity {
	c := market.Capacity{CPUs: float64(info.CPUs), MemoryBytes: info.MemoryBytes - info.MemoryBytes/4, GPUs: len(info.GPUs)}
	if c.CPUs <= 0 {
		c.CPUs = float64(runtime.NumCPU())
	}
	if c.MemoryBytes <= 0 {
		c.MemoryBytes = 4 << 30
	}
	return c
}
