package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

func capKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func capRecord(id peer.ID) *wire.CapRecord {
	now := time.Now()
	return &wire.CapRecord{
		Version: wire.Version, Peer: id.String(), Addrs: []string{"/ip4/127.0.0.1/tcp/4001"},
		Hardware: wire.Hardware{OS: "linux", Arch: "amd64", CPUModel: "Test CPU", CPUs: 8, MemoryBytes: 16 << 30,
			GPUs: []wire.GPU{{Vendor: "nvidia", Model: "H100", MemoryBytes: 80 << 30}}, Labels: map[string]string{"fpga": "xilinx"}},
		Executors: []string{"docker"}, Price: 0.5, Free: wire.Resources{CPUs: 8, MemoryBytes: 12 << 30, GPUs: 1},
		Software: "test", Seq: 1, IssuedAt: now.UnixMilli(), Expires: now.Add(2 * time.Minute).UnixMilli(),
	}
}

func TestCapRecordSignAndDecode(t *testing.T) {
	k, id := capKey(t)
	env, err := wire.SignCapRecord(capRecord(id), k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeCapRecord(env)
	if err != nil {
		t.Fatal(err)
	}
	if got.PeerID() != id || got.Hardware.Labels["fpga"] != "xilinx" || got.Hardware.GPUs[0].Model != "H100" {
		t.Fatalf("decoded %+v", got)
	}
}

func TestCapRecordRejects(t *testing.T) {
	k, id := capKey(t)
	other, _ := capKey(t)
	sign := func(rec *wire.CapRecord, key crypto.PrivKey) []byte {
		body, _ := json.Marshal(rec)
		sig, _ := key.Sign(append([]byte("offload-caps-record:"), body...))
		env, _ := json.Marshal(&wire.SignedCapRecord{Record: body, Signature: sig})
		return env
	}
	tampered := func() []byte {
		rec := capRecord(id)
		body, _ := json.Marshal(rec)
		sig, _ := k.Sign(append([]byte("offload-caps-record:"), body...))
		body = bytes.Replace(body, []byte(`"price":0.5`), []byte(`"price":0.1`), 1)
		env, _ := json.Marshal(&wire.SignedCapRecord{Record: body, Signature: sig})
		return env
	}
	big := capRecord(id)
	big.Hardware.Labels = map[string]string{}
	for i := 0; i < 60; i++ {
		big.Hardware.Labels[strings.Repeat("k", 3)+string(rune('a'+i%26))+string(rune('a'+i/26))] = strings.Repeat("v", 250)
	}
	for _, tc := range []struct {
		name string
		data []byte
		sig  bool
	}{
		{"garbage", []byte("not json"), false},
		{"empty envelope", []byte(`{}`), false},
		{"signed by another key", sign(capRecord(id), other), true},
		{"tampered record", tampered(), true},
		{"oversized", sign(big, k), false},
		{"bad version", func() []byte { r := capRecord(id); r.Version = 9; return sign(r, k) }(), false},
		{"zero seq", func() []byte { r := capRecord(id); r.Seq = 0; return sign(r, k) }(), false},
		{"ttl too long", func() []byte {
			r := capRecord(id)
			r.Expires = r.IssuedAt + int64(time.Hour/time.Millisecond)
			return sign(r, k)
		}(), false},
		{"bad addr", func() []byte { r := capRecord(id); r.Addrs = []string{"nope"}; return sign(r, k) }(), false},
		{"bad label", func() []byte {
			r := capRecord(id)
			r.Hardware.Labels = map[string]string{"a=b": "c"}
			return sign(r, k)
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.DecodeCapRecord(tc.data)
			if !errors.Is(err, wire.ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			if tc.sig && !errors.Is(err, wire.ErrBadSignature) {
				t.Fatalf("want ErrBadSignature, got %v", err)
			}
		})
	}
	if _, err := wire.SignCapRecord(big, k); err == nil {
		t.Error("SignCapRecord must refuse an oversized record")
	}
}

func FuzzDecodeCapRecord(f *testing.F) {
	k, id := capKey(f)
	env, err := wire.SignCapRecord(capRecord(id), k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"record":"e30=","sig":"AA=="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := wire.DecodeCapRecord(data)
		if err != nil {
			if !errors.Is(err, wire.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := rec.Validate(); err != nil {
			t.Fatalf("decoded record does not validate: %v", err)
		}
	})
}

func TestCapsRequestValidate(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{}`, true},
		{`{"max":16,"filter":{"executor":"docker","cpus":1,"memory_bytes":1024,"labels":{"zone":"eu"}}}`, true},
		{`{"max":-1}`, false},
		{`{"filter":{"cpus":-1}}`, false},
		{`{"filter":{"gpus":-2}}`, false},
		{`{"filter":{"executor":"` + strings.Repeat("x", 300) + `"}}`, false},
		{`{"filter":{"labels":{"k":"` + strings.Repeat("v", 300) + `"}}}`, false},
		{`{"filter":{"gpus":1,"gpu":{"vendor":"nvidia","models":["H100"],"compute":"8.0"}}}`, true},
		{`{"filter":{"gpu":{"vendor":"` + strings.Repeat("n", 300) + `"}}}`, false},
		// An old asker's request, and a newer one's unknown field.
		{`{"max":512,"have":{"12D3KooWBJhwXtL1LHwEExyGDeQ9q9TjtTvMx9sz69g9wWt4PzX1":3}}`, true},
		{`{"max":4,"sample_seed":7}`, true},
	} {
		_, err := wire.Decode[wire.CapsRequest]([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("decode %.80s: err %v, want ok %v", tc.in, err, tc.ok)
		}
	}
	big := `{"records":[` + strings.Repeat(`"AA==",`, wire.MaxCapsRecords) + `"AA=="]}`
	if _, err := wire.Decode[wire.CapsResponse]([]byte(big)); err == nil {
		t.Error("a response of more than MaxCapsRecords records must be refused")
	}
}

func FuzzDecodeCapsRequest(f *testing.F) {
	fuzzDecode[wire.CapsRequest](f, `{"max":16,"filter":{"executor":"docker","cpus":1,"labels":{"zone":"eu"}}}`,
		`{"max":512,"have":{"12D3KooWBJhwXtL1LHwEExyGDeQ9q9TjtTvMx9sz69g9wWt4PzX1":3}}`, `{}`)
}

func FuzzDecodeCapsResponse(f *testing.F) {
	fuzzDecode[wire.CapsResponse](f, `{"records":["eyJyZWNvcmQiOiJlMzA9Iiwic2lnIjoiQUE9PSJ9"]}`, `{"records":[]}`, `{}`)
}
