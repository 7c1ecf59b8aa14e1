package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
)

func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	var from string
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a task's output; with -f, follow it as it is written",
		Long: `Print what a task wrote to stdout and stderr, from its provider while it
runs (the provider keeps a run's latest 256 KiB) or from its result once
it ended. With -f the output is followed as it is written until the task
ends; if the node stops meanwhile (a restart), logs waits for it and goes
on from where it was.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			print := func(c client.LogChunk) error {
				switch {
				case c.Note != "":
					fmt.Fprintf(errw, "offload: %s\n", c.Note)
				case c.Skipped > 0:
					fmt.Fprintf(errw, "offload: %d bytes of earlier output are no longer held\n", c.Skipped)
				}
				w := out
				if c.Stream == "stderr" {
					w = errw
				}
				_, err := io.WriteString(w, c.Text)
				return err
			}
			pos := from
			for wait := time.Duration(0); ; {
				c, err := g.client()
				if err == nil {
					pos, err = c.Logs(cmd.Context(), args[0], pos, follow, print)
					if err == nil {
						return nil
					}
				}
				if !follow || cmd.Context().Err() != nil || (c != nil && !errors.Is(err, client.ErrLogsInterrupted)) {
					return err
				}
				// The node went away (a restart): wait for it, then go on
				// from the position reached.
				wait = min(max(2*wait, 200*time.Millisecond), 5*time.Second)
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(wait):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output as it is written, until the task ends")
	cmd.Flags().StringVar(&from, "from", "", "resume from this position (ATTEMPT:OFFSET, as the API's event ids)")
	return cmd
}
