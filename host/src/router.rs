//! The message path.

pub mod hooks;
