package node

import (
	"github.com/offload-project/offload/market"
)

// Ledger is this node's account: countersigned receipts and per-peer sums.
type Ledger struct {
	Peers       []market.PeerBalance         `json:"peers"`
	Entries     []*market.LedgerEntry        `json:"entries"`
	Reputations map[string]market.Reputation `json:"reputations"`
}

// Ledger returns what this node earned and spent, per peer, with the
// receipts behind it, and what it learned of each provider.
func (n *Node) Ledger() (*Ledger, error) {
	entries, err := n.ledger.List()
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []*market.LedgerEntry{}
	}
	return &Ledger{Peers: market.Balances(entries), Entries: entries, Reputations: n.req.Reputations()}, nil
}
