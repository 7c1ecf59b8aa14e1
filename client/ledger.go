package client

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// PeerBalance sums what this node earned from and spent with one peer.
type PeerBalance struct {
	Peer   string  `json:"peer"`
	Earned float64 `json:"earned"`
	Spent  float64 `json:"spent"`
	Tasks  int     `json:"tasks"`
}

// LedgerEntry is one countersigned receipt from this node's side.
type LedgerEntry struct {
	TaskID  string          `json:"task"`
	Attempt int             `json:"attempt"`
	Peer    string          `json:"peer"`
	Role    string          `json:"role"`
	Amount  float64         `json:"amount"`
	At      time.Time       `json:"at"`
	Receipt json.RawMessage `json:"receipt"`
}

// Reputation is what this node learned of a provider.
type Reputation struct {
	Completed      int   `json:"completed"`
	Failed         int   `json:"failed"`
	MeanDeliveryMS int64 `json:"mean_delivery_ms"`
}

// Ledger is the node's account.
type Ledger struct {
	Peers       []PeerBalance         `json:"peers"`
	Entries     []LedgerEntry         `json:"entries"`
	Reputations map[string]Reputation `json:"reputations"`
}

// Ledger returns credits earned and spent per peer, with the receipts.
func (c *Client) Ledger(ctx context.Context) (*Ledger, error) {
	var out Ledger
	return &out, c.do(ctx, http.MethodGet, "/api/v1/ledger", nil, &out)
}
