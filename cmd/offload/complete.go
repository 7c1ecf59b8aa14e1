package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
)

// taskStates are the states `list --state` completes.
var taskStates = []string{"pending", "bidding", "awarded", "running", "verifying", "completed", "failed", "canceled"}

// completeTaskIDs completes a task id argument from the running node's
// tasks (only those in states, when given), each with its state and image
// as the description. Without a running node it completes nothing.
func completeTaskIDs(g *globals, states ...string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := g.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		parent := cmd.Context()
		if parent == nil {
			parent = context.Background()
		}
		ctx, cancel := context.WithTimeout(parent, 2*time.Second)
		defer cancel()
		ts, err := c.List(ctx, states...)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		out := make([]cobra.Completion, 0, len(ts))
		for _, t := range ts {
			out = append(out, cobra.CompletionWithDesc(t.ID, t.State+" "+t.Spec.Image))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
