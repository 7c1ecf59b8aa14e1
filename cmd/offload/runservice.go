package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/offload-project/offload/market/wire"
)

// serviceFlags are the run flags of services, sessions, volumes and
// scheduled starts.
type serviceFlags struct {
	service         bool
	ports           []int
	namespace, name string
	volumes         []string
	at              string
}

func (f *serviceFlags) register(fl *pflag.FlagSet) {
	fl.BoolVar(&f.service, "service", false, "run a long-lived service until --timeout or `offload cancel` (reach it with `offload tunnel` and `offload exec`)")
	fl.IntSliceVar(&f.ports, "port", nil, "TCP port the service listens on (repeatable)")
	fl.StringVar(&f.namespace, "namespace", "", "your services with the same namespace on one provider reach each other by task name")
	fl.StringVar(&f.name, "name", "", "task name (also its host name for services of its namespace)")
	fl.StringArrayVar(&f.volumes, "volume", nil, "portable writable volume NAME:/path, kept by CID on this node (repeatable)")
	fl.StringVar(&f.at, "at", "", "hold the task until TIME (RFC 3339, e.g. 2030-01-02T15:04:05Z)")
}

// apply copies the flags into spec.
func (f *serviceFlags) apply(spec *wire.TaskSpec) error {
	spec.Service, spec.Ports, spec.Namespace = f.service, f.ports, f.namespace
	if f.name != "" {
		spec.Name = f.name
	}
	if len(f.ports) > 0 && !f.service {
		return fmt.Errorf("--port needs --service")
	}
	for _, v := range f.volumes {
		name, path, ok := strings.Cut(v, ":")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("--volume %q is not NAME:/path", v)
		}
		spec.Volumes = append(spec.Volumes, wire.Volume{Name: name, Path: path})
	}
	if f.at != "" {
		at, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			return fmt.Errorf("--at %q is not an RFC 3339 time (try 2030-01-02T15:04:05Z): %w", f.at, err)
		}
		spec.NotBefore = at.UnixMilli()
	}
	return nil
}
