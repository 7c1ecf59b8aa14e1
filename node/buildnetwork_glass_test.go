package node

import (
	"strings"
	"testing"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
)

// builderWith returns a Builder whose RUN steps join network (no engine
// is contacted).
func builderWith(t *testing.T, network string) *docker.Builder {
	t.Helper()
	e, err := docker.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	b, err := docker.NewBuilder(e, docker.WithBuildNetwork(network))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProviderLabelsBuildNetwork: a builder with a network adds
// build-network=NAME to the operator's labels, which are kept; an
// operator's build-network label that says otherwise is refused.
func TestProviderLabelsBuildNetwork(t *testing.T) {
	plain, _ := docker.New()
	t.Cleanup(func() { plain.Close() })
	bridge := builderWith(t, "bridge")
	noNet := builderWith(t, "")
	for _, c := range []struct {
		name   string
		labels map[string]string
		exs    []executor.Executor
		want   map[string]string
		err    string
	}{
		{name: "no builder", labels: map[string]string{"fpga": "xilinx"}, exs: []executor.Executor{plain},
			want: map[string]string{"fpga": "xilinx"}},
		{name: "builder without network", exs: []executor.Executor{plain, noNet}, want: map[string]string{}},
		{name: "builder with network", labels: map[string]string{"fpga": "xilinx"}, exs: []executor.Executor{plain, bridge},
			want: map[string]string{"fpga": "xilinx", LabelBuildNetwork: "bridge"}},
		{name: "operator says the same", labels: map[string]string{LabelBuildNetwork: "bridge"}, exs: []executor.Executor{bridge},
			want: map[string]string{LabelBuildNetwork: "bridge"}},
		{name: "operator says otherwise", labels: map[string]string{LabelBuildNetwork: "other"}, exs: []executor.Executor{bridge},
			err: "build-network=other"},
		{name: "operator claims a network builds lack", labels: map[string]string{LabelBuildNetwork: "bridge"}, exs: []executor.Executor{noNet},
			err: "build-network=bridge"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := map[string]string{}
			for k, v := range c.labels {
				in[k] = v
			}
			got, err := providerLabels(in, c.exs)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one naming %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Errorf("labels %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("labels %v, want %v", got, c.want)
				}
			}
			if len(in) != len(c.labels) {
				t.Errorf("the operator's map was changed: %v", in)
			}
		})
	}
}

// TestCheckBuildNetwork: a build network is refused where the node makes
// no builder, and an operator label contradicting it is refused.
func TestCheckBuildNetwork(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"none", Config{}, true},
		{"with build", Config{Provider: true, Build: true, BuildNetwork: "bridge"}, true},
		{"with build executor", Config{Provider: true, Executors: []string{"build"}, BuildNetwork: "bridge"}, true},
		{"label agrees", Config{Provider: true, Build: true, BuildNetwork: "bridge", Labels: map[string]string{LabelBuildNetwork: "bridge"}}, true},
		{"without build", Config{Provider: true, BuildNetwork: "bridge"}, false},
		{"not a provider", Config{Build: true, BuildNetwork: "bridge"}, false},
		{"with executor impls", Config{Provider: true, Build: true, BuildNetwork: "bridge", ExecutorImpls: []executor.Executor{builderWith(t, "bridge")}}, false},
		{"label disagrees", Config{Provider: true, Build: true, BuildNetwork: "bridge", Labels: map[string]string{LabelBuildNetwork: "x"}}, false},
		{"label without network", Config{Provider: true, Build: true, Labels: map[string]string{LabelBuildNetwork: "bridge"}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkBuildNetwork(c.cfg)
			if (err == nil) != c.ok {
				t.Errorf("err = %v, want ok=%v", err, c.ok)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}
