# Task runner. `make test` is the one command that runs the whole suite.
.PHONY: test lint fmt serve

test:
	cargo test --workspace --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

serve:
	cargo run --release -- serve
