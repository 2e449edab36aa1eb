//! Logging into the server's log (capability `log`). Lines are tagged with the plugin's
//! name and truncated to 4 KiB by the host.

pub use crate::__wit::switchboard::plugin::log::Level;
use crate::HostError;

/// Write one line at `level`.
pub fn write(level: Level, message: &str) -> Result<(), HostError> {
    crate::__wit::switchboard::plugin::log::write(level, message)
}

/// Write one line at `debug` level.
pub fn debug(message: &str) -> Result<(), HostError> {
    write(Level::Debug, message)
}

/// Write one line at `info` level.
pub fn info(message: &str) -> Result<(), HostError> {
    write(Level::Info, message)
}

/// Write one line at `warn` level.
pub fn warn(message: &str) -> Result<(), HostError> {
    write(Level::Warn, message)
}

/// Write one line at `error` level.
pub fn error(message: &str) -> Result<(), HostError> {
    write(Level::Error, message)
}
