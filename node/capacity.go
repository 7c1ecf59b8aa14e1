package node

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/offload-project/offload/market"
)

// detectCapacity offers every core and the machine's total memory less a
// quarter kept for the host.
func detectCapacity() market.Capacity {
	c := market.Capacity{CPUs: float64(runtime.NumCPU()), MemoryBytes: 4 << 30}
	if mem := memTotal(); mem > 0 {
		c.MemoryBytes = mem - mem/4
	}
	return c
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
