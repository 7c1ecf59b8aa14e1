package main

import (
	"bytes"

	"github.com/spf13/cobra"
)

func newExecCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "exec ID [--json] -- CMD ARGS...",
		Short: "Run a command inside a running service",
		Long: `Run a command inside a running service task, over libp2p to its provider.

Its output is streamed to stdout and stderr; with --json the command prints
one object {"stdout", "stderr", "exit_code"} at the end. The exit status is the
command's.`,
		Example:           `  offload exec 01jabc... -- /hello ls /data`,
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: completeTaskIDs(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			var outBuf, errBuf bytes.Buffer
			if asJSON {
				stdout, stderr = &outBuf, &errBuf
			}
			code, err := c.Exec(cmd.Context(), args[0], args[1:], stdout, stderr)
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), map[string]any{
					"stdout": outBuf.String(), "stderr": errBuf.String(), "exit_code": code,
				}); err != nil {
					return err
				}
			}
			if code != 0 {
				return &exitError{code: min(max(code, 1), 255)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {stdout, stderr, exit_code} as JSON at the end")
	return cmd
}
