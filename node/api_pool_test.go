package node_test

import (
	"net/url"
	"testing"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/node"
)

func TestParsePoolFilter(t *testing.T) {
	for _, tc := range []struct {
		query   string
		wantErr bool
		check   func(t *testing.T, f client.PoolFilter)
	}{
		{query: "", check: func(t *testing.T, f client.PoolFilter) {
			if f.CPUs != 0 || f.MemoryBytes != 0 || f.GPUs != 0 || f.Labels != nil {
				t.Errorf("empty query: %+v", f)
			}
		}},
		{query: "cpus=any&memory=any&gpus=any&arch=any&os=ANY&gpu_model=any&executor=any", check: func(t *testing.T, f client.PoolFilter) {
			if f.CPUs != 0 || f.MemoryBytes != 0 || f.GPUs != 0 || f.Arch != "" || f.OS != "" || f.GPUModel != "" || f.Executor != "" {
				t.Errorf("any: %+v", f)
			}
		}},
		{query: "cpus=2.5&memory=2g&gpus=1&gpu_model=h100&arch=arm64&os=linux&executor=wasm&label=fpga=xilinx&label=zone=eu,rack=3", check: func(t *testing.T, f client.PoolFilter) {
			if f.CPUs != 2.5 || f.MemoryBytes != 2<<30 || f.GPUs != 1 || f.GPUModel != "h100" || f.Arch != "arm64" ||
				f.OS != "linux" || f.Executor != "wasm" || len(f.Labels) != 3 || f.Labels["rack"] != "3" {
				t.Errorf("full: %+v", f)
			}
		}},
		{query: "memory=1073741824", check: func(t *testing.T, f client.PoolFilter) {
			if f.MemoryBytes != 1<<30 {
				t.Errorf("bytes: %+v", f)
			}
		}},
		{query: "cpus=-1", wantErr: true},
		{query: "cpus=many", wantErr: true},
		{query: "memory=lots", wantErr: true},
		{query: "gpus=1.5", wantErr: true},
		{query: "label=novalue", wantErr: true},
		{query: "label==x", wantErr: true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			f, err := node.ParsePoolFilter(q)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", f)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, f)
		})
	}
}
