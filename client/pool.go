package client

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	// Unmet, in a listing with PoolFilter.Explain, is the first
	// requirement of the filter this provider fails ("" when it matches).
	Unmet string `json:"unmet,omitempty"`
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
	// GPUMemoryBytes, GPUCompute ("8.0") and CUDA ("12.2") are typed
	// minimums each of the GPUs must meet; GPUModel may list models,
	// comma-separated (any of them).
	GPUMemoryBytes int64
	GPUCompute     string
	CUDA           string
	// Explain lists every provider, each that does not match with the
	// requirement it fails (Provider.Unmet).
	Explain bool
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
	if f.GPUMemoryBytes > 0 {
		q.Set("gpu_memory", strconv.FormatInt(f.GPUMemoryBytes, 10))
	}
	if f.Explain {
		q.Set("explain", "true")
	}
	for k, v := range map[string]string{"gpu_model": f.GPUModel, "gpu_compute": f.GPUCompute, "cuda": f.CUDA, "arch": f.Arch, "os": f.OS, "executor": f.Executor, "isolation": f.Isolation} {
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

// GPURequirements are the filter's typed GPU requirements (nil when it
// has none): its models (GPUModel, comma-separated), memory, compute
// capability and CUDA version.
func (f PoolFilter) GPURequirements() *wire.GPURequirements {
	r := &wire.GPURequirements{MemoryBytes: f.GPUMemoryBytes, Compute: f.GPUCompute, CUDA: f.CUDA}
	for _, m := range strings.Split(f.GPUModel, ",") {
		if m = strings.TrimSpace(m); m != "" && !strings.EqualFold(m, "any") {
			r.Models = append(r.Models, m)
		}
	}
	if r.MemoryBytes == 0 && r.Compute == "" && r.CUDA == "" && len(r.Models) == 0 {
		return nil
	}
	return r
}
