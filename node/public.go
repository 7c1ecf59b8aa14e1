package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// PublicFile under a node's home marks a node that joins the public
// network (offload init --public): its presence sets Config.Public.
const PublicFile = "public"

// MarkPublic records in home that the node joins the public libp2p/IPFS
// network at every start (offload init --public).
func MarkPublic(home string) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("create home: %w", err)
	}
	const note = "this node joins the public libp2p/IPFS network (offload init --public); delete this file to stop\n"
	if err := os.WriteFile(filepath.Join(home, PublicFile), []byte(note), 0o600); err != nil {
		return fmt.Errorf("mark public: %w", err)
	}
	return nil
}

func publicMarked(home string) bool {
	_, err := os.Stat(filepath.Join(home, PublicFile))
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
