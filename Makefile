# `make test` is the project's one test command; .ci/run calls it.
.PHONY: test deps lint unit conformance serve

test: deps lint unit conformance

deps:
	scripts/install-test-deps

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

conformance:
	scripts/conformance

serve:
	cargo run --release --bin strata -- serve
