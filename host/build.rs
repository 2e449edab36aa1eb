//! Build script: only here so that editing a migration rebuilds the crate. `sqlx::migrate!`
//! embeds `migrations/` at compile time, and cargo does not otherwise watch that directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
