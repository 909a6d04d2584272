# Coalition Exchange. The two commands a new user needs: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BUF := $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0
BIN := bin/coalition
# Where `make demo` keeps its database and certificates (kept across runs).
DEMO_DIR ?= /tmp/coalition-dev

.PHONY: fuzz-smoke demo test build generate proto-check vet go-test postgres clean validate-manifests config-docs config-docs-check

## demo: build and run `coalition dev` with the scripted tour; Ctrl-C stops it.
demo: postgres build
	$(BIN) dev --data-dir $(DEMO_DIR) --partner-sims --tour --log-format text

## test: install what the tests need (PostgreSQL), check the protos, vet, run every test with -race.
test: postgres proto-check vet go-test fuzz-smoke validate-manifests config-docs-check

build:
	$(GO) build -o $(BIN) ./cmd/coalition

postgres:
	@bash scripts/ensure-postgres.sh

## generate: regenerate Go code from proto/ (buf v2, plugins pinned in buf.gen.yaml).
generate:
	$(BUF) generate

## proto-check: lint, breaking check against the previous commit, generated code fresh.
proto-check:
	$(BUF) lint
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
		$(BUF) breaking --against '.git#ref=HEAD~1'; \
	else echo "proto-check: no previous commit with buf.yaml; breaking check skipped"; fi
	$(BUF) generate
	@git diff --exit-code -- proto || { echo "proto-check: generated code is stale: run 'make generate' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "proto-check: untracked generated files" >&2; exit 1; }

vet:
	$(GO) vet ./...

go-test:
	$(GO) test -race -count=1 -timeout 20m ./...

clean:
	rm -rf bin

## bench-settlement: generate 10M ledger entries in a throwaway PostgreSQL, time a settlement
## run against PostgreSQL's own GROUP BY, and awards during it (docs/BENCHMARKS.md). Not in `make test`.
bench-settlement: postgres build
	@bash scripts/bench-settlement.sh $(BIN)

.PHONY: bench soak
## bench: coalition dev's PostgreSQL (durable commits) measured with pgbench -N, then the gateway
## with coalition bench at the same client counts; one table with the ratio, written to the
## "Gateway vs pgbench" section of docs/BENCHMARKS.md. A few minutes. Not in `make test`.
bench: postgres build
	@BIN=$(BIN) bash scripts/bench.sh

## soak: the correctness workload at a large size: coalition soak with 50 SIGKILLs of the
## gateway, injected retries and ambiguous commits, invariants checked after every restart.
## A small size runs in `make test` (TestSoak).
SOAK_FLAGS ?= --workers 32 --duration 3m --kills 50 --members 500 --inject-rate 0.05
soak: postgres build
	$(BIN) soak $(SOAK_FLAGS)

## validate-manifests: render deploy/kubernetes overlays (kustomize) and check them against the
## Kubernetes schemas (kubeconform, strict); both pinned, run through `go run`.
validate-manifests:
	@bash scripts/validate-manifests.sh

## config-docs: regenerate docs/configuration.md from the commands' flags.
config-docs:
	$(GO) run ./cmd/coalition docs config --out docs/configuration.md

## config-docs-check: fail when docs/configuration.md differs from what the code generates.
config-docs-check:
	@$(GO) run ./cmd/coalition docs config | diff -u docs/configuration.md - >/dev/null || { \
		echo "config-docs-check: docs/configuration.md is stale: run 'make config-docs' and commit it" >&2; exit 1; }

## fuzz-smoke: run every fuzz target briefly (seed corpora: f.Add and testdata/fuzz). A count, not a
## duration: time-based fuzzing can end in "context deadline exceeded" on a loaded machine.
FUZZTIME ?= 100000x
fuzz-smoke:
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./settlement/
	$(GO) test -run '^$$' -fuzz '^FuzzFingerprint$$' -fuzztime $(FUZZTIME) ./settlement/
	$(GO) test -run '^$$' -fuzz '^FuzzFromVerifiedChains$$' -fuzztime $(FUZZTIME) ./gateway/tlsconfig/
