mod plugins_runtime;
mod wasm_build;
