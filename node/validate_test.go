package node_test

import (
	"testing"

	"github.com/offload-project/offload/market/wire"
)

// TestEveryTopicHasAValidator: a provider node joins the task and
// capability topics, and every topic it joined has a registered rule
// (node/validate.go), so no gossip reaches the market unchecked.
func TestEveryTopicHasAValidator(t *testing.T) {
	n := startNode(t, t.TempDir(), true, nil, fakeProvider(nil))
	h := n.Host()
	stats := h.TopicStats()
	topics := h.PubSub.GetTopics()
	for _, base := range []string{wire.TopicTasks, wire.TopicCaps} {
		found := false
		for _, tp := range topics {
			found = found || tp == h.Topic(base)
		}
		if !found {
			t.Errorf("the node did not join %s (joined %v)", base, topics)
		}
	}
	for _, tp := range topics {
		if _, ok := stats[tp]; !ok {
			t.Errorf("topic %s has no validator (rules: %v)", tp, stats)
		}
	}
}
