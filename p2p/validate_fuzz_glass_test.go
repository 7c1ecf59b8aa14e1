package p2p

import (
	"context"
	"encoding/json"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// FuzzTopicValidator feeds message bodies and authors to a topic rule's
// validator (size, per-author rate, a JSON check): it must not panic,
// never accepts a message over the rule's size or without an author, and
// counts every outcome.
func FuzzTopicValidator(f *testing.F) {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		f.Fatal(err)
	}
	h, err := New(context.Background(), Config{Identity: k, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	const maxSize = 64
	check := func(_ context.Context, msg *pubsub.Message) (pubsub.ValidationResult, string) {
		var v map[string]any
		if json.Unmarshal(msg.Data, &v) != nil {
			return pubsub.ValidationReject, "malformed"
		}
		return pubsub.ValidationAccept, ""
	}
	tv := &topicValidator{h: h, name: "/fuzz/1", rule: TopicRule{Topic: "/fuzz/1", MaxSize: maxSize, Rate: 1000, Burst: 10, Check: check},
		authors: NewPeerRate(1000, 10, 16), stats: TopicStats{Reasons: map[string]uint64{}}}
	f.Add([]byte(`{"a":1}`), []byte("author-1"))
	f.Add([]byte(`{"a":"`+string(make([]byte, maxSize))+`"}`), []byte("author-2"))
	f.Add([]byte(`{`), []byte{})
	f.Add([]byte(nil), []byte(h.ID()))
	f.Fuzz(func(t *testing.T, data, from []byte) {
		before := tv.snapshot()
		msg := &pubsub.Message{Message: &pb.Message{Data: data, From: from}}
		res := tv.validate(t.Context(), "", msg)
		after := tv.snapshot()
		if after.Accepted+after.Ignored+after.Rejected != before.Accepted+before.Ignored+before.Rejected+1 {
			t.Fatalf("outcome not counted: %+v -> %+v", before, after)
		}
		if res == pubsub.ValidationAccept && (len(data) > maxSize || len(from) == 0) {
			t.Fatalf("accepted %d bytes from author %q", len(data), from)
		}
		if tv.authors.Len() > 16 {
			t.Fatalf("rate table tracks %d authors, bound 16", tv.authors.Len())
		}
	})
}

func (tv *topicValidator) snapshot() TopicStats {
	tv.mu.Lock()
	defer tv.mu.Unlock()
	return TopicStats{Accepted: tv.stats.Accepted, Ignored: tv.stats.Ignored, Rejected: tv.stats.Rejected}
}
