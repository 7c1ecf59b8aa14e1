package p2p

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// NewSwarmKey returns a new pre-shared key in the standard libp2p swarm.key
// format ("/key/swarm/psk/1.0.0/", "/base16/", 64 hex digits).
func NewSwarmKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate swarm key: %w", err)
	}
	return []byte("/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(key) + "\n"), nil
}

// ParseSwarmKey decodes a swarm.key file's content.
func ParseSwarmKey(data []byte) (pnet.PSK, error) {
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse swarm key: %w", err)
	}
	return psk, nil
}

// ReadSwarmKey reads and decodes a swarm.key file.
func ReadSwarmKey(path string) (pnet.PSK, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read swarm key: %w", err)
	}
	return ParseSwarmKey(data)
}

// SwarmID is a short public fingerprint of a pre-shared key, used to give a
// private swarm its own DHT prefix and topic names. It reveals nothing
// useful about the key itself.
func SwarmID(psk pnet.PSK) string {
	if len(psk) == 0 {
		return ""
	}
	sum := sha256.Sum256(append([]byte("offload-swarm-id:"), psk...))
	return hex.EncodeToString(sum[:8])
}
