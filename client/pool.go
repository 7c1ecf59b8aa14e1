package client

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/offload-project/offload/market/wire"
)

// Hardware is a provider's machine as it advertises it: os, arch,
// cpu_model, cpus, memory_bytes, disk_free_bytes, gpus (vendor, model,
// memory_bytes) and labels.
type Hardware = wire.Hardware

// GPU is one accelerator of a provider.
type GPU = wire.GPU

// Capacity is an amount of compute.
type Capacity struct {
	CPUs        float64 `json:"cpus"`
	MemoryBytes int64   `json:"memory_bytes"`
	GPUs        int     `json:"gpus"`
}

// Provider is one entry of `offload pool --json`.
type Provider struct {
	Peer      string   `json:"peer"`
	Addrs     []string `json:"addrs"`
	Hardware  Hardware `json:"hardware"`
	Executors []string `json:"executors"`
	// Isolation lists the stronger sandboxes offered ("gvisor");
	// IsolationRequired says every task runs so.
	Isolation         []string `json:"isolation"`
	IsolationRequired bool     `json:"isolation_required"`
	// Price in credits per CPU-second.
	Price float64 `json:"price"`
	// Capacity is what the provider offers in all; Free what is not held
	// by bids or tasks as of its last advert.
	Capacity Capacity  `json:"capacity"`
	Free     Capacity  `json:"free"`
	Software string    `json:"software"`
	SeenAt   time.Time `json:"seen_at"`
	Expires  time.Time `json:"expires"`
}

// PoolFilter selects providers. Zero numbers and empty strings (or "any")
// match everything; a label with the value "any" too.
type PoolFilter struct {
	CPUs        float64
	MemoryBytes int64
	GPUs        int
	GPUModel    string
	Arch        string
	OS          string
	Executor    string
	Isolation   string
	Labels      map[string]string
}

// Query encodes the filter as the query of GET /api/v1/pool.
func (f PoolFilter) Query() url.Values {
	q := url.Values{}
	if f.CPUs > 0 {
		q.Set("cpus", strconv.FormatFloat(f.CPUs, 'f', -1, 64))
	}
	if f.MemoryBytes > 0 {
		q.Set("memory", strconv.FormatInt(f.MemoryBytes, 10))
	}
	if f.GPUs > 0 {
		q.Set("gpus", strconv.Itoa(f.GPUs))
	}
	for k, v := range map[string]string{"gpu_model": f.GPUModel, "arch": f.Arch, "os": f.OS, "executor": f.Executor, "isolation": f.Isolation} {
		if v != "" {
			q.Set(k, v)
		}
	}
	keys := make([]string, 0, len(f.Labels))
	for k := range f.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		q.Add("label", k+"="+f.Labels[k])
	}
	return q
}

// Pool lists the providers the node knows that match f.
func (c *Client) Pool(ctx context.Context, f PoolFilter) ([]Provider, error) {
	var out []Provider
	path := "/api/v1/pool"
	if q := f.Query().Encode(); q != "" {
		path += "?" + q
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}
