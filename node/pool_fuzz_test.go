package node_test

import (
	"net/url"
	"testing"

	"github.com/offload-project/offload/node"
)

// FuzzParsePoolFilter feeds query strings of GET /api/v1/pool to
// ParsePoolFilter: it must not panic, and an accepted filter asks for no
// negative amount.
func FuzzParsePoolFilter(f *testing.F) {
	f.Add("cpus=2&memory=512m&gpus=1&gpu_model=h100&arch=amd64&os=linux&executor=docker&label=fpga%3Dxilinx")
	f.Add("cpus=any&memory=any&gpus=any")
	f.Add("cpus=-1")
	f.Add("memory=1e30t")
	f.Add("label=%3Dx&label=a,b")
	f.Add("gpus=99999999999999999999")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		pf, err := node.ParsePoolFilter(q)
		if err != nil {
			return
		}
		if pf.CPUs < 0 || pf.MemoryBytes < 0 || pf.GPUs < 0 {
			t.Fatalf("%q accepted as %+v", raw, pf)
		}
		for k := range pf.Labels {
			if k == "" {
				t.Fatalf("%q accepted a label without a name", raw)
			}
		}
	})
}
