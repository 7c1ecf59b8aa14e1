# offload — build and test entry points.
#
#   make test   installs and starts what the tests need (a Docker engine,
#               Chromium for the dashboard test, the Debian Python image of
#               scripts/python-image.sh; as root), then runs every
#               test, type-checks the Python package, then each fuzz
#               target briefly.
#   make build  builds ./bin/offload.

GO ?= go
FUZZTIME ?= 5s
TEST_TIMEOUT ?= 12m

.PHONY: build test deps unit fuzz vet pytypes chaos flood bench scale natlab

build:
	$(GO) build -o bin/offload ./cmd/offload

deps:
	@bash scripts/ensure-docker.sh
	@bash scripts/ensure-chromium.sh >/dev/null
	@bash scripts/python-image.sh >/dev/null

vet:
	$(GO) vet ./...

# Type-checks the Python package with pyright (installed from npm, pinned;
# settings in sdk/python/pyproject.toml).
pytypes:
	@bash scripts/pytypes.sh

unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# Runs each fuzz target for FUZZTIME on top of its committed seed corpus.
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

# The chaos suite at full size (make test runs its small version): tasks
# while providers are killed, the requestor is killed and restarted, and
# (as root) a provider is cut off in a network namespace.
chaos:
	OFFLOAD_CHAOS=full $(GO) test -count=1 -v -run '^TestChaos$$' -timeout 15m ./bench

# The Sybil flood with its latency and memory targets, at the quick size (50
# identities) and the full one (100 at four times the rates); make test runs
# the quick size and checks only that honest work completes (see
# BENCHMARKS.md). OFFLOAD_FLOOD_OUT=FILE keeps the figures as JSON.
flood:
	OFFLOAD_FLOOD=quick $(GO) test -count=1 -v -run '^TestSybilFlood$$' -timeout 15m ./bench
	OFFLOAD_FLOOD=full $(GO) test -count=1 -v -run '^TestSybilFlood$$' -timeout 15m ./bench

# The benchmark harness (see BENCHMARKS.md); BENCHFLAGS=--quick for a short run.
bench:
	bash bench/run $(BENCHFLAGS)

# The scale harness of issue 16 (bench/scale): one requestor and N providers
# as libp2p hosts, the providers in worker processes of at most 64 each
# (-per-proc), N = 4, 32, 128, 512 by default;
# SCALEFLAGS adds flags (-n, -tasks, -inflight, -json, -cpuprofile DIR).
scale:
	$(GO) run ./bench/scale $(SCALEFLAGS)

test: deps vet pytypes unit fuzz

# The NAT lab's benchmark (issue 17; as root, in network namespaces the test
# makes): time from start to the first task across two NATs (median of 5),
# throughput hole-punched vs relayed (see BENCHMARKS.md).
natlab:
	OFFLOAD_NATLAB=bench $(GO) test -count=1 -v -run '^TestNATLabBench$$' -timeout 15m ./cmd/offload
