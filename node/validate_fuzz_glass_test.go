package node

import (
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

// FuzzCheckAnnounce feeds task-topic message bodies and authors to
// checkAnnounce, the task topic's check: it must not panic, and what it
// accepts decodes as a valid announcement whose requestor is the author.
func FuzzCheckAnnounce(f *testing.F) {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		f.Fatal(err)
	}
	author, _ := peer.IDFromPrivateKey(k)
	f.Add([]byte(`{"v":1,"task":"t1","attempt":0,"requestor":"`+author.String()+`","req":{"runtime":"docker","image":"hello:1","resources":{"cpus":1,"memory_bytes":1048576},"timeout_ms":1000},"bid_deadline":99999999999999}`), []byte(author))
	f.Add([]byte(`{"v":1,"task":"t1","requestor":"`+author.String()+`","bid_deadline":1}`), []byte(author))
	f.Add([]byte(`{"v":2}`), []byte("x"))
	f.Add([]byte(`{not json`), []byte{})
	f.Add([]byte{}, []byte(author))
	f.Fuzz(func(t *testing.T, data, from []byte) {
		msg := &pubsub.Message{Message: &pb.Message{Data: data, From: from}}
		res, reason := checkAnnounce(t.Context(), msg)
		if res != pubsub.ValidationAccept {
			if reason == "" {
				t.Fatalf("%v without a reason", res)
			}
			return
		}
		ann, err := wire.Decode[wire.Announce](data)
		if err != nil {
			t.Fatalf("accepted an announcement that does not decode: %v", err)
		}
		if ann.Requestor != msg.GetFrom().String() {
			t.Fatalf("accepted requestor %q from author %q", ann.Requestor, msg.GetFrom())
		}
	})
}
