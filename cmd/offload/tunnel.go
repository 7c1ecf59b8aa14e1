package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

func newTunnelCmd(g *globals) *cobra.Command {
	var local string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tunnel ID PORT [--local HOST:PORT]",
		Short: "Forward a local TCP address to a port of a running service",
		Long: `Forward a local TCP address to a port of a running service task.

The node listens on --local (loopback only; port 0 picks a free one) and
carries every connection over libp2p to the provider, which connects to the
service's port on its internal network. Only the task's requestor can open a
tunnel. The address is printed on stdout (the tunnel object with --json); the
command keeps running until interrupted or until the task ends, then closes
the tunnel.`,
		Example: `  offload run --service --port 8080 --timeout 1h --image web:1 -- /web
  offload tunnel 01jabc... 8080 --local 127.0.0.1:8080`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeTaskIDs(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := strconv.Atoi(args[1])
			if err != nil || port < 1 || port > 65535 {
				return fmt.Errorf("PORT %q is not a port number", args[1])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.OpenTunnel(cmd.Context(), args[0], port, local)
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = c.CloseTunnel(ctx, t.ID)
			}()
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), t); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), t.Local)
				fmt.Fprintf(cmd.ErrOrStderr(), "forwarding %s to port %d of task %s (Ctrl-C to stop)\n", t.Local, port, args[0])
			}
			// Wait for an interrupt, or for the task to end (the node closes
			// the tunnel then).
			last, err := c.Watch(cmd.Context(), args[0], nil)
			if cmd.Context().Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "task %s is %s; tunnel closed\n", args[0], last.State)
			return nil
		},
	}
	cmd.Flags().StringVar(&local, "local", "127.0.0.1:0", "local address to listen on (loopback host:port)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the tunnel as JSON")
	return cmd
}
