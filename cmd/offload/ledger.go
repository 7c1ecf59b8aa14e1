package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newLedgerCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ledger [--json]",
		Short: "Credits earned and spent per peer, from countersigned receipts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Ledger(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), l)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tEARNED\tSPENT\tTASKS\tSUCCESS RATE")
			for _, p := range l.Peers {
				rate := "-"
				if r, ok := l.Reputations[p.Peer]; ok && r.Completed+r.Failed > 0 {
					rate = fmt.Sprintf("%d/%d", r.Completed, r.Completed+r.Failed)
				}
				fmt.Fprintf(tw, "%s\t%g\t%g\t%d\t%s\n", p.Peer, p.Earned, p.Spent, p.Tasks, rate)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
