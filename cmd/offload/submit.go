package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
)

func newSubmitCmd(g *globals) *cobra.Command {
	var file string
	var dryRun, wait, asJSON bool
	cmd := &cobra.Command{
		Use:   "submit -f TASK.yaml [--dry-run] [--wait] [--json]",
		Short: "Submit a task file: stages, inputs, artifacts, hardware, subtasks",
		Long: `Submit a task described in a YAML (or JSON) file.

A malformed file is refused with the line and a clear message, and creates
no task; --dry-run only checks the file (no node needed). Inputs with
'local: PATH' are added as content first (relative to the file).

  name: pipeline
  image: hello:1
  resources: {cpus: 1, memory: 256m}
  timeout: 2m
  inputs:
    - {local: ./data, path: /inputs/data}
  stages:
    - {name: prepare, command: [/hello, write, /work/step1, ok]}
    - {name: build, command: [/hello, cat, /work/step1], continue_on_error: true}
  artifacts: [/work/step1]`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f TASK.yaml is required")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read task file: %w", err)
			}
			tf, err := client.ParseTaskFile(data)
			if err != nil {
				return err
			}
			if dryRun {
				spec, _ := tf.Spec(nil)
				if asJSON {
					return printJSON(cmd.OutOrStdout(), spec)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (%d stages, %d inputs, %d subtasks)\n", file, len(spec.Stages), len(spec.Inputs), len(spec.Subtasks))
				return nil
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			added := map[string]string{}
			var temporary []string // the CIDs added for this task only
			for key, local := range tf.LocalInputs() {
				path, err := absPath(client.ResolveLocal(file, local))
				if err != nil {
					return err
				}
				id, err := c.AddWith(cmd.Context(), path, client.AddOptions{CIDVersion: 1, Temporary: true})
				if err != nil {
					return fmt.Errorf("add input %s: %w", local, err)
				}
				added[key] = id
				temporary = append(temporary, id)
			}
			spec, err := tf.Spec(added)
			if err != nil {
				return err
			}
			t, err := c.Submit(cmd.Context(), spec)
			if err != nil {
				return err
			}
			// The local inputs were added for this task only: the node
			// releases them once it has ended (unless the user pinned the
			// same bytes with `offload add`: those stay).
			for _, id := range temporary {
				if err := c.HoldForTask(cmd.Context(), id, t.ID); err != nil && !isConflict(err) {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: input %s stays pinned: %v\n", id, err)
				}
			}
			if !wait {
				if asJSON {
					return printJSON(cmd.OutOrStdout(), map[string]string{"id": t.ID})
				}
				fmt.Fprintln(cmd.OutOrStdout(), t.ID)
				return nil
			}
			return follow(cmd, c, t.ID, asJSON)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "task file (YAML or JSON)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the file only")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the result")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// isConflict reports the node's 409 answer.
func isConflict(err error) bool {
	var e *client.APIError
	return errors.As(err, &e) && e.Status == http.StatusConflict
}
