package wire_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/offload-project/offload/market/wire"
)

const peerA = "12D3KooWHD5KW4kCKSnS4HTSuc6dCcPcxrEKm9hKjYkumgn6wWfv"

func TestTaskSpecValidate(t *testing.T) {
	ok := wire.TaskSpec{Image: "hello:1", Cmd: []string{"/hello", "echo", "hi"}}
	tests := []struct {
		name string
		mod  func(*wire.TaskSpec)
		want string // substring of the error, "" for valid
	}{
		{"minimal", func(*wire.TaskSpec) {}, ""},
		{"wasm by cid", func(s *wire.TaskSpec) { s.Runtime = "wasm"; s.Image = "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN" }, ""},
		{"wasm by ref", func(s *wire.TaskSpec) { s.Runtime = "wasm" }, "must be the CID"},
		{"build", func(s *wire.TaskSpec) {
			s.Runtime, s.Image, s.Cmd = wire.RuntimeBuild, "scratch", []string{"sub/Dockerfile"}
		}, ""},
		{"build with stages", func(s *wire.TaskSpec) {
			s.Runtime, s.Cmd = wire.RuntimeBuild, nil
			s.Stages = []wire.Stage{{Name: "a", Cmd: []string{"x"}}}
		}, "a build is one run"},
		{"build with a command", func(s *wire.TaskSpec) { s.Runtime = wire.RuntimeBuild }, "at most the Dockerfile's path"},
		{"input ok", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Path: "/inputs/x"}}
		}, ""},
		{"input bad cid", func(s *wire.TaskSpec) { s.Inputs = []wire.Input{{CID: "notacid", Path: "/inputs/x"}} }, "not a CID"},
		{"input on /etc", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Path: "/etc/passwd"}}
		}, "system or sandbox path"},
		{"input on /", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Path: "/"}}
		}, "over /"},
		{"input relative", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Path: "in"}}
		}, "absolute"},
		{"input dotdot", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Path: "/data/../etc"}}
		}, "not clean"},
		{"input in outputs", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Path: "/outputs/x"}}
		}, "sandbox path"},
		{"input with size", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Path: "/inputs/x", Size: 1 << 20}}
		}, ""},
		{"input negative size", func(s *wire.TaskSpec) {
			s.Inputs = []wire.Input{{CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Path: "/inputs/x", Size: -1}}
		}, "negative size"},
		{"labels", func(s *wire.TaskSpec) {
			s.Labels = map[string]string{"fpga": "xilinx", "gpu-kind": wire.LabelAny, "zone": ""}
		}, ""},
		{"label empty key", func(s *wire.TaskSpec) { s.Labels = map[string]string{"": "x"} }, "label requirement"},
		{"label key with =", func(s *wire.TaskSpec) { s.Labels = map[string]string{"a=b": "x"} }, "label requirement"},
		{"label too long", func(s *wire.TaskSpec) { s.Labels = map[string]string{"a": strings.Repeat("v", 257)} }, "too long"},
		{"too many labels", func(s *wire.TaskSpec) {
			s.Labels = map[string]string{}
			for i := range 65 {
				s.Labels[fmt.Sprint("k", i)] = "v"
			}
		}, "more than 64 label requirements"},
		{"machine", func(s *wire.TaskSpec) {
			s.Machine = &wire.MachineRequirements{OS: "linux", Arch: "arm64", CPUModel: "epyc", CPUs: 8, MemoryBytes: 1 << 30}
		}, ""},
		{"machine negative memory", func(s *wire.TaskSpec) { s.Machine = &wire.MachineRequirements{MemoryBytes: -1} }, "machine requirement"},
		{"machine long model", func(s *wire.TaskSpec) { s.Machine = &wire.MachineRequirements{CPUModel: strings.Repeat("x", 257)} }, "machine requirement"},
		{"image size by cid", func(s *wire.TaskSpec) {
			s.Image, s.ImageSize = "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", 1<<20
		}, ""},
		{"image size of a local image", func(s *wire.TaskSpec) { s.ImageSize = 1 << 20 }, "image given by CID"},
		{"negative image size", func(s *wire.TaskSpec) {
			s.Image, s.ImageSize = "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", -1
		}, "negative image size"},
		{"volume negative size", func(s *wire.TaskSpec) {
			s.Volumes = []wire.Volume{{Name: "v", Path: "/data", CID: "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", Size: -1}}
		}, "negative size"},
		{"unknown runtime", func(s *wire.TaskSpec) { s.Runtime = "qemu" }, "unknown runtime"},
		{"no image", func(s *wire.TaskSpec) { s.Image = " " }, "image is required"},
		{"long image", func(s *wire.TaskSpec) { s.Image = strings.Repeat("a", 600) }, "image reference longer"},
		{"negative cpus", func(s *wire.TaskSpec) { s.Resources.CPUs = -1 }, "cpus"},
		{"absurd cpus", func(s *wire.TaskSpec) { s.Resources.CPUs = 1e9 }, "cpus"},
		{"NaN cpus", func(s *wire.TaskSpec) { s.Resources.CPUs = math.NaN() }, "cpus"},
		{"NaN price", func(s *wire.TaskSpec) { s.MaxPrice = math.NaN() }, "max price"},
		{"negative memory", func(s *wire.TaskSpec) { s.Resources.MemoryBytes = -5 }, "memory"},
		{"negative gpus", func(s *wire.TaskSpec) { s.Resources.GPUs = -1 }, "gpus"},
		{"negative timeout", func(s *wire.TaskSpec) { s.TimeoutMS = -1 }, "timeout"},
		{"absurd timeout", func(s *wire.TaskSpec) { s.TimeoutMS = 1 << 60 }, "timeout"},
		{"negative price", func(s *wire.TaskSpec) { s.MaxPrice = -1 }, "max price"},
		{"bad env name", func(s *wire.TaskSpec) { s.Env = map[string]string{"A=B": "x"} }, "environment variable name"},
		{"bad provider", func(s *wire.TaskSpec) { s.Provider = "nope" }, "not a peer id"},
		{"good provider", func(s *wire.TaskSpec) { s.Provider = peerA }, ""},
		{"too many args", func(s *wire.TaskSpec) { s.Cmd = make([]string, 300) }, "arguments"},
		{"retries", func(s *wire.TaskSpec) { s.Retries = wire.Retries(1000) }, "retries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, wire.ErrInvalid) {
				t.Fatalf("want error containing %q wrapping ErrInvalid, got %v", tc.want, err)
			}
		})
	}
}

// TestLabelsUnmet: each required label present, with its value unless the
// requirement takes any; the first unmet one in key order is named.
func TestLabelsUnmet(t *testing.T) {
	have := map[string]string{"fpga": "xilinx", "zone": "eu"}
	for _, tc := range []struct {
		want map[string]string
		why  string
	}{
		{nil, ""},
		{map[string]string{"fpga": "xilinx"}, ""},
		{map[string]string{"fpga": wire.LabelAny, "zone": ""}, ""},
		{map[string]string{"fpga": "intel"}, `label fpga="xilinx", not "intel"`},
		{map[string]string{"zone": "eu", "b": "", "a": "x"}, "no label a"},
	} {
		if got := wire.LabelsUnmet(have, tc.want); got != tc.why {
			t.Errorf("LabelsUnmet(%v) = %q, want %q", tc.want, got, tc.why)
		}
	}
	if got := wire.LabelsUnmet(nil, map[string]string{"fpga": ""}); got != "no label fpga" {
		t.Errorf("no labels at all: %q", got)
	}
	for in, want := range map[string][2]string{"fpga": {"fpga", wire.LabelAny}, "fpga=xilinx": {"fpga", "xilinx"}, "k=a=b": {"k", "a=b"}, "k=": {"k", ""}} {
		k, v, err := wire.ParseLabelRequirement(in)
		if err != nil || k != want[0] || v != want[1] {
			t.Errorf("ParseLabelRequirement(%q) = %q, %q, %v", in, k, v, err)
		}
	}
	if _, _, err := wire.ParseLabelRequirement("=x"); err == nil {
		t.Error("a requirement with no key was taken")
	}
}

// TestMachineUnmet: each requirement of the whole machine against a
// machine, the first unmet one named.
func TestMachineUnmet(t *testing.T) {
	hw := &wire.Hardware{OS: "linux", Arch: "x86_64", CPUModel: "AMD EPYC 7763", CPUs: 64, MemoryBytes: 256 << 30}
	for _, tc := range []struct {
		m   *wire.MachineRequirements
		why string
	}{
		{nil, ""},
		{&wire.MachineRequirements{}, ""},
		{&wire.MachineRequirements{OS: "Linux", Arch: "amd64", CPUModel: "epyc", CPUs: 64, MemoryBytes: 256 << 30}, ""},
		{&wire.MachineRequirements{OS: "windows"}, "os linux, not windows"},
		{&wire.MachineRequirements{Arch: "aarch64"}, "arch x86_64, not aarch64"},
		{&wire.MachineRequirements{CPUModel: "xeon"}, `cpu model "AMD EPYC 7763", not "xeon"`},
		{&wire.MachineRequirements{CPUs: 65}, "64 CPUs in the machine, not 65"},
		{&wire.MachineRequirements{MemoryBytes: 512 << 30}, "262144 MiB of memory in the machine, not 524288 MiB"},
	} {
		if got := wire.MachineUnmet(hw, tc.m); got != tc.why {
			t.Errorf("MachineUnmet(%+v) = %q, want %q", tc.m, got, tc.why)
		}
	}
}

func TestDecodeAnnounce(t *testing.T) {
	good := wire.Announce{Version: wire.Version, TaskID: "01abc", Attempt: 1, Requestor: peerA,
		Req: wire.Requirements{Runtime: "docker", Image: "hello:1"}}
	b, _ := json.Marshal(good)
	got, err := wire.Decode[wire.Announce](b)
	if err != nil || got.TaskID != "01abc" {
		t.Fatalf("decode good announce: %v %+v", err, got)
	}
	bad := []string{
		``, `{`, `null`, `[]`, `{"v":2}`,
		`{"v":1,"task":"../x","requestor":"` + peerA + `","req":{"runtime":"docker","image":"a"}}`,
		`{"v":1,"task":"a","requestor":"me","req":{"runtime":"docker","image":"a"}}`,
		`{"v":1,"task":"a","attempt":-1,"requestor":"` + peerA + `","req":{"runtime":"docker","image":"a"}}`,
	}
	for _, in := range bad {
		if _, err := wire.Decode[wire.Announce]([]byte(in)); err == nil {
			t.Errorf("decode %q: want error", in)
		}
	}
}

func TestReportValidate(t *testing.T) {
	if _, err := wire.Decode[wire.Report]([]byte(`{"task":"a","state":"completed"}`)); err == nil {
		t.Fatal("completed report without result must be refused")
	}
	if _, err := wire.Decode[wire.Report]([]byte(`{"task":"a","state":"exploded","result":{}}`)); err == nil {
		t.Fatal("unknown state must be refused")
	}
	r, err := wire.Decode[wire.Report]([]byte(`{"task":"a","attempt":2,"state":"failed","result":{"exit_code":-1,"error":"boom"}}`))
	if err != nil || r.Result.Error != "boom" {
		t.Fatalf("good report: %v", err)
	}
}

func fuzzDecode[T any, PT interface {
	*T
	Validate() error
}](f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := wire.Decode[T, PT](data)
		if err != nil {
			if v != nil {
				t.Fatal("value returned with an error")
			}
			return
		}
		// Whatever was accepted must survive a round trip and stay valid.
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := wire.Decode[T, PT](b); err != nil {
			t.Fatalf("accepted message invalid after round trip: %v", err)
		}
	})
}

func FuzzDecodeAnnounce(f *testing.F) {
	fuzzDecode[wire.Announce](f,
		`{"v":1,"task":"01abc","attempt":1,"requestor":"`+peerA+`","req":{"runtime":"docker","image":"hello:1","resources":{"cpus":1}}}`,
		`{"v":1,"task":"01abc","attempt":1,"requestor":"`+peerA+`","req":{"runtime":"docker","image":"hello:1","resources":{"cpus":1},"labels":{"fpga":"*","zone":"eu"},"machine":{"os":"linux","arch":"arm64","cpu_model":"epyc","cpus":8,"memory_bytes":1073741824}}}`,
		`{"v":1}`, `{}`)
}

func FuzzDecodeBid(f *testing.F) {
	fuzzDecode[wire.Bid](f, `{"task":"a","attempt":1,"price":0.5,"max_cost":3,"start_ms":2}`, `{"task":"a","decline":"busy","busy":true}`)
}

func FuzzDecodeAward(f *testing.F) {
	fuzzDecode[wire.Award](f, `{"task":"a","attempt":1,"spec":{"image":"hello:1","cmd":["/hello","echo"],"env":{"A":"b"}}}`)
}

func FuzzDecodeReport(f *testing.F) {
	fuzzDecode[wire.Report](f, `{"task":"a","attempt":1,"state":"running"}`,
		`{"task":"a","attempt":1,"state":"completed","result":{"exit_code":0,"stdout":"hi\n","usage":{"wall_ms":5}}}`)
}

func FuzzDecodeCancel(f *testing.F) {
	fuzzDecode[wire.Cancel](f, `{"task":"a","attempt":1}`)
}
