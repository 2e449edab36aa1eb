# Task runner. `make test` runs the whole suite; `make plugins` builds every shipped plugin for wasm32-wasip2; the tests build
# what they need themselves (tests/e2e/wasm_build.rs uses the same target dir and settings).

CARGO ?= cargo
WASM_TARGET_DIR ?= target/wasm
WASM_OUT = $(WASM_TARGET_DIR)/wasm32-wasip2/release
# Plugins carry no debug info: wasmtime compiles them again on load, and size matters.
WASM_ENV = CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo

SHIPPED = dlp keyword-guard echo-bot webhook auth-policy
FIXTURES = fixture-trap fixture-infinite-loop fixture-memory-hog fixture-stack-overflow \
	fixture-huge-output fixture-probe fixture-legacy-v01 fixture-legacy-v02 fixture-hostile

.PHONY: plugins fixtures test test-plugins bench lint fmt serve

## Build the shipped plugins: $(WASM_OUT)/{dlp,keyword_guard,echo_bot,webhook,auth_policy}.wasm
plugins:
	$(WASM_ENV) $(CARGO) build --release --target wasm32-wasip2 --target-dir $(WASM_TARGET_DIR) \
		$(addprefix -p ,$(SHIPPED))
	@ls -l $(WASM_OUT)/*.wasm

## Build the misbehaving test fixtures too (not shipped).
fixtures:
	$(WASM_ENV) $(CARGO) build --release --target wasm32-wasip2 --target-dir $(WASM_TARGET_DIR) \
		$(addprefix -p ,$(SHIPPED) $(FIXTURES))

## The whole suite (the README's test command; .ci/run calls it).
test:
	$(CARGO) test --workspace --all-targets

## The plugin runtime's end-to-end tests (builds the plugins it needs).
test-plugins:
	$(CARGO) test --test e2e plugins_
	$(CARGO) test -p dlp-core -p dlp -p keyword-guard -p echo-bot -p webhook -p auth-policy

bench:
	$(CARGO) bench -p switchboard --bench plugins --bench message_path

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets

fmt:
	$(CARGO) fmt --all

serve:
	$(CARGO) run --release -- serve
