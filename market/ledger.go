package market

import (
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

// Ledger roles.
const (
	RoleSpent  = "spent"  // this node paid a provider
	RoleEarned = "earned" // this node was paid by a requestor
)

// LedgerEntry is one countersigned receipt from this node's side.
type LedgerEntry struct {
	Key     string              `json:"key"`
	TaskID  string              `json:"task"`
	Attempt int                 `json:"attempt"`
	Peer    string              `json:"peer"`
	Role    string              `json:"role"`
	Amount  float64             `json:"amount"`
	At      time.Time           `json:"at"`
	Receipt *wire.SignedReceipt `json:"receipt"`
}

// LedgerStore persists ledger entries. storage.Table[LedgerEntry]
// implements it.
type LedgerStore interface {
	Put(key string, e *LedgerEntry) error
	List() ([]*LedgerEntry, error)
}

// PeerBalance sums one peer's entries.
type PeerBalance struct {
	Peer   string  `json:"peer"`
	Earned float64 `json:"earned"`
	Spent  float64 `json:"spent"`
	Tasks  int     `json:"tasks"`
}

// Balances sums entries per peer, largest total first.
func Balances(entries []*LedgerEntry) []PeerBalance {
	by := map[string]*PeerBalance{}
	for _, e := range entries {
		b := by[e.Peer]
		if b == nil {
			b = &PeerBalance{Peer: e.Peer}
			by[e.Peer] = b
		}
		b.Tasks++
		if e.Role == RoleEarned {
			b.Earned += e.Amount
		} else {
			b.Spent += e.Amount
		}
	}
	out := make([]PeerBalance, 0, len(by))
	for _, b := range by {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b PeerBalance) int {
		if c := (b.Earned + b.Spent) - (a.Earned + a.Spent); c != 0 {
			if c > 0 {
				return 1
			}
			return -1
		}
		if a.Peer < b.Peer {
			return -1
		}
		return 1
	})
	return out
}

// checkReceipt verifies a result's receipt against the report and the
// peers involved; it returns the decoded receipt.
func checkReceipt(rep *wire.Report, from, self peer.ID) (*wire.Receipt, error) {
	res := rep.Result
	if res.Receipt == nil {
		return nil, fmt.Errorf("result without a signed receipt")
	}
	rc, err := res.Receipt.Verify()
	if err != nil {
		return nil, err
	}
	switch {
	case rc.TaskID != rep.TaskID || rc.Attempt != rep.Attempt:
		return nil, fmt.Errorf("receipt is for %s/%d, not %s/%d", rc.TaskID, rc.Attempt, rep.TaskID, rep.Attempt)
	case rc.Provider != peerIDs.String(from):
		return nil, fmt.Errorf("receipt names provider %s, not the sender", rc.Provider)
	case rc.Requestor != peerIDs.String(self):
		return nil, fmt.Errorf("receipt names requestor %s, not this node", rc.Requestor)
	case rc.ExitCode != res.ExitCode || rc.Outputs != res.Outputs || rc.Cost != res.Cost:
		return nil, fmt.Errorf("receipt does not match the result (exit code, outputs or cost)")
	}
	return rc, nil
}

// signReceipt makes the provider's receipt for a result.
func signReceipt(key crypto.PrivKey, self peer.ID, rec *ExecRecord, res *wire.Result, price float64) (*wire.SignedReceipt, error) {
	cmd := append(append([]string{}, rec.Spec.Entrypoint...), rec.Spec.Cmd...)
	var inputs []string
	for _, in := range rec.Spec.Inputs {
		inputs = append(inputs, in.CID)
	}
	return wire.SignReceipt(key, wire.Receipt{
		TaskID: rec.TaskID, Attempt: rec.Attempt, Requestor: rec.Requestor, Provider: peerIDs.String(self),
		Image: rec.Spec.Image, Inputs: inputs, Command: cmd, ExitCode: res.ExitCode, Outputs: res.Outputs,
		Usage: res.Usage, Price: price, Cost: res.Cost, FinishedAt: res.FinishedAt,
	})
}
