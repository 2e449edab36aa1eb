# Task runner. `make test` runs the whole suite; `make plugins` builds every shipped plugin for wasm32-wasip2; the tests build
# what they need themselves (tests/e2e/wasm_build.rs uses the same target dir and settings).

CARGO ?= cargo
WASM_TARGET_DIR ?= target/wasm
WASM_OUT = $(WASM_TARGET_DIR)/wasm32-wasip2/release
# Plugins carry no debug info: wasmtime compiles them again on load, and size matters.
WASM_ENV = CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo

SHIPPED = dlp keyword-guard echo-bot webhook auth-policy assistant
FIXTURES = fixture-trap fixture-infinite-loop fixture-memory-hog fixture-stack-overflow \
	fixture-huge-output fixture-probe fixture-legacy-v01 fixture-legacy-v02 fixture-hostile

# The public tools the Python, JavaScript and C plugin templates build with, at the versions
# `switchboard plugin new --lang python|js|c` pins (host/src/cli/scaffold.rs;
# tests/e2e/plugin_langs.rs fails if the two disagree). From PyPI, the npm registry and
# crates.io; the C template's compiler and wasi-libc are Debian's (.ci/run installs them).
LANG_TOOLS ?= target/lang-tools
COMPONENTIZE_PY = 0.25.1
COMPONENTIZE_JS = 0.23.0
WIT_BINDGEN = 0.46.0
WASM_COMPONENT_LD = 0.5.31
# Encodes the interface as versioned WIT packages (`make wit-packages`), the binary format
# `wkg wit build` produces for a package without registry dependencies.
WASM_TOOLS = 1.263.0
# Builds the Debian package (`make deb`; the package test in tests/e2e/operations builds one
# from the test build's binary and installs it with dpkg).
CARGO_DEB = 3.7.0
# The OpenID provider the identity tests sign in with (tests/oidc/provider.mjs), from npm.
OIDC_PROVIDER = 9.13.3
# The third-party clients the integration tests drive (tests/e2e/integrations.rs), from PyPI:
# Standard Webhooks' reference library verifies the webhook plugin's signatures, Slack's SDK
# posts to incoming webhooks, matrix-nio runs a Matrix bot against the server.
STANDARDWEBHOOKS = 1.1.0
SLACK_SDK = 3.48.0
MATRIX_NIO = 0.26.0
INTEGRATIONS_STAMP = .standardwebhooks-$(STANDARDWEBHOOKS)-slack-sdk-$(SLACK_SDK)-matrix-nio-$(MATRIX_NIO)
WIT_PACKAGES ?= target/wit-packages
DIST ?= target/dist
PYTHON ?= python3

.PHONY: plugins fixtures test test-plugins bench lint fmt serve lang-tools wit-packages release deb

## Build the shipped plugins: $(WASM_OUT)/{dlp,keyword_guard,echo_bot,webhook,auth_policy,assistant}.wasm
plugins:
	$(WASM_ENV) $(CARGO) build --release --target wasm32-wasip2 --target-dir $(WASM_TARGET_DIR) \
		$(addprefix -p ,$(SHIPPED))
	@ls -l $(WASM_OUT)/*.wasm

## Build the misbehaving test fixtures too (not shipped).
fixtures:
	$(WASM_ENV) $(CARGO) build --release --target wasm32-wasip2 --target-dir $(WASM_TARGET_DIR) \
		$(addprefix -p ,$(SHIPPED) $(FIXTURES))

## The whole suite (the README's test command; .ci/run calls it).
test: lang-tools
	$(CARGO) test --workspace --all-targets

## componentize-py, componentize-js, wit-bindgen and wasm-component-ld for the
## plugin-template tests (once per version).
lang-tools: $(LANG_TOOLS)/py/.componentize-py-$(COMPONENTIZE_PY) \
	$(LANG_TOOLS)/js/.componentize-js-$(COMPONENTIZE_JS) \
	$(LANG_TOOLS)/c/.wit-bindgen-$(WIT_BINDGEN)-wasm-component-ld-$(WASM_COMPONENT_LD) \
	$(LANG_TOOLS)/wasm-tools/.wasm-tools-$(WASM_TOOLS) \
	$(LANG_TOOLS)/oidc/.oidc-provider-$(OIDC_PROVIDER) \
	$(LANG_TOOLS)/deb/.cargo-deb-$(CARGO_DEB) \
	$(LANG_TOOLS)/integrations/$(INTEGRATIONS_STAMP)

$(LANG_TOOLS)/integrations/$(INTEGRATIONS_STAMP):
	rm -rf $(LANG_TOOLS)/integrations
	$(PYTHON) -m venv $(LANG_TOOLS)/integrations
	$(LANG_TOOLS)/integrations/bin/pip install --quiet --disable-pip-version-check \
		standardwebhooks==$(STANDARDWEBHOOKS) slack_sdk==$(SLACK_SDK) matrix-nio==$(MATRIX_NIO)
	touch $@

$(LANG_TOOLS)/deb/.cargo-deb-$(CARGO_DEB):
	rm -rf $(LANG_TOOLS)/deb
	$(CARGO) install --quiet --locked --root $(LANG_TOOLS)/deb cargo-deb@$(CARGO_DEB)
	touch $@

## The Debian package: target/debian/switchboard_<version>-1_<arch>.deb (the `dist` binary,
## the hardened systemd unit, /etc/switchboard/switchboard.toml; docs/operations.md).
deb: $(LANG_TOOLS)/deb/.cargo-deb-$(CARGO_DEB)
	$(CARGO) build --profile dist --locked -p switchboard
	$(LANG_TOOLS)/deb/bin/cargo-deb -p switchboard --no-build --profile dist

$(LANG_TOOLS)/oidc/.oidc-provider-$(OIDC_PROVIDER):
	rm -rf $(LANG_TOOLS)/oidc
	mkdir -p $(LANG_TOOLS)/oidc
	echo '{"private": true}' > $(LANG_TOOLS)/oidc/package.json
	cd $(LANG_TOOLS)/oidc && npm install --no-audit --no-fund --save-exact \
		oidc-provider@$(OIDC_PROVIDER)
	touch $@

$(LANG_TOOLS)/wasm-tools/.wasm-tools-$(WASM_TOOLS):
	rm -rf $(LANG_TOOLS)/wasm-tools
	@# Only the component subcommands (`component wit`): the rest take long to build.
	$(CARGO) install --quiet --locked --root $(LANG_TOOLS)/wasm-tools wasm-tools@$(WASM_TOOLS) \
		--no-default-features --features component
	touch $@

## The plugin interface as versioned WIT packages, one per version the server loads:
## $(WIT_PACKAGES)/switchboard-plugin-<version>.wasm (wit/ and wit/v*/; the version is the
## `package` line's). Publish them beside the binary; `wkg`/`wasm-tools` read them.
wit-packages: $(LANG_TOOLS)/wasm-tools/.wasm-tools-$(WASM_TOOLS)
	mkdir -p $(WIT_PACKAGES)
	@for dir in wit wit/v*; do \
		version=$$(sed -n 's/^package switchboard:plugin@\(.*\);$$/\1/p' $$dir/types.wit | head -n 1); \
		test -n "$$version" || { echo "$$dir/types.wit: no package line" >&2; exit 1; }; \
		$(LANG_TOOLS)/wasm-tools/bin/wasm-tools component wit $$dir --wasm \
			-o $(WIT_PACKAGES)/switchboard-plugin-$$version.wasm || exit 1; \
		echo "$(WIT_PACKAGES)/switchboard-plugin-$$version.wasm"; \
	done

## What a release publishes, in $(DIST): the server binary, the shipped plugins and the WIT
## packages.
release: plugins wit-packages
	$(CARGO) build --release -p switchboard
	mkdir -p $(DIST)/plugins
	cp target/release/switchboard $(DIST)/
	cp $(WASM_OUT)/*.wasm $(DIST)/plugins/
	cp $(WIT_PACKAGES)/*.wasm $(DIST)/
	@ls -l $(DIST) $(DIST)/plugins

$(LANG_TOOLS)/c/.wit-bindgen-$(WIT_BINDGEN)-wasm-component-ld-$(WASM_COMPONENT_LD):
	rm -rf $(LANG_TOOLS)/c
	@# Only the C generator of wit-bindgen: the others are not needed and take long to build.
	$(CARGO) install --quiet --locked --root $(LANG_TOOLS)/c wit-bindgen-cli@$(WIT_BINDGEN) \
		--no-default-features --features c
	$(CARGO) install --quiet --locked --root $(LANG_TOOLS)/c \
		wasm-component-ld@$(WASM_COMPONENT_LD)
	touch $@

$(LANG_TOOLS)/py/.componentize-py-$(COMPONENTIZE_PY):
	rm -rf $(LANG_TOOLS)/py
	$(PYTHON) -m venv $(LANG_TOOLS)/py
	$(LANG_TOOLS)/py/bin/pip install --quiet --disable-pip-version-check \
		componentize-py==$(COMPONENTIZE_PY)
	touch $@

$(LANG_TOOLS)/js/.componentize-js-$(COMPONENTIZE_JS):
	rm -rf $(LANG_TOOLS)/js
	mkdir -p $(LANG_TOOLS)/js
	@# A package.json of its own, so npm installs here and not into a parent project.
	echo '{"private": true}' > $(LANG_TOOLS)/js/package.json
	cd $(LANG_TOOLS)/js && npm install --no-audit --no-fund --save-exact \
		@bytecodealliance/componentize-js@$(COMPONENTIZE_JS)
	touch $@

## The plugin runtime's end-to-end tests (builds the plugins it needs).
test-plugins:
	$(CARGO) test --test e2e plugins_
	$(CARGO) test -p dlp-core -p dlp -p keyword-guard -p echo-bot -p webhook -p auth-policy -p assistant

bench:
	$(CARGO) bench -p switchboard --bench plugins --bench message_path

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets

fmt:
	$(CARGO) fmt --all

serve:
	$(CARGO) run --release -- serve
