package wire

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// receiptDomain separates receipt signatures from any other use of a key.
const receiptDomain = "offload-receipt-v1:"

// Receipt is what a provider attests it did for a requestor: the provider
// signs it with the result, the requestor countersigns it on acceptance.
// Both keep it; the ledger and reputations are built from receipts.
type Receipt struct {
	TaskID     string    `json:"task"`
	Attempt    int       `json:"attempt"`
	Requestor  string    `json:"requestor"`
	Provider   string    `json:"provider"`
	Image      string    `json:"image"`
	Inputs     []string  `json:"inputs,omitempty"`
	Command    []string  `json:"command,omitempty"`
	ExitCode   int       `json:"exit_code"`
	Outputs    string    `json:"outputs,omitempty"`
	Usage      Usage     `json:"usage"`
	Price      float64   `json:"price"`
	Cost       float64   `json:"cost"`
	FinishedAt time.Time `json:"finished_at"`
}

// SignedReceipt carries the receipt's exact signed bytes and signatures.
type SignedReceipt struct {
	Body         []byte `json:"body"`
	ProviderSig  []byte `json:"provider_sig"`
	RequestorSig []byte `json:"requestor_sig,omitempty"`
}

// SignReceipt encodes r and signs it with the provider's key.
func SignReceipt(key crypto.PrivKey, r Receipt) (*SignedReceipt, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode receipt: %w", err)
	}
	sig, err := key.Sign(append([]byte(receiptDomain), body...))
	if err != nil {
		return nil, fmt.Errorf("sign receipt: %w", err)
	}
	return &SignedReceipt{Body: body, ProviderSig: sig}, nil
}

// Countersign adds the requestor's signature.
func (s *SignedReceipt) Countersign(key crypto.PrivKey) error {
	sig, err := key.Sign(append([]byte(receiptDomain), s.Body...))
	if err != nil {
		return fmt.Errorf("countersign receipt: %w", err)
	}
	s.RequestorSig = sig
	return nil
}

// Verify decodes the receipt and checks the provider's signature, and the
// requestor's when present, against the keys behind their peer IDs.
func (s *SignedReceipt) Verify() (*Receipt, error) {
	r, err := s.decode()
	if err != nil {
		return nil, err
	}
	if err := checkSig(r.Provider, s.Body, s.ProviderSig); err != nil {
		return nil, invalid("receipt provider signature: %v", err)
	}
	if len(s.RequestorSig) > 0 {
		if err := checkSig(r.Requestor, s.Body, s.RequestorSig); err != nil {
			return nil, invalid("receipt requestor signature: %v", err)
		}
	}
	return r, nil
}

// VerifyCountersignature decodes the receipt and checks the requestor's
// signature, which must be present, and nothing else. It is for the
// provider that made the receipt, holding it in its own records: its own
// signature over Body needs no check there. Anyone else uses Verify.
func (s *SignedReceipt) VerifyCountersignature() (*Receipt, error) {
	r, err := s.decode()
	if err != nil {
		return nil, err
	}
	if len(s.RequestorSig) == 0 {
		return nil, invalid("receipt has no requestor signature")
	}
	if err := checkSig(r.Requestor, s.Body, s.RequestorSig); err != nil {
		return nil, invalid("receipt requestor signature: %v", err)
	}
	return r, nil
}

// decode bounds and decodes the receipt's body.
func (s *SignedReceipt) decode() (*Receipt, error) {
	if len(s.Body) > MaxReportSize {
		return nil, invalid("receipt too large")
	}
	var r Receipt
	if err := json.Unmarshal(s.Body, &r); err != nil {
		return nil, invalid("receipt: %v", err)
	}
	return &r, nil
}

// checkSig checks sig over body (in the receipt domain) against the public key behind peer id p.
func checkSig(p string, body, sig []byte) error {
	id, err := peer.Decode(p)
	if err != nil {
		return fmt.Errorf("peer id %q: %w", p, err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("no public key in peer id %s: %w", p, err)
	}
	ok, err := pub.Verify(append([]byte(receiptDomain), body...), sig)
	if err != nil || !ok {
		return fmt.Errorf("signature does not verify for %s", p)
	}
	return nil
}
