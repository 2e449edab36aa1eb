//! End-to-end tests: the real server on `127.0.0.1:0` with a temporary database, driven by
//! real HTTP and WebSocket clients. One test binary, a module per feature.
//!
//! Set `TEST_LOG=1` to see the server's tracing output (`TEST_LOG_FILTER` replaces its
//! filter, e.g. `warn,sqlx=debug` for every statement).

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod api_contract;
mod model_server;
mod support;

mod assistant;
mod audit_chain;
mod auth;
mod bad_input;
mod browser;
mod chat;
mod cluster;
mod compat;
mod crash;
mod export;
mod file_plugins;
mod files;
mod hardening;
mod holds;
mod identity;
mod integrations;
mod mentions;
mod operations;
mod plugin_langs;
mod plugin_signing;
mod plugin_tools;
mod plugins_admin;
mod plugins_auth;
mod plugins_bots;
mod plugins_containment;
mod plugins_http;
mod plugins_runtime;
mod plugins_server;
mod presence;
mod reactions;
mod resume;
mod search;
mod store_contract;
mod threads;
mod wasm_build;
