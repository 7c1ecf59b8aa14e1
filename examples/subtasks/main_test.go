package main

import (
	"bytes"
	"testing"
)

// TestHonestProviders: four pieces on a swarm of two providers, every
// partial sum accepted by the Go callback, the total right.
func TestHonestProviders(t *testing.T) {
	var out bytes.Buffer
	rep, err := run(t.Context(), &out, false)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rejected != 0 || len(rep.Accepted) != Pieces || len(rep.Parent.Children) != Pieces {
		t.Fatalf("rejected %d, accepted %v, children %+v", rep.Rejected, rep.Accepted, rep.Parent.Children)
	}
	for _, c := range rep.Parent.Children {
		if c.Verdict != "accepted" {
			t.Errorf("child %+v not accepted", c)
		}
	}
}

// TestFaultyProviderIsCaught: the cheaper provider wins the pieces and
// lies; verify rejects its sums and the pieces run again on the other
// provider, so the total is still right and no lie was accepted.
func TestFaultyProviderIsCaught(t *testing.T) {
	var out bytes.Buffer
	rep, err := run(t.Context(), &out, true)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rejected == 0 {
		t.Fatal("the faulty provider's sums were never rejected")
	}
	for piece, who := range rep.Accepted {
		if who != "provider-2" {
			t.Errorf("piece %d accepted from %s, the faulty provider", piece, who)
		}
	}
}
