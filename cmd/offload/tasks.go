package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "status ID [--json]",
		Short:             "Show a task's state, bids, executions and result",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTaskIDs(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), t)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "task      %s\nstate     %s\n", t.ID, t.State)
			if t.Reason != "" {
				fmt.Fprintf(w, "reason    %s\n", t.Reason)
			}
			if t.Provider != "" {
				fmt.Fprintf(w, "provider  %s\n", t.Provider)
			}
			if t.ExitCode != nil {
				fmt.Fprintf(w, "exit code %d\nusage     wall %dms, cpu %dms, max rss %d bytes\n", *t.ExitCode, t.Usage.WallMS, t.Usage.CPUMS, t.Usage.MaxRSSBytes)
			}
			for _, c := range t.Children {
				fmt.Fprintf(w, "child     %d %s %s", c.Piece, c.ID, c.State)
				if c.Provider != "" {
					fmt.Fprintf(w, " on %s", c.Provider)
				}
				if c.Verdict != "" {
					fmt.Fprintf(w, ": %s", c.Verdict)
				}
				fmt.Fprintln(w)
			}
			for _, b := range t.Bids {
				if b.Decline != "" {
					fmt.Fprintf(w, "bid       %s declined: %s\n", b.Provider, b.Decline)
					continue
				}
				if b.Silent {
					fmt.Fprintf(w, "bid       %s %s\n", b.Provider, b.Outcome)
					continue
				}
				fmt.Fprintf(w, "bid       %s price %g start %dms %s\n", b.Provider, b.Price, b.StartMS, b.Outcome)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	var asJSON bool
	var states []string
	cmd := &cobra.Command{
		Use:   "list [--json] [--state S]...",
		Short: "List this node's tasks, newest first",
		Example: `  offload list
  offload list --state running,bidding --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ts, err := c.List(cmd.Context(), states...)
			if err != nil {
				return err
			}
			if ts == nil {
				ts = []client.Task{}
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), ts)
			}
			if len(ts) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no tasks (submit one with 'offload run --image REF -- CMD')")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tIMAGE\tCREATED\tREASON")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.State, t.Spec.Image, t.CreatedAt.Local().Format(time.DateTime), t.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only tasks in these states: pending, bidding, awarded, running, completed, failed, canceled")
	_ = cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions(taskStates, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "cancel ID",
		Short:             "Cancel a task (its container is stopped on the provider)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTaskIDs(g, "pending", "bidding", "awarded", "running"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.Cancel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", t.ID, t.State)
			return nil
		},
	}
}
