//! The command line's own tools, on the binary side: the library is the server. These are
//! clients of it — the admin API over HTTP (`admin_client`) and a new plugin crate from
//! templates (`scaffold`).

pub mod admin_client;
pub mod scaffold;
