//! The command line's own tools, on the binary side: the library is the server. These are
//! clients of it — the admin API over HTTP (`admin_client`), a new plugin crate from
//! templates (`scaffold`), and `plugin test`, which loads one component into a plugin host
//! of its own and calls one hook (`standalone`), and the plugin interface as WIT files
//! (`wit`).

pub mod admin_client;
pub mod scaffold;
pub mod standalone;
pub mod wit;
