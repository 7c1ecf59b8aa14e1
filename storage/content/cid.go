package content

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
)

// ErrInvalidCID is returned (wrapped) by ParseCID for a string that is not a
// CID.
var ErrInvalidCID = errors.New("invalid CID")

// ParseCID parses a CID in any base go-cid understands (Qm… CIDv0, bafy…
// CIDv1, …). An "/ipfs/" prefix is accepted. The error wraps ErrInvalidCID
// and quotes (a prefix of) the input.
func ParseCID(s string) (cid.Cid, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "/ipfs/")
	if t == "" {
		return cid.Undef, fmt.Errorf("parse cid: %w: empty string", ErrInvalidCID)
	}
	c, err := cid.Decode(t)
	if err != nil {
		return cid.Undef, fmt.Errorf("parse cid %q: %w: %v", shorten(s), ErrInvalidCID, err)
	}
	return c, nil
}

func shorten(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
