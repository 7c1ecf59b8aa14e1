package market

import (
	"errors"
	"fmt"
	"slices"

	"github.com/offload-project/offload/market/wire"
)

// GPUs on the provider. Each GPU it offers is a GPUDevice; a task gets
// GPUs exclusively, by device id: admission.assignGPUs picks, for a key
// that holds capacity, devices meeting the task's typed requirements that
// no other key holds, and release (the one exit of every hold) frees them
// with the rest.

// errGPUsTaken fails a run whose GPUs another task holds (a queued award
// whose turn came with the GPUs it needs taken): retryable elsewhere.
var errGPUsTaken = errors.New("the GPUs this task needs are taken")

// GPUDevice is one GPU a provider offers: the id the container engine
// knows it by (its UUID, else its index) and what it is.
type GPUDevice struct {
	ID string
	wire.GPU
}

// gpusOf lists what the devices are.
func gpusOf(devs []GPUDevice) []wire.GPU {
	out := make([]wire.GPU, len(devs))
	for i, d := range devs {
		out[i] = d.GPU
	}
	return out
}

// gpuDecline says why a provider with devs cannot run a task needing n
// GPUs that meet req, or "" when it has them (busy or not).
func gpuDecline(devs []GPUDevice, n int, req *wire.GPURequirements) string {
	if n == 0 && req == nil {
		return ""
	}
	_, why := wire.MatchGPUs(gpusOf(devs), max(n, 1), req)
	return why
}

// assignGPUs gives key's hold n devices meeting req that no other hold
// has (keeping those it has already) and returns them; or why it cannot.
// Without a device list (a provider configured with a GPU count only) it
// assigns nothing and the engine picks.
func (a *admission) assignGPUs(key string, n int, req *wire.GPURequirements) ([]string, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n <= 0 || len(a.gpus) == 0 {
		return nil, ""
	}
	h, ok := a.held[key]
	if !ok {
		return nil, "no capacity is held for this task"
	}
	if len(h.devices) >= n {
		return h.devices[:n], ""
	}
	busy := a.busyDevicesLocked(key)
	picked := slices.Clone(h.devices)
	for _, d := range a.gpus {
		if len(picked) == n {
			break
		}
		if busy[d.ID] || slices.Contains(picked, d.ID) || req.Unmet(d.GPU) != "" {
			continue
		}
		picked = append(picked, d.ID)
	}
	if len(picked) < n {
		return nil, fmt.Sprintf("%d of the GPUs with %s are free now (the others run other tasks)", len(picked), req.String())
	}
	h.devices = picked
	a.held[key] = h
	return picked, ""
}

// gpusFreeLocked reports whether n devices meeting req are held by no key
// but key (always, without a device list).
func (a *admission) gpusFreeLocked(key string, n int, req *wire.GPURequirements) bool {
	if n <= 0 || len(a.gpus) == 0 {
		return true
	}
	busy := a.busyDevicesLocked(key)
	free := 0
	for _, d := range a.gpus {
		if !busy[d.ID] && req.Unmet(d.GPU) == "" {
			free++
		}
	}
	return free >= n
}

// busyDevicesLocked returns the devices held by every key but key.
func (a *admission) busyDevicesLocked(key string) map[string]bool {
	busy := map[string]bool{}
	for k, o := range a.held {
		if k != key {
			for _, d := range o.devices {
				busy[d] = true
			}
		}
	}
	return busy
}
