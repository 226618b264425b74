# `make test` is the project's one test command; .ci/run calls it.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.PHONY: test quickstart deps lint unit fuzz conformance serve bench

# quickstart runs first, so that on a fresh machine it proves README's run command installs
# what the build needs by itself.
test: quickstart deps lint unit fuzz conformance
	@scripts/test-summary target/test.log

quickstart:
	scripts/check-quickstart

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
	scripts/serve

bench:
	cargo build --release -p strata -p strata-bench
	target/release/strata-bench registry
	target/release/strata-bench rebuild
	target/release/strata-bench plan --scale large --seeds 3
