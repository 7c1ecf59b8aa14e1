# offload — build and test entry points.
#
#   make test   installs and starts what the tests need (a Docker engine,
#               Chromium for the dashboard test; as root), then runs every
#               test, then each fuzz target briefly.
#   make build  builds ./bin/offload.

GO ?= go
FUZZTIME ?= 5s
TEST_TIMEOUT ?= 12m

.PHONY: build test deps unit fuzz vet

build:
	$(GO) build -o bin/offload ./cmd/offload

deps:
	@bash scripts/ensure-docker.sh
	@bash scripts/ensure-chromium.sh >/dev/null

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# Runs each fuzz target for FUZZTIME on top of its committed seed corpus.
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

test: deps vet unit fuzz
