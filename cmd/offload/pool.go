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
		asJSON, why                                bool
		cpus                                       float64
		gpus                                       int
		memory, gpuModel, arch, os, exe, isolation string
		gpuMemory, gpuCompute, cuda                string
		labels                                     []string
	)
	cmd := &cobra.Command{
		Use:   "pool [--json] [--why] [--cpus N] [--memory SIZE] [--gpus N] [--gpu-model M,...] [--gpu-memory SIZE] [--gpu-compute X.Y] [--cuda X.Y] [--arch A] [--os O] [--executor E] [--label k=v]...",
		Short: "List the providers this node knows, filtered by hardware",
		Long: `List the providers in the node's pool: every provider whose signed
capability record reached it (by gossip, by asking peers, or through the DHT)
and has not expired.

Filters narrow the list; an unset filter or the value 'any' matches everything.
--cpus and --memory ask for at least that much, --gpus for at least that many
GPUs, each meeting --gpu-model (case-insensitive substrings, any of a
comma-separated list), --gpu-memory, --gpu-compute (compute capability) and
--cuda (the CUDA version the driver supports) when given; --label k=v for a
provider label (repeatable). --why lists every provider, and for each that
does not match, the first requirement it fails.`,
		Example: `  offload pool
  offload pool --gpus 1 --gpu-model h100 --json
  offload pool --gpus 2 --gpu-memory 40g --gpu-compute 8.0 --cuda 12.2 --why
  offload pool --label fpga=xilinx --executor docker`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := client.PoolFilter{CPUs: cpus, GPUs: gpus, GPUModel: gpuModel, Arch: arch, OS: os, Executor: exe, Isolation: isolation,
				GPUCompute: gpuCompute, CUDA: cuda, Explain: why}
			if gpuMemory != "" {
				m, err := units.RAMInBytes(gpuMemory)
				if err != nil || m <= 0 {
					return fmt.Errorf("--gpu-memory %q is not a size (try 40g)", gpuMemory)
				}
				f.GPUMemoryBytes = m
			}
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
			header := "PEER\tOS/ARCH\tCPUS\tMEMORY\tGPUS\tEXECUTORS\tPRICE\tFREE CPUS\tLABELS"
			if why {
				header += "\tMATCH"
			}
			fmt.Fprintln(tw, header)
			for _, p := range providers {
				var gs []string
				for _, g := range p.Hardware.GPUs {
					if g.ComputeCapability != "" {
						gs = append(gs, fmt.Sprintf("%s %s cc %s", g.Model, units.BytesSize(float64(g.MemoryBytes)), g.ComputeCapability))
					} else {
						gs = append(gs, g.Model)
					}
				}
				var ls []string
				for k, v := range p.Hardware.Labels {
					ls = append(ls, k+"="+v)
				}
				gpuText := "-"
				if len(gs) > 0 {
					gpuText = fmt.Sprintf("%d (%s)", len(gs), strings.Join(gs, ", "))
				}
				fmt.Fprintf(tw, "%s\t%s/%s\t%d\t%s\t%s\t%s\t%g\t%g\t%s", p.Peer, p.Hardware.OS, p.Hardware.Arch,
					p.Hardware.CPUs, units.BytesSize(float64(p.Hardware.MemoryBytes)), gpuText,
					strings.Join(p.Executors, ","), p.Price, p.Free.CPUs, strings.Join(ls, ","))
				if why {
					match := "yes"
					if p.Unmet != "" {
						match = "no: " + p.Unmet
					}
					fmt.Fprintf(tw, "\t%s", match)
				}
				fmt.Fprintln(tw)
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	fl.Float64Var(&cpus, "cpus", 0, "at least N CPUs")
	fl.StringVar(&memory, "memory", "", "at least SIZE of memory (e.g. 16g)")
	fl.IntVar(&gpus, "gpus", 0, "at least N GPUs")
	fl.StringVar(&gpuModel, "gpu-model", "", "GPU models, any of (case-insensitive substrings, comma-separated, e.g. h100,h200)")
	fl.StringVar(&gpuMemory, "gpu-memory", "", "at least SIZE of memory on each GPU (e.g. 40g)")
	fl.StringVar(&gpuCompute, "gpu-compute", "", "at least this compute capability on each GPU (e.g. 8.0)")
	fl.StringVar(&cuda, "cuda", "", "at least this CUDA version supported by the driver (e.g. 12.2)")
	fl.BoolVar(&why, "why", false, "list every provider, saying for each that does not match which requirement it fails")
	fl.StringVar(&arch, "arch", "", "architecture (amd64, arm64)")
	fl.StringVar(&os, "os", "", "operating system (linux, darwin, windows)")
	fl.StringVar(&exe, "executor", "", "executor (docker, wasm)")
	fl.StringVar(&isolation, "isolation", "", "isolation the provider offers (gvisor)")
	fl.StringArrayVar(&labels, "label", nil, "provider label k=v (repeatable)")
	return cmd
}
