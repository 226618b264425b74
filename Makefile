# `make test` is the project's one test command; .ci/run calls it.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.PHONY: test deps lint unit fuzz conformance serve bench

test: deps lint unit fuzz conformance
	@scripts/test-summary target/test.log

deps:
	scripts/install-test-deps

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	@mkdir -p target
	cargo test --workspace 2>&1 | tee target/test.log

fuzz:
	FUZZ_SECONDS=$${FUZZ_SECONDS:-20} scripts/fuzz

conformance:
	scripts/conformance

serve:
	cargo run --release --bin strata -- serve

bench:
	cargo build --release -p strata -p strata-bench
	target/release/strata-bench registry
	target/release/strata-bench rebuild
	target/release/strata-bench plan --scale large --seeds 3
