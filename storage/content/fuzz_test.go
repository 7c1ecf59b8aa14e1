package content_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/offload-project/offload/storage/content"
)

func FuzzParseCID(f *testing.F) {
	for _, s := range []string{"", "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN",
		"bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am", "/ipfs/Qm", "zzzz", "f01551220"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := content.ParseCID(s)
		if err != nil {
			if !errors.Is(err, content.ErrInvalidCID) {
				t.Fatalf("error does not wrap ErrInvalidCID: %v", err)
			}
			return
		}
		again, err := content.ParseCID(c.String())
		if err != nil || !again.Equals(c) {
			t.Fatalf("round trip of %s: %v", c, err)
		}
	})
}

func FuzzValidateEntryName(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a", "a/b", "/abs", "..\\x", "x\x00", "...", ".hidden"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := content.ValidateEntryName(name)
		unsafe := name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00")
		if unsafe != (err != nil) {
			t.Fatalf("%q: unsafe=%v err=%v", name, unsafe, err)
		}
		if err != nil && !errors.Is(err, content.ErrUnsafeName) {
			t.Fatalf("%q: error does not wrap ErrUnsafeName: %v", name, err)
		}
	})
}
