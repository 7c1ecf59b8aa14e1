package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/offload-project/offload/node"
	"github.com/offload-project/offload/p2p"
)

func newInitCmd(g *globals) *cobra.Command {
	var private, public bool
	var swarmKey string
	cmd := &cobra.Command{
		Use:   "init [--private | --swarm-key FILE | --public]",
		Short: "Create a node home: identity, API token, and optionally a private swarm key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if private && swarmKey != "" {
				return fmt.Errorf("--private creates a new swarm key; --swarm-key uses an existing one: pick one")
			}
			if public && (private || swarmKey != "") {
				return fmt.Errorf("--public joins the public network; --private and --swarm-key a private swarm: pick one")
			}
			if err := os.MkdirAll(g.home, 0o700); err != nil {
				return fmt.Errorf("create home: %w", err)
			}
			key, err := p2p.LoadOrCreateIdentity(filepath.Join(g.home, node.IdentityFile))
			if err != nil {
				return err
			}
			if _, err := node.EnsureToken(g.home); err != nil {
				return err
			}
			dst := filepath.Join(g.home, node.SwarmKeyFile)
			switch {
			case private:
				data, err := p2p.NewSwarmKey()
				if err != nil {
					return err
				}
				if err := os.WriteFile(dst, data, 0o600); err != nil {
					return fmt.Errorf("write swarm key: %w", err)
				}
			case swarmKey != "":
				data, err := os.ReadFile(swarmKey)
				if err != nil {
					return fmt.Errorf("read swarm key: %w", err)
				}
				if _, err := p2p.ParseSwarmKey(data); err != nil {
					return err
				}
				if err := os.WriteFile(dst, data, 0o600); err != nil {
					return fmt.Errorf("write swarm key: %w", err)
				}
			}
			if public {
				if _, err := os.Stat(dst); err == nil {
					return fmt.Errorf("%s holds a private swarm key: a node of a private swarm cannot join the public network", dst)
				}
				if err := node.MarkPublic(g.home); err != nil {
					return err
				}
			}
			id, err := peerID(key)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "initialized %s\npeer id: %s\n", g.home, id)
			if private {
				fmt.Fprintf(cmd.OutOrStdout(), "private swarm key: %s (copy it to every member's home)\n", dst)
			}
			if public {
				fmt.Fprintf(cmd.OutOrStdout(), "public network: 'offload node' joins it through the standard libp2p bootstrap list (delete %s to stop)\n", filepath.Join(g.home, node.PublicFile))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&private, "private", false, "create a new private swarm key in the home")
	cmd.Flags().StringVar(&swarmKey, "swarm-key", "", "join the private swarm of this key file")
	cmd.Flags().BoolVar(&public, "public", false, "join the public libp2p/IPFS network at every start (its standard bootstrap list, the public IPFS DHT)")
	return cmd
}

func newSwarmKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "swarm-key",
		Short: "Print a new private swarm key (libp2p swarm.key format) to stdout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := p2p.NewSwarmKey()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
}
