package main

import (
	"strings"
	"testing"
)

// TestNodeBuildNetworkFlag: --build-network is refused, before a node
// starts, unless the node is a provider that builds images; a network
// name that would share the host's namespace is refused by the builder
// before any engine is asked.
func TestNodeBuildNetworkFlag(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"without --build", []string{"--provider", "--build-network", "bridge"}, "only with --provider --build"},
		{"without --provider", []string{"--build", "--build-network", "bridge"}, "only with --provider --build"},
		{"host", []string{"--provider", "--build", "--executors", "wasm", "--build-network", "host"}, `network "host"`},
		{"container", []string{"--provider", "--build", "--executors", "wasm", "--build-network", "container:x"}, `network "container:x"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--home", t.TempDir(), "node", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--no-nat"}, c.args...)
			err := run(t.Context(), args)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one with %q", err, c.want)
			}
			t.Log(err)
		})
	}
}
