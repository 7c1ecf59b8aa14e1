package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
)

func newPoolCmd(g *globals) *cobra.Command {
	var (
		asJSON                                     bool
		cpus                                       float64
		gpus                                       int
		memory, gpuModel, arch, os, exe, isolation string
		labels                                     []string
	)
	cmd := &cobra.Command{
		Use:   "pool [--json] [--cpus N] [--memory SIZE] [--gpus N] [--gpu-model M] [--arch A] [--os O] [--executor E] [--label k=v]...",
		Short: "List the providers this node knows, filtered by hardware",
		Long: `List the providers in the node's pool: every provider whose signed
capability record reached it (by gossip, by asking peers, or through the DHT)
and has not expired.

Filters narrow the list; an unset filter or the value 'any' matches everything.
--cpus and --memory ask for at least that much, --gpus for at least that many
GPUs (of --gpu-model, a case-insensitive substring, when given), --label k=v
for a provider label (repeatable).`,
		Example: `  offload pool
  offload pool --gpus 1 --gpu-model h100 --json
  offload pool --label fpga=xilinx --executor docker`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := client.PoolFilter{CPUs: cpus, GPUs: gpus, GPUModel: gpuModel, Arch: arch, OS: os, Executor: exe, Isolation: isolation}
			if cpus < 0 || gpus < 0 {
				return fmt.Errorf("--cpus and --gpus must not be negative")
			}
			if memory != "" && !strings.EqualFold(memory, "any") {
				m, err := units.RAMInBytes(memory)
				if err != nil || m < 0 {
					return fmt.Errorf("--memory %q is not a size (try 512m or 2g)", memory)
				}
				f.MemoryBytes = m
			}
			var err error
			if f.Labels, err = parseKV(labels); err != nil {
				return fmt.Errorf("--label: %w", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			providers, err := c.Pool(cmd.Context(), f)
			if err != nil {
				return err
			}
			if providers == nil {
				providers = []client.Provider{}
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), providers)
			}
			if len(providers) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no matching provider known (is a provider running and connected? see 'offload peers')")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tOS/ARCH\tCPUS\tMEMORY\tGPUS\tEXECUTORS\tPRICE\tFREE CPUS\tLABELS")
			for _, p := range providers {
				var gs []string
				for _, g := range p.Hardware.GPUs {
					gs = append(gs, g.Model)
				}
				var ls []string
				for k, v := range p.Hardware.Labels {
					ls = append(ls, k+"="+v)
				}
				gpuText := "-"
				if len(gs) > 0 {
					gpuText = fmt.Sprintf("%d (%s)", len(gs), strings.Join(gs, ", "))
				}
				fmt.Fprintf(tw, "%s\t%s/%s\t%d\t%s\t%s\t%s\t%g\t%g\t%s\n", p.Peer, p.Hardware.OS, p.Hardware.Arch,
					p.Hardware.CPUs, units.BytesSize(float64(p.Hardware.MemoryBytes)), gpuText,
					strings.Join(p.Executors, ","), p.Price, p.Free.CPUs, strings.Join(ls, ","))
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	fl.Float64Var(&cpus, "cpus", 0, "at least N CPUs")
	fl.StringVar(&memory, "memory", "", "at least SIZE of memory (e.g. 16g)")
	fl.IntVar(&gpus, "gpus", 0, "at least N GPUs")
	fl.StringVar(&gpuModel, "gpu-model", "", "GPU model (case-insensitive substring, e.g. h100)")
	fl.StringVar(&arch, "arch", "", "architecture (amd64, arm64)")
	fl.StringVar(&os, "os", "", "operating system (linux, darwin, windows)")
	fl.StringVar(&exe, "executor", "", "executor (docker, wasm)")
	fl.StringVar(&isolation, "isolation", "", "isolation the provider offers (gvisor)")
	fl.StringArrayVar(&labels, "label", nil, "provider label k=v (repeatable)")
	return cmd
}
