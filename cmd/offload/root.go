package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
)

// globals holds the flags every command shares.
type globals struct {
	home     string
	logLevel string
	// apiFingerprint pins the API's certificate (--api-fingerprint).
	apiFingerprint string
}

func defaultHome() string {
	if h := os.Getenv("OFFLOAD_HOME"); h != "" {
		return h
	}
	if dir, err := os.UserHomeDir(); err == nil {
		return filepath.Join(dir, ".offload")
	}
	return ".offload"
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "offload",
		Short: "A peer-to-peer compute marketplace node",
		Long: `offload runs a node of a peer-to-peer compute marketplace.

Providers sell CPU, memory and GPUs; requestors announce tasks (a container or
WASM module with inputs by CID), providers bid, the winner runs the task and
returns the result over libp2p.

Start a node with 'offload node' (add --provider to sell compute), then run
tasks with 'offload run'. Try 'offload demo' for a local swarm in one process.
'offload dashboard' opens the node's web dashboard. Listings take --json.

Shell completion: 'offload completion bash|zsh|fish|powershell --help' says
how to load it (e.g. source <(offload completion bash)).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.home, "home", defaultHome(), "node home directory (env OFFLOAD_HOME)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.apiFingerprint, "api-fingerprint", "", "SHA-256 fingerprint of the node API's TLS certificate to pin (env "+client.FingerprintEnv+"; default: $home/"+client.FingerprintFile+" when present)")
	root.AddCommand(
		newInitCmd(g), newSwarmKeyCmd(), newNodeCmd(g), newIDCmd(g), newPeersCmd(g),
		newRunCmd(g), newStatusCmd(g), newLogsCmd(g), newListCmd(g), newCancelCmd(g), newDemoCmd(g),
		newAddCmd(g), newPublishCmd(g), newSubmitCmd(g), newLedgerCmd(g), newGetCmd(g), newLsCmd(g), newRmCmd(g), newImageCmd(g), newResultsCmd(g),
		newPoolCmd(g), newDashboardCmd(g),
		newTunnelCmd(g), newExecCmd(g), newVolumeCmd(g),
	)
	return root
}

func (g *globals) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

func (g *globals) client() (*client.Client, error) {
	return client.FromHome(g.home, client.WithFingerprint(g.apiFingerprint))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("print json: %w", err)
	}
	return nil
}
