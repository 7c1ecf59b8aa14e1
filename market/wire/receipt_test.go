package wire_test

import (
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

func newKey(t testing.TB) (crypto.PrivKey, string) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id.String()
}

func TestReceiptSignVerifyCountersign(t *testing.T) {
	pk, pid := newKey(t)
	rk, rid := newKey(t)
	_, other := newKey(t)
	r := wire.Receipt{TaskID: "t1", Attempt: 1, Requestor: rid, Provider: pid, Image: "hello:1", ExitCode: 0, Cost: 0.25}
	sr, err := wire.SignReceipt(pk, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sr.Verify()
	if err != nil || got.Cost != 0.25 {
		t.Fatalf("verify: %v %+v", err, got)
	}
	if err := sr.Countersign(rk); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.Verify(); err != nil {
		t.Fatalf("countersigned: %v", err)
	}

	// Tampering with the body breaks both signatures.
	bad := *sr
	bad.Body = append([]byte{}, sr.Body...)
	bad.Body[len(bad.Body)-2] ^= 1
	if _, err := bad.Verify(); err == nil {
		t.Fatal("tampered receipt verified")
	}
	// A receipt claiming another provider does not verify with this key.
	forged, _ := wire.SignReceipt(pk, wire.Receipt{TaskID: "t1", Requestor: rid, Provider: other})
	if _, err := forged.Verify(); err == nil {
		t.Fatal("receipt signed by someone else than its provider verified")
	}
	// The requestor's signature is checked too.
	wrong := *sr
	wrong.RequestorSig = sr.ProviderSig
	if _, err := wrong.Verify(); err == nil {
		t.Fatal("wrong countersignature verified")
	}
}

// TestReceiptVerifyCountersignature: the provider's check of a
// countersigned receipt it made looks at the requestor's signature only,
// and refuses a receipt without one or with a wrong one.
func TestReceiptVerifyCountersignature(t *testing.T) {
	pk, pid := newKey(t)
	rk, rid := newKey(t)
	sr, err := wire.SignReceipt(pk, wire.Receipt{TaskID: "t1", Requestor: rid, Provider: pid, Cost: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sr.VerifyCountersignature(); err == nil {
		t.Fatal("a receipt without a countersignature verified")
	}
	if err := sr.Countersign(rk); err != nil {
		t.Fatal(err)
	}
	if got, err := sr.VerifyCountersignature(); err != nil || got.Cost != 0.5 {
		t.Fatalf("countersigned: %v %+v", err, got)
	}
	wrong := *sr
	wrong.RequestorSig = sr.ProviderSig
	if _, err := wrong.VerifyCountersignature(); err == nil {
		t.Fatal("a countersignature by the provider verified")
	}
	tampered := *sr
	tampered.Body = append([]byte{}, sr.Body...)
	tampered.Body[len(tampered.Body)-2] ^= 1
	if _, err := tampered.VerifyCountersignature(); err == nil {
		t.Fatal("a countersignature verified over a changed body")
	}
}

func FuzzReceiptVerify(f *testing.F) {
	pk, pid := newKey(f)
	sr, _ := wire.SignReceipt(pk, wire.Receipt{TaskID: "t", Provider: pid, Requestor: pid})
	f.Add(sr.Body, sr.ProviderSig, []byte{})
	f.Add([]byte(`{"provider":"nope"}`), []byte{1, 2}, []byte{3})
	f.Fuzz(func(t *testing.T, body, psig, rsig []byte) {
		s := wire.SignedReceipt{Body: body, ProviderSig: psig, RequestorSig: rsig}
		_, _ = s.VerifyCountersignature() // any bytes: an error, never a panic
		if _, err := s.Verify(); err != nil || len(body) == 0 {
			return
		}
		// Whatever verifies must stop verifying when one byte changes.
		s.Body = append([]byte{}, body...)
		s.Body[len(s.Body)/2] ^= 0x20
		if _, err := s.Verify(); err == nil {
			t.Fatalf("a receipt still verified after its body changed")
		}
	})
}
