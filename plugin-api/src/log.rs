//! Logging into the server's log (capability `log`). Lines are tagged with the plugin's
//! name and truncated to 4 KiB by the host.

pub use crate::__wit::switchboard::plugin::log::Level;
use crate::HostError;

/// Write one line at `level`.
pub fn write(level: Level, message: &str) -> Result<(), HostError> {
    #[cfg(target_arch = "wasm32")]
    return crate::__wit::switchboard::plugin::log::write(level, message);
    // Natively, the fake host of `testing` answers (so hooks run in `cargo test`).
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::fake::log::write(level, message);
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

/// Write a formatted line at a level, ignoring a refusal (a plugin without the `log`
/// capability, or over its log budget, loses the line; the host counts what it drops).
/// Used by [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
/// [`warn!`](crate::warn) and [`error!`](crate::error).
#[doc(hidden)]
pub fn write_fmt(level: Level, args: std::fmt::Arguments<'_>) {
    let _ = match args.as_str() {
        Some(text) => write(level, text),
        None => write(level, &args.to_string()),
    };
}

/// `trace!("format {}", args)`: one formatted line at `trace` level (errors ignored).
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Trace, ::std::format_args!($($arg)+))
    };
}

/// `debug!("format {}", args)`: one formatted line at `debug` level (errors ignored).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Debug, ::std::format_args!($($arg)+))
    };
}

/// `info!("format {}", args)`: one formatted line at `info` level (errors ignored). Never
/// log message content: the server's log is read by operators, not compliance reviewers.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Info, ::std::format_args!($($arg)+))
    };
}

/// `warn!("format {}", args)`: one formatted line at `warn` level (errors ignored).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Warn, ::std::format_args!($($arg)+))
    };
}

/// `error!("format {}", args)`: one formatted line at `error` level (errors ignored).
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Error, ::std::format_args!($($arg)+))
    };
}
