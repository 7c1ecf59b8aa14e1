package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
)

func newIDCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "id [--json]",
		Short: "Show the running node's peer id, addresses, reachability, API URL and API certificate fingerprint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			id, err := c.ID(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), id)
			}
			fmt.Fprintln(cmd.OutOrStdout(), id.ID)
			for _, a := range id.Addrs {
				fmt.Fprintln(cmd.OutOrStdout(), "  "+a)
			}
			if id.Reachability != "" {
				fmt.Fprintln(cmd.OutOrStdout(), "reachability "+reachabilityText(id.Reachability))
			}
			fmt.Fprintln(cmd.OutOrStdout(), "api "+c.BaseURL)
			// The pin this client checked the API against, as the node
			// wrote it: what a client on another machine must pin.
			if fp, err := os.ReadFile(filepath.Join(g.home, client.FingerprintFile)); err == nil && strings.HasPrefix(c.BaseURL, "https://") {
				fmt.Fprintln(cmd.OutOrStdout(), "api certificate "+strings.TrimSpace(string(fp)))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newPeersCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "peers [--json]",
		Short: "List connected peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			peers, err := c.Peers(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), peers)
			}
			if len(peers) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no peers connected (start with --bootstrap ADDR to join a swarm)")
			}
			for _, p := range peers {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %v\n", p.ID, p.Addrs)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// reachabilityText explains a node's reachability for `offload id`.
func reachabilityText(r string) string {
	switch r {
	case "public":
		return "public (AutoNAT peers dialed this node back; it serves the DHT and a relay)"
	case "behind-nat":
		return "behind NAT (no peer could dial back; no relay reservation yet)"
	case "relayed":
		return "relayed (behind NAT, reachable through the relay addresses above; direct connections by hole punching)"
	case "unknown":
		return "unknown (AutoNAT has not decided yet)"
	case "local":
		return "local (NAT traversal off: loopback listen addresses, a private swarm or --no-nat)"
	}
	return r
}
