package main

import (
	"strings"
	"testing"
)

// FuzzRunFlags feeds user-typed values of `offload run` (--memory,
// --timeout, --env, --input, --cpus) to the flag-to-spec translation: it
// must not panic, and a spec it accepts holds what the flags said.
func FuzzRunFlags(f *testing.F) {
	f.Add("512m", "30s", "K=V", "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba:/in", 1.0)
	f.Add("2g", "5m", "A=b=c", "cid:/data/x", 0.5)
	f.Add("0", "-1s", "=v", ":/x", -1.0)
	f.Add("1e9", "1h2m3.5s", "K=", "cid:", 1e9)
	f.Add("9999999999999999999999t", "9223372036854775807ns", "novalue", "nocolon", 0.0)
	f.Add("", "", "", "", 0.0)
	f.Fuzz(func(t *testing.T, memory, timeout, env, input string, cpus float64) {
		fl := runFlags{image: "hello:1", runtime: "docker", memory: memory, timeout: timeout, cpus: cpus, retries: 2}
		if env != "" {
			fl.env = strings.Split(env, "\n")
		}
		if input != "" {
			fl.inputs = strings.Split(input, "\n")
		}
		spec, err := fl.spec([]string{"echo", "hi"})
		if err != nil {
			return
		}
		if memory != "" && spec.Resources.MemoryBytes <= 0 {
			t.Fatalf("--memory %q accepted as %d bytes", memory, spec.Resources.MemoryBytes)
		}
		if timeout != "" && spec.TimeoutMS <= 0 {
			t.Fatalf("--timeout %q accepted as %d ms", timeout, spec.TimeoutMS)
		}
		for k := range spec.Env {
			if k == "" {
				t.Fatalf("--env %q accepted an empty name", env)
			}
		}
		for _, in := range spec.Inputs {
			if in.CID == "" || in.Path == "" {
				t.Fatalf("--input %q accepted as %+v", input, in)
			}
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("spec accepted by the flags fails validation: %v", err)
		}
	})
}

// FuzzParseKV feeds --labels values to parseKV: it must not panic, and
// every accepted pair has a name.
func FuzzParseKV(f *testing.F) {
	f.Add("fpga=xilinx,rack=3")
	f.Add("a=b=c")
	f.Add("=x")
	f.Add(",,, ,")
	f.Add("novalue")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseKV(strings.Split(s, "\n"))
		if err != nil {
			return
		}
		for k := range m {
			if k == "" {
				t.Fatalf("%q accepted an empty name", s)
			}
		}
	})
}
