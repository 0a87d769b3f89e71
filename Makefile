# Flow Lock. `make` lists the targets.
GO ?= go
.DEFAULT_GOAL := help

.PHONY: help run demo attack build test test-short bench fuzz check fmt-check vet lint tidy-check eval detection-doc detection-replicas

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## run Flow Lock with built-in demo traffic; dashboard on http://127.0.0.1:8080/
	@echo "compiling flowlock-authz into bin/ (the first time takes a minute)..."
	@$(GO) build -o bin/flowlock-authz ./cmd/flowlock-authz
	./bin/flowlock-authz --demo --quarantine-ttl 30s --drain-delay 0s --grpc-addr 127.0.0.1:9191 --http-addr 127.0.0.1:8080

demo: ## the brief's two demonstrations, no Docker: the sample API on http://127.0.0.1:8000 behind Flow Lock (dashboard http://127.0.0.1:8080/status)
	GO=$(GO) ./scripts/demo.sh

attack: ## while make demo runs: a bot from its own address (127.0.0.2) against http://127.0.0.1:8000
	GO=$(GO) ./scripts/attack.sh

eval: ## detection evaluation on held-out seeds (about a minute)
	$(GO) run ./cmd/flowlock-sim eval --seed-set holdout

detection-doc: ## regenerate docs/detection.md from a full held-out evaluation (with docs/detection-replicas.md)
	$(GO) run ./cmd/flowlock-sim eval --markdown --seed-set holdout --threshold-sweep --replicas-section docs/detection-replicas.md --output docs/detection.md

# The three-replica comparison needs a redis-server: this starts one on
# REDIS_PORT (loopback, no persistence) and stops it by PID.
REDIS_PORT ?= 6399
detection-replicas: ## regenerate docs/detection-replicas.md: one vs three shared vs three unshared replicas (needs redis-server; a few minutes)
	@redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --save '' --appendonly no --loglevel warning & pid=$$!; \
	trap 'kill $$pid' EXIT; \
	for i in $$(seq 50); do redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	$(GO) run ./cmd/flowlock-sim eval --markdown --seed-set holdout --streams 50 --max-requests 3000 \
		--replicas 3 --redis-addr 127.0.0.1:$(REDIS_PORT) --output docs/detection-replicas.md

build: ## build the binaries into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

test: ## the full suite CI runs: format, vet, lint, race tests, end-to-end tests, allocation pins, short fuzz and bench smoke
	$(MAKE) --no-print-directory fmt-check
	$(GO) vet ./...
	$(MAKE) --no-print-directory lint
	$(GO) test -race -count=1 -timeout 20m ./...
	# The race detector changes allocation counts, so some 0-alloc pins skip
	# under -race; run every one of them again without it.
	$(GO) test -count=1 -run 'Allocs|DoesNotAllocate' ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x
	# Benchmarks whose one op is a whole state file or a large population
	# run once; every other benchmark a hundred times.
	$(GO) test -run '^$$' -bench . -skip '$(BIG_BENCH)' -benchtime 100x -benchmem ./internal/...
	$(GO) test -run '^$$' -bench '$(BIG_BENCH)' -benchtime 1x -benchmem ./internal/...

# Benchmarks that cost seconds per op (1 M-entry state files, 100 k
# identities in Redis): the smoke run in `make test` runs them once.
BIG_BENCH = BenchmarkLoadState|BenchmarkWriteState|BenchmarkMemoryPer

test-short: ## unit tests only (no binaries, no browsers, no proxies)
	$(GO) test -race -short ./...

bench: ## benchmarks with allocations (compare runs with benchstat)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./internal/... ./cmd/...

FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each (a duration, or a count such as 20000x)
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

fmt-check: ## fail if gofmt would change anything
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

vet: ## go vet
	$(GO) vet ./...

# golangci-lint, at the version .ci/install-deps.sh pins; .golangci.yml
# chooses the linters.
GOLANGCI_LINT ?= $(or $(shell command -v golangci-lint 2>/dev/null),$(shell $(GO) env GOPATH | cut -d: -f1)/bin/golangci-lint)
lint: ## golangci-lint with the project's chosen linters (install: .ci/install-deps.sh)
	@test -x "$(GOLANGCI_LINT)" || (echo "golangci-lint not found: run .ci/install-deps.sh (it pins the version)"; exit 1)
	$(GOLANGCI_LINT) run ./...

tidy-check: ## fail if go.mod or go.sum are not tidy
	$(GO) mod tidy -diff

check: fmt-check vet tidy-check test ## everything

# The load harness (test/load): builds Flow Lock and two comparison
# servers, runs them on loopback pinned apart from the load generator, and
# prints the README's Performance tables (bin/loadtest.json holds the
# numbers). LOADTEST_FLAGS passes flags, e.g. -markdown or -curve "".
LOADTEST_FLAGS ?=
.PHONY: loadtest
loadtest: ## Check throughput, p50/p99, CPU per Check and memory per client against a no-op and a transport-floor server (about 8 minutes)
	$(GO) build -o bin/loadtest ./test/load/cmd/loadtest
	./bin/loadtest -json bin/loadtest.json $(LOADTEST_FLAGS)
