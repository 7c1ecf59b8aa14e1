package wire_test

import (
	"testing"
	"time"

	"github.com/offload-project/offload/market/wire"
)

func TestServiceSpecValidate(t *testing.T) {
	base := func() wire.TaskSpec { return wire.TaskSpec{Image: "hello:1"} }
	cid := "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
	cases := []struct {
		name string
		mod  func(*wire.TaskSpec)
		ok   bool
	}{
		{"service with ports", func(s *wire.TaskSpec) { s.Service, s.Ports = true, []int{80, 8080} }, true},
		{"ports without service", func(s *wire.TaskSpec) { s.Ports = []int{80} }, false},
		{"port zero", func(s *wire.TaskSpec) { s.Service, s.Ports = true, []int{0} }, false},
		{"port twice", func(s *wire.TaskSpec) { s.Service, s.Ports = true, []int{80, 80} }, false},
		{"wasm service", func(s *wire.TaskSpec) { s.Service, s.Runtime, s.Image = true, "wasm", cid }, false},
		{"service with stages", func(s *wire.TaskSpec) {
			s.Service, s.Stages = true, []wire.Stage{{Name: "a", Cmd: []string{"x"}}}
		}, false},
		{"namespace", func(s *wire.TaskSpec) { s.Namespace = "team-a" }, true},
		{"bad namespace", func(s *wire.TaskSpec) { s.Namespace = "a b" }, false},
		{"volume", func(s *wire.TaskSpec) { s.Volumes = []wire.Volume{{Name: "data", Path: "/data"}} }, true},
		{"volume with cid", func(s *wire.TaskSpec) { s.Volumes = []wire.Volume{{Name: "data", Path: "/data", CID: cid}} }, true},
		{"volume bad cid", func(s *wire.TaskSpec) { s.Volumes = []wire.Volume{{Name: "data", Path: "/data", CID: "nope"}} }, false},
		{"volume on /tmp", func(s *wire.TaskSpec) { s.Volumes = []wire.Volume{{Name: "data", Path: "/tmp"}} }, false},
		{"volume twice", func(s *wire.TaskSpec) {
			s.Volumes = []wire.Volume{{Name: "data", Path: "/a"}, {Name: "data", Path: "/b"}}
		}, false},
		{"volume over an input", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: cid, Path: "/a"}}
			s.Volumes = []wire.Volume{{Name: "data", Path: "/a"}}
		}, false},
		{"volume and redundancy", func(s *wire.TaskSpec) {
			s.Redundancy = 2
			s.Volumes = []wire.Volume{{Name: "data", Path: "/a"}}
		}, false},
		{"scheduled", func(s *wire.TaskSpec) { s.NotBefore = time.Now().Add(time.Hour).UnixMilli() }, true},
		{"scheduled too far", func(s *wire.TaskSpec) { s.NotBefore = time.Now().Add(365 * 24 * time.Hour).UnixMilli() }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := base()
			c.mod(&s)
			if err := s.Validate(); (err == nil) != c.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

func FuzzDecodeTunnelRequest(f *testing.F) {
	f.Add([]byte(`{"task":"t1","attempt":1,"port":8080}`))
	f.Add([]byte(`{"task":"","port":0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := wire.Decode[wire.TunnelRequest](data)
		if err == nil && (r.Port < 1 || r.Port > 65535) {
			t.Fatalf("accepted port %d", r.Port)
		}
	})
}

func FuzzDecodeExecRequest(f *testing.F) {
	f.Add([]byte(`{"task":"t1","attempt":1,"cmd":["/hello","echo","hi"]}`))
	f.Add([]byte(`{"task":"t1","cmd":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := wire.Decode[wire.ExecRequest](data)
		if err == nil && len(r.Cmd) == 0 {
			t.Fatal("accepted an empty command")
		}
	})
}

func FuzzDecodeExecFrame(f *testing.F) {
	f.Add([]byte(`{"stdout":"aGk=","exit":0}`))
	f.Add([]byte(`{"error":"refused"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := wire.Decode[wire.ExecFrame](data)
		if err == nil && len(fr.Stdout) > wire.ExecChunk {
			t.Fatal("accepted an oversized frame")
		}
	})
}
