//! Switchboard: a self-hosted instant-messaging server whose message router calls sandboxed
//! WebAssembly plugins at defined hook points.
//!
//! Dependencies point one way: `api` → `router` → {`plugins`, `store`, `hub`}. The `router`
//! knows no HTTP types and no wasmtime types; `store` knows only SQL.

pub mod config;
pub mod error;
pub mod plugins;
pub mod router;
pub mod store;
