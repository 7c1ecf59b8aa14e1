package node

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/docker/go-units"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market/discovery"
)

// poolRoutes are the pool's routes:
//
//	GET /api/v1/pool?cpus=&memory=&gpus=&gpu_model=&arch=&os=&executor=&label=k=v...
//	GET /api/v1/pool/stats
func (s *apiServer) poolRoutes() []route {
	return []route{
		{"GET", "/api/v1/pool", "Providers this node knows, filtered by hardware", s.getPool},
		{"GET", "/api/v1/pool/stats", "Counters of the pool's capability records", s.getPoolStats},
	}
}

func (s *apiServer) getPool(w http.ResponseWriter, r *http.Request) {
	f, err := ParsePoolFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.n.Pool(f))
}

func (s *apiServer) getPoolStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.n.PoolStats())
}

// ParsePoolFilter reads a pool filter from query parameters (see
// client.PoolFilter.Query). A parameter set to "any" (or empty) does not
// filter; memory takes sizes such as 512m or 2g, or bytes.
func ParsePoolFilter(q url.Values) (client.PoolFilter, error) {
	var f client.PoolFilter
	set := func(name string) (string, bool) {
		v := strings.TrimSpace(q.Get(name))
		if strings.EqualFold(v, discovery.Any) {
			return "", false
		}
		return v, v != ""
	}
	if v, ok := set("cpus"); ok {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 {
			return f, fmt.Errorf("cpus %q is not a non-negative number", v)
		}
		f.CPUs = n
	}
	if v, ok := set("memory"); ok {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			return f, fmt.Errorf("memory %q is not a size (try 512m or 2g)", v)
		}
		f.MemoryBytes = n
	}
	if v, ok := set("gpus"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, fmt.Errorf("gpus %q is not a non-negative integer", v)
		}
		f.GPUs = n
	}
	f.GPUModel, _ = set("gpu_model")
	if v, ok := set("gpu_memory"); ok {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			return f, fmt.Errorf("gpu_memory %q is not a size (try 40g)", v)
		}
		f.GPUMemoryBytes = n
	}
	f.GPUCompute, _ = set("gpu_compute")
	f.CUDA, _ = set("cuda")
	if r := f.GPURequirements(); r != nil {
		if err := r.Validate(); err != nil {
			return f, err
		}
	}
	if v, ok := set("explain"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, fmt.Errorf("explain %q is not true or false", v)
		}
		f.Explain = b
	}
	f.Arch, _ = set("arch")
	f.OS, _ = set("os")
	f.Executor, _ = set("executor")
	f.Isolation, _ = set("isolation")
	for _, kv := range q["label"] {
		for _, part := range strings.Split(kv, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			k, v, ok := strings.Cut(part, "=")
			if !ok || k == "" {
				return f, fmt.Errorf("label %q is not k=v", part)
			}
			if f.Labels == nil {
				f.Labels = map[string]string{}
			}
			f.Labels[k] = v
		}
	}
	return f, nil
}
