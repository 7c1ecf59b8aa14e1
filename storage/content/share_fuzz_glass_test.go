package content

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// FuzzDecodePublicRecord feeds decodePublicRecord keys and values as they
// could be read back from a damaged or foreign datastore: it must fail
// cleanly or return a CID whose key round-trips to the same record.
func FuzzDecodePublicRecord(f *testing.F) {
	good, _ := json.Marshal(publicRecord{Published: time.Unix(1700000000, 0).UTC()})
	for _, k := range []string{
		"/offload/public/bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am",
		"/offload/public/QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN",
		"/offload/public/", "/offload/public/zzz", "", "/",
	} {
		f.Add(k, good)
		f.Add(k, []byte(`{"published":"not a time"}`))
		f.Add(k, []byte{0xff, 0x00})
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		c, rec, err := decodePublicRecord(key, value)
		if err != nil {
			if c != cid.Undef {
				t.Fatalf("error %v with a CID %s", err, c)
			}
			return
		}
		again, rec2, err := decodePublicRecord(publicKey(c).String(), value)
		if err != nil || !again.Equals(c) || !rec2.Published.Equal(rec.Published) {
			t.Fatalf("round trip of %s: %s %v", c, again, err)
		}
	})
}
