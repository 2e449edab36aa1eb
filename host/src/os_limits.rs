//! The operating system's limit on open files, which caps how many sockets the server can
//! hold. Service managers often start a process with a low soft limit (systemd: 1,024) under
//! a high hard one; a server that keeps that soft limit refuses connections long before
//! `http.max_connections`. So `serve` raises the soft limit to the hard one at start, and
//! says in the log when even the hard limit is below what the configuration asks for.

/// File descriptors the server needs besides client connections: the database and its
/// pools, plugin components, files being streamed, the cluster bus, the log.
pub const RESERVED_FILES: u64 = 256;

/// The open-file limit after raising the soft limit to the hard one where they differ, or
/// `None` where the platform does not tell.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::debug!(from = ?limit.current, to = ?limit.maximum, "raised the open-file limit");
                    return limit.maximum.or(Some(u64::MAX));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not raise the open-file limit to its maximum");
                }
            }
        }
        limit.current.or(Some(u64::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// A warning for the log when `max_connections` connections plus [`RESERVED_FILES`] do not
/// fit in the open-file limit `limit`.
pub fn connection_cap_warning(limit: Option<u64>, max_connections: usize) -> Option<String> {
    let limit = limit?;
    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVED_FILES);
    (wanted > limit).then(|| {
        format!(
            "the open-file limit ({limit}) is below http.max_connections ({max_connections}) \
             plus {RESERVED_FILES} for the server's own files: connections beyond about {} will \
             fail to open; raise the limit (systemd: LimitNOFILE=) or lower http.max_connections",
            limit.saturating_sub(RESERVED_FILES)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_when_the_connections_do_not_fit() {
        assert_eq!(connection_cap_warning(None, 10_000), None);
        assert_eq!(connection_cap_warning(Some(20_000), 10_000), None);
        assert_eq!(connection_cap_warning(Some(10_256), 10_000), None);
        let warning = connection_cap_warning(Some(1_024), 10_000).expect("a warning");
        assert!(
            warning.contains("(1024)") && warning.contains("about 768"),
            "{warning}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn raising_never_lowers_the_limit() {
        let before = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let after = raise_open_file_limit();
        assert!(after >= before.current.or(Some(u64::MAX)));
    }
}
