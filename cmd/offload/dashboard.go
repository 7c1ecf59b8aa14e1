package main

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"
)

func newDashboardCmd(g *globals) *cobra.Command {
	var noOpen, asJSON bool
	cmd := &cobra.Command{
		Use:   "dashboard [--no-open] [--json]",
		Short: "Open the running node's web dashboard",
		Long: `Print the link to the running node's web dashboard (peers, hardware pool,
tasks updating live, a task's bids, executions and result) and open it in a
browser when this session has a display.

The link carries the API token in its fragment (#token=...): browsers never
send a fragment to the server, so it stays out of logs, but anyone with the
link can use the node's API. Do not share it. The page forgets the token when
its tab closes.`,
		Example: `  offload dashboard
  offload dashboard --no-open      # print the link only (e.g. over ssh with a port forward)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.ID(cmd.Context()); err != nil {
				return err
			}
			link := c.BaseURL + "/#token=" + url.QueryEscape(c.Token)
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]string{"url": link})
			}
			fmt.Fprintln(cmd.OutOrStdout(), link)
			if noOpen {
				return nil
			}
			if opener := browserOpener(); opener != "" {
				if err := startDetached(opener, link); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "could not start %s (%v): open the link above yourself\n", opener, err)
				}
				return nil
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "no display found: open the link above in a browser on this machine (or forward the port)")
			return nil
		},
	}
	cmd.Flags().BoolVar(&noOpen, "no-open", false, "print the link without opening a browser")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"url": ...} and open nothing`)
	return cmd
}

// browserOpener names the program that opens a URL in the user's browser,
// or "" when there is no display to show one on.
func browserOpener() string {
	switch runtime.GOOS {
	case "darwin":
		return "open"
	case "windows":
		return "" // no reliable opener without a shell; the link is printed
	}
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return ""
	}
	if p, err := exec.LookPath("xdg-open"); err == nil {
		return p
	}
	return ""
}

// startDetached starts prog with arg and does not wait for it: the
// browser outlives this command.
func startDetached(prog, arg string) error {
	c := exec.Command(prog, arg)
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", prog, err)
	}
	return c.Process.Release()
}
