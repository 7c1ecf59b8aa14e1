package client_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market/wire"
)

const pipeline = `
name: pipeline
image: hello:1
resources: {cpus: 1, memory: 256m}
labels: {fpga: xilinx, zone: "*"}
machine: {arch: arm64, cpu_model: neoverse, cpus: 8, memory: 16g}
timeout: 2m
inputs:
  - {cid: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN, path: /inputs/hello}
  - {local: ./data, path: /inputs/data}
stages:
  - name: prepare
    command: [/hello, write, /work/step1, ok]
  - name: build
    command: [/hello, cat, /work/step1]
    env: {MODE: fast}
    continue_on_error: true
artifacts: [/outputs/model.bin, /work/step1]
`

func TestParseTaskFile(t *testing.T) {
	tf, err := client.ParseTaskFile([]byte(pipeline))
	if err != nil {
		t.Fatal(err)
	}
	if got := tf.LocalInputs(); got["1"] != "./data" {
		t.Fatalf("local inputs: %v", got)
	}
	spec, err := tf.Spec(map[string]string{"1": "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"})
	if err != nil {
		t.Fatal(err)
	}
	if spec.Resources.MemoryBytes != 256<<20 || spec.TimeoutMS != 120_000 || len(spec.Stages) != 2 ||
		!spec.Stages[1].ContinueOnError || spec.Stages[1].Env["MODE"] != "fast" || len(spec.Artifacts) != 2 || spec.RetryBudget() != 2 ||
		spec.Labels["fpga"] != "xilinx" || spec.Labels["zone"] != wire.LabelAny ||
		*spec.Machine != (wire.MachineRequirements{Arch: "arm64", CPUModel: "neoverse", CPUs: 8, MemoryBytes: 16 << 30}) {
		t.Fatalf("spec = %+v", spec)
	}
	if spec.Inputs[1].CID != "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am" {
		t.Errorf("local input CID not filled: %+v", spec.Inputs[1])
	}
}

// TestTaskFileSizes: an input's size and the image's are read in bytes or
// with a unit (binary: 1k is 1024 bytes).
func TestTaskFileSizes(t *testing.T) {
	tf, err := client.ParseTaskFile([]byte(`
image: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN
image_size: 2g
inputs:
  - {cid: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN, path: /inputs/a, size: 1048576}
  - {cid: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN, path: /inputs/b, size: 512k}
  - {cid: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN, path: /inputs/c}
`))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := tf.Spec(nil)
	if err != nil {
		t.Fatal(err)
	}
	if spec.ImageSize != 2<<30 || spec.Inputs[0].Size != 1<<20 || spec.Inputs[1].Size != 512<<10 || spec.Inputs[2].Size != 0 {
		t.Fatalf("sizes: image %d, inputs %+v", spec.ImageSize, spec.Inputs)
	}
}

func TestTaskFileErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"syntax", "image: [unclosed\n", "["},
		{"unknown field", "image: a\nimagee: b\n", "imagee"},
		{"bad memory", "image: a\nresources:\n  memory: lots\n", "line 3"},
		{"bad timeout", "image: a\ntimeout: soon\n", "line 2"},
		{"no image", "name: x\n", "image is required"},
		{"input on /etc", "image: a\ninputs:\n  - {cid: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN, path: /etc/x}\n", "line 3"},
		{"stage without command", "image: a\nstages:\n  - name: s\n", "has no command"},
		{"artifact outside", "image: a\nartifacts: [/etc/passwd]\n", "must be inside"},
		{"empty", "  \n", "empty"},
		{"both cid and local", "image: a\ninputs:\n  - {cid: x, local: y, path: /in}\n", "not both"},
		{"bad input size", "image: a\ninputs:\n  - cid: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN\n    path: /inputs/x\n    size: lots\n", "line 3"},
		{"image size of a local image", "image: a\nimage_size: 1g\n", "image given by CID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.ParseTaskFile([]byte(tc.file))
			var tfe *client.TaskFileError
			if err == nil || !errors.As(err, &tfe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a task file error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func FuzzParseTaskFile(f *testing.F) {
	f.Add([]byte(pipeline))
	f.Add([]byte("image: a\nsubtasks:\n  - command: [x]\nverify: {image: b}\n"))
	f.Add([]byte("{image: a, resources: {memory: 1g}}"))
	f.Add([]byte("image: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN\nimage_size: 1g\ninputs: [{cid: QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN, path: /in, size: 4096}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := client.ParseTaskFile(data)
		if err != nil {
			return
		}
		if _, err := tf.Spec(nil); err != nil {
			t.Fatalf("accepted file gives an invalid spec: %v", err)
		}
	})
}

func TestTaskFileCheckpointAndEach(t *testing.T) {
	tf, err := client.ParseTaskFile([]byte(`
image: hello:1
checkpoint: {path: /checkpoint, every: 5m}
`))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := tf.Spec(nil)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Checkpoint == nil || spec.Checkpoint.Path != "/checkpoint" || spec.Checkpoint.EveryMS != 300_000 {
		t.Fatalf("checkpoint: %+v", spec.Checkpoint)
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	tf, err = client.ParseTaskFile([]byte("image: hello:1\neach: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if spec, _ := tf.Spec(nil); !spec.Each {
		t.Fatal("each: true not read")
	}
	for _, bad := range []string{
		"image: hello:1\ncheckpoint: {path: /checkpoint, every: soon}\n",
		"image: hello:1\ncheckpoint: {path: relative, every: 5m}\n",
		"image: hello:1\ncheckpoint: {path: /checkpoint, every: 10ms}\n",
	} {
		tf, err := client.ParseTaskFile([]byte(bad))
		if err == nil {
			var spec wire.TaskSpec
			if spec, err = tf.Spec(nil); err == nil {
				err = spec.Validate()
			}
		}
		if err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
