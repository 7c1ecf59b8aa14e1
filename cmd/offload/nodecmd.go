package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/docker/go-units"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/node"
)

func peerID(key crypto.PrivKey) (peer.ID, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("derive peer id: %w", err)
	}
	return id, nil
}

func newNodeCmd(g *globals) *cobra.Command {
	var cfg node.Config
	var labels, executors []string
	var taskDisk, maxFetch, imageCache, wasmCache string
	var reach *reachFlags
	cmd := &cobra.Command{
		Use:   "node [--provider] [--listen MA]... [--bootstrap MA]... [--api HOST:PORT] [--metrics HOST:PORT]",
		Short: "Run a node (a requestor; with --provider also a provider)",
		Long: `Run a node until interrupted.

Every node can submit tasks. With --provider it also sells compute: it bids on
announced tasks within its free capacity and runs them with its executors.

The API listens on loopback; the URL it actually listens on is written to
$home/api and its token to $home/api.token, so '--api 127.0.0.1:0' and
'--listen /ip4/127.0.0.1/tcp/0' pick free ports.

Beyond loopback (--api-allow-remote) the API is served over HTTPS only: with
--api-tls-cert/--api-tls-key, or else a self-signed certificate the node
generates once and keeps in its home. The certificate's SHA-256 fingerprint
is printed and written to $home/api.fingerprint; clients on other machines
pin it (--api-fingerprint or OFFLOAD_API_FINGERPRINT).

/metrics on the API needs the API token (Prometheus sends it with
'authorization: {credentials_file: HOME/api.token}'). --metrics HOST:PORT
also serves /metrics WITHOUT a token on that address, for a scraper the
operator lets reach it.`,
		Example: `  offload node --provider --listen /ip4/0.0.0.0/tcp/4001
  offload node --bootstrap /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Home = g.home
			cfg.Logger = g.logger(os.Stderr)
			cfg.Executors = splitList(executors)
			if cfg.BuildNetwork != "" && !(cfg.Provider && (cfg.Build || slices.Contains(cfg.Executors, "build"))) {
				return fmt.Errorf("--build-network %s: only with --provider --build (it lets the RUN steps of image builds use that Docker network)", cfg.BuildNetwork)
			}
			var err error
			if cfg.Labels, err = parseKV(labels); err != nil {
				return fmt.Errorf("--labels: %w", err)
			}
			if taskDisk != "" {
				n, err := units.RAMInBytes(taskDisk)
				if err != nil || n < 1<<20 {
					return fmt.Errorf("--task-disk %q: want a size of at least 1MiB such as 512MiB or 2GiB", taskDisk)
				}
				cfg.OutputsQuota = n
			}
			if maxFetch != "" {
				n, err := units.RAMInBytes(maxFetch)
				if err != nil || n < 1<<20 {
					return fmt.Errorf("--max-fetch %q: want a size of at least 1MiB such as 512MiB or 16GiB", maxFetch)
				}
				cfg.MaxFetchBytes = n
			}
			if imageCache != "" {
				n, err := units.RAMInBytes(imageCache)
				if err != nil || n < 1<<20 {
					return fmt.Errorf("--image-cache %q: want a size of at least 1MiB such as 512MiB or 20GiB", imageCache)
				}
				cfg.ImageCacheBytes = n
			}
			if wasmCache != "" {
				n, err := units.RAMInBytes(wasmCache)
				if err != nil || n < 1<<20 {
					return fmt.Errorf("--wasm-cache %q: want a size of at least 1MiB such as 512MiB or 2GiB", wasmCache)
				}
				cfg.WASMCacheBytes = n
			}
			if cfg.Price < 0 {
				return fmt.Errorf("--price must not be negative")
			}
			if err := reach.apply(&cfg); err != nil {
				return err
			}
			if addr := os.Getenv(PprofEnv); addr != "" {
				stop, err := startPprof(addr, cfg.Home, cfg.Logger)
				if err != nil {
					return err
				}
				defer stop()
			}
			n, err := node.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			id := n.Identity()
			fmt.Fprintf(cmd.ErrOrStderr(), "offload node %s running (provider=%v)\n", id.ID, cfg.Provider)
			for _, a := range id.Addrs {
				fmt.Fprintf(cmd.ErrOrStderr(), "  listening on %s\n", a)
			}
			if fp := n.APIFingerprint(); fp != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "  api %s, certificate %s (clients pin it: %s)\n", n.APIURL(), fp, filepath.Join(cfg.Home, client.FingerprintFile))
			} else if u := n.APIURL(); u != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "  api %s\n", u)
			}
			if u := n.MetricsURL(); u != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "  metrics %s (no token)\n", u)
			}
			<-cmd.Context().Done()
			fmt.Fprintln(cmd.ErrOrStderr(), "stopping node")
			return n.Close()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&cfg.Provider, "provider", false, "sell compute: bid on tasks and run them")
	f.StringArrayVar(&cfg.Listen, "listen", nil, "libp2p listen multiaddr (repeatable; default /ip4/0.0.0.0/tcp/4001 and QUIC)")
	f.StringArrayVar(&cfg.Bootstrap, "bootstrap", nil, "bootstrap peer multiaddr with /p2p/ID (repeatable)")
	f.StringVar(&cfg.APIAddr, "api", "127.0.0.1:5050", "HTTP API address (loopback unless --api-allow-remote)")
	f.BoolVar(&cfg.AllowRemoteAPI, "api-allow-remote", false, "allow a non-loopback --api address; the API is then served over HTTPS only (see --api-tls-cert)")
	f.BoolVar(&cfg.APITLS, "api-tls", false, "serve the API over HTTPS on loopback too (self-signed unless --api-tls-cert)")
	f.StringVar(&cfg.APITLSCert, "api-tls-cert", "", "PEM certificate the API serves over HTTPS (with --api-tls-key; default beyond loopback: a self-signed one kept in $home/api.crt)")
	f.StringVar(&cfg.APITLSKey, "api-tls-key", "", "PEM private key of --api-tls-cert")
	f.StringVar(&cfg.MetricsAddr, "metrics", "", "also serve /metrics WITHOUT a token on HOST:PORT (loopback unless --metrics-allow-remote); the API's /metrics needs the token")
	f.BoolVar(&cfg.AllowRemoteMetrics, "metrics-allow-remote", false, "allow a non-loopback --metrics address: whoever reaches it reads the metrics, unauthenticated")
	f.StringVar(&cfg.SwarmKeyPath, "swarm-key", "", "private swarm key file (default $home/swarm.key when present)")
	f.StringSliceVar(&executors, "executors", nil, "executors to offer: docker,wasm,build (default: docker and wasm, what is available)")
	f.BoolVar(&cfg.Build, "build", false, "also build images for requestors ('offload image build'): Dockerfiles built step by step in the task sandbox, on the Docker engine")
	f.StringVar(&cfg.BuildNetwork, "build-network", "", "let RUN steps of image builds use this Docker network, e.g. bridge (advertised as the label build-network=NAME; a step reaches what the network reaches: prefer a network made for builds); default: no network")
	f.StringVar(&taskDisk, "task-disk", "", "disk each task may write: /outputs, /work and volumes together, and what it returns (default 1GiB)")
	f.StringVar(&maxFetch, "max-fetch", "", "most bytes of content fetched for each image, input or volume of a task, enforced while fetching; a smaller size the task declares bounds it instead (default 16GiB)")
	f.StringVar(&imageCache, "image-cache", "", "most bytes of images and WASM modules loaded by CID kept for later tasks; the least recently used no task uses are removed to make room, and a larger image is refused (default 20GiB)")
	f.StringVar(&wasmCache, "wasm-cache", "", "most bytes of compiled code of WASM modules kept on disk for later runs (in the user's cache directory, shared by the user's nodes); the least recently used no task runs are removed to make room (default 2GiB)")
	f.DurationVar(&cfg.GCInterval, "gc-interval", 0, "how often to collect blocks no pin holds (what a provider fetched for tasks); default 30m, negative: never")
	f.BoolVar(&cfg.RequireGVisor, "require-gvisor", false, "run every docker task under gVisor (runsc registered with the engine); services are declined")
	f.StringArrayVar(&cfg.AllowImages, "allow-image", nil, "local Docker image requestors may run by name (repeatable; a pattern such as 'python:3.*'); images given by CID always run")
	f.StringSliceVar(&labels, "labels", nil, "provider labels k=v,... (e.g. fpga=xilinx)")
	f.StringVar(&cfg.NvidiaSMI, "nvidia-smi", "", "the nvidia-smi command GPUs are detected with (default: nvidia-smi on PATH; '-': none)")
	f.Float64Var(&cfg.Price, "price", 0, "price in credits per CPU-second")
	f.BoolVar(&cfg.MDNS, "mdns", false, "find peers of the same swarm on the local network (multicast DNS)")
	f.BoolVar(&cfg.DisableNAT, "no-nat", false, "turn off NAT traversal (AutoNAT, port mapping, relays, hole punching)")
	reach = addReachFlags(f, &cfg)
	return cmd
}

func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func parseKV(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range splitList(in) {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not k=v", s)
		}
		out[k] = v
	}
	return out, nil
}
