package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newIDCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "id [--json]",
		Short: "Show the running node's peer id and addresses",
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
