package main

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/offload-project/offload/client"
)

// progress returns a progress callback drawing a byte counter on stderr when
// stderr is a terminal, and nil (no progress traffic at all) otherwise.
func progress(cmd *cobra.Command, what string) (func(int64), func()) {
	f, ok := cmd.ErrOrStderr().(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish())
	return func(n int64) { _ = bar.Set64(n) }, func() { _ = bar.Finish() }
}

func absPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	return a, nil
}

func newAddCmd(g *globals) *cobra.Command {
	var asJSON, public bool
	var version int
	cmd := &cobra.Command{
		Use:   "add PATH [--json] [--cid-version 0|1] [--public]",
		Short: "Add a file or directory as content (pinned, private unless --public) and print its CID",
		Long: `Add a file or a directory tree as IPFS content.

The content is private: this node serves it only to the providers of the
tasks that use it, and does not announce it. With --public (or later with
'offload publish CID') any node may fetch it and it is announced in the DHT.

CIDs match the reference IPFS implementation: --cid-version 0 gives what
'ipfs add' prints with its defaults (256 KiB chunks, dag-pb, CIDv0); the
default, version 1, uses raw leaves like 'ipfs add --cid-version 1'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version != 0 && version != 1 {
				return fmt.Errorf("--cid-version must be 0 or 1")
			}
			path, err := absPath(args[0])
			if err != nil {
				return err
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("add: %w", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			prog, done := progress(cmd, "adding")
			id, err := c.AddWith(cmd.Context(), path, client.AddOptions{CIDVersion: version, Public: public, Progress: prog})
			done()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]string{"cid": id})
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&version, "cid-version", 1, "CID version: 0 (reference defaults) or 1 (raw leaves)")
	cmd.Flags().BoolVar(&public, "public", false, "publish: any node may fetch it, announced in the DHT")
	return cmd
}

func newPublishCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "publish CID",
		Short: "Make content this node holds public: any node may fetch it, announced in the DHT",
		Long: `Publish content this node holds completely (added, or fetched with
'offload get'). Content is private until published: the node serves it
only to the providers of the tasks that use it. Publishing pins it; 'offload
rm CID' ends the publication.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Publish(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "published %s\n", args[0])
			return nil
		},
	}
}

func newGetCmd(g *globals) *cobra.Command {
	var out string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "get CID -o PATH",
		Short: "Fetch content (from any node of the swarm that serves it to this one) to a file or directory",
		Long: `Fetch content to a file or directory. Content is private by default: a
node serves it only to the peers it shares it with (the providers and the
requestor of a task that uses it) and to anyone once published. A fetch
fails when no block arrived for --timeout (default: the node's, 60s).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("-o PATH is required")
			}
			dest, err := absPath(out)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			prog, done := progress(cmd, "fetching")
			err = c.GetContentWith(cmd.Context(), args[0], dest, client.GetOptions{Timeout: timeout, Progress: prog})
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", dest)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write the file or directory (must not exist)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up when no block arrived for this long (default: the node's, 60s)")
	return cmd
}

func newLsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List the content this node pins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			pins, err := c.Pins(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), pins)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CID\tNAME\tPINNED")
			for _, p := range pins {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.CID, p.Name, p.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm CID",
		Short: "Unpin content; blocks nothing else uses are collected",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			n, err := c.Remove(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unpinned %s, %d blocks collected\n", args[0], n)
			return nil
		},
	}
}

func newImageCmd(g *globals) *cobra.Command {
	img := &cobra.Command{Use: "image", Short: "Move container images as content"}
	var asJSON, public bool
	push := &cobra.Command{
		Use:   "push IMAGE [--json] [--public]",
		Short: "Add a local Docker image (its docker-save tarball) as content; providers load it by CID",
		Long: `Add a local Docker image (its docker-save tarball) as content; providers
load it by CID. The image is private: this node serves it only to the
providers of the tasks that run it. --public publishes it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			prog, done := progress(cmd, "pushing")
			id, err := c.PushImageWith(cmd.Context(), args[0], client.PushOptions{Public: public, Progress: prog})
			done()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]string{"cid": id})
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	push.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	push.Flags().BoolVar(&public, "public", false, "publish: any node may fetch it, announced in the DHT")
	img.AddCommand(push, newImageBuildCmd(g))
	return img
}

func newResultsCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "results ID -o DIR",
		Short: "Write a task's outputs (what it wrote to /outputs) to DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("-o DIR is required")
			}
			dest, err := absPath(out)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			prog, done := progress(cmd, "fetching outputs")
			id, err := c.Results(cmd.Context(), args[0], dest, prog)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote outputs %s to %s\n", id, dest)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory to write (must not exist)")
	return cmd
}
