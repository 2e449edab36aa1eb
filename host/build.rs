//! Build script. Editing a migration must rebuild the crate: `sqlx::migrate!` embeds
//! `migrations/` at compile time, and cargo does not otherwise watch that directory.
//!
//! It also tells utoipa's derive macros (the OpenAPI description, `api/openapi.rs`) what the
//! store's type aliases stand for: a macro sees only the name `RoomId`, not that it is `i64`.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=build.rs");
    utoipa_config::Config::new()
        .alias_for("UserId", "i64")
        .alias_for("RoomId", "i64")
        .alias_for("EventId", "i64")
        .alias_for("Millis", "i64")
        .alias_for("Metadata", "std::collections::BTreeMap<String, String>")
        .write_to_file();
}
