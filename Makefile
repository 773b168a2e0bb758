# capi-edge — the two commands: `make dev` and `make test`.
SHELL := /bin/bash
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: dev test build setup lint unit integration size bench fuzz clean profile split

## setup: install pinned tools into .tools/ and node_modules/ (idempotent)
setup:
	@bash scripts/setup.sh

## build: the pixel shim, the Worker (release) and the CLI (profile `native`: target/native/capi-edge);
## after cargo, each step runs only when its inputs changed (stamps in build/.stamps), so a build
## with nothing to do takes about a second
build: setup
	@bash scripts/build-shim.sh
	@bash scripts/build-worker.sh
	@cargo build -q --profile native -p capi-edge

## split: build, then write build/split/{worker,beacons}.jsonc from wrangler.toml: the whole Worker
## without routes and the beacon Worker in front of it (docs/configuration.md, "Two Workers")
split: build
	@node scripts/split-config.mjs

## dev: build, then run the sandbox + the Worker in workerd with the demo storefront; a saved edit
## is rebuilt and reloaded (scripts/dev.sh)
dev: build
	@bash scripts/dev.sh

## test: fmt, clippy, unit tests, build, size budget, integration + browser tests
test: setup lint unit build size integration

# The wasm crates are linted apart: the shim is no_std with its own panic handler, and built with
# the Worker it would get std (wasm-bindgen's `std` feature, which the Worker enables) and two.
lint:
	cargo fmt --all -- --check
	cargo clippy -q --workspace --all-targets -- -D warnings
	cargo clippy -q -p capi-worker --target wasm32-unknown-unknown -- -D warnings
	cargo clippy -q -p capi-worker --target wasm32-unknown-unknown --no-default-features -- -D warnings
	cargo clippy -q -p capi-pixel --target wasm32-unknown-unknown -- -D warnings

unit:
	cargo test -q --workspace

size:
	@node tests/size-budget.mjs

# Two test files at a time (each starts its own workerd, sandbox and browser on free ports; on
# the 2-core machine the suite takes about half as long), then zz-logs.test.mjs alone: it reads
# the log lines every other file's Workers appended.
integration:
	@node --test tests/docs.test.mjs
	@rm -f tests/.artifacts/worker-logs.txt
	@node --test --test-concurrency=2 --test-timeout=600000 $(filter-out %/zz-logs.test.mjs,$(wildcard tests/integration/*.test.mjs))
	@node --test --test-timeout=60000 tests/integration/zz-logs.test.mjs

clean:
	rm -rf build target

## fuzz: cargo-fuzz (nightly) on the beacon and field parsers, FUZZ_SECONDS each (default 60)
fuzz:
	@bash scripts/fuzz.sh

## bench: the Worker vs a DIY Node + Meta SDK relay (one POST per beacon, and batched) and the
## runtime's floor (a JS Worker answering 204) under wrk, and `capi-edge hash` vs the SDK
## (BENCH_RUNS=3 for medians of 3; bench-only npm deps in bench/, installed here)
bench: build
	@bash scripts/bench.sh

## profile: V8 CPU and heap profiles of the Worker under beacon load: top functions, categories,
## CPU ms/beacon, the timeline's blocks, JS heap per beacon and what no scavenge frees
profile: setup
	@bash scripts/profile.sh
