//! Virus scanning with ClamAV's `clamd`, while an upload streams in.
//!
//! Each upload opens one `INSTREAM` session: every chunk the client sends is forwarded to
//! clamd (a 4-byte big-endian length, then the bytes) as it is written to storage, and after
//! the last one a zero length asks for the verdict. So scanning adds no second pass over
//! the file and no copy of it in memory. The protocol is clamd's own, a dozen lines; the
//! crates that speak it take a whole reader or file and would need the body twice.
//!
//! Scanning fails closed: no connection, a broken session, clamd's own error (its stream
//! limit, for one) or no verdict in time each refuse the upload, with the reason.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::config::ClamavConfig;

/// What clamd said about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature it matched, e.g. `Eicar-Test-Signature`.
    Infected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("the virus scanner cannot be reached: {0}")]
    Unavailable(String),
    #[error("the virus scanner could not check this file: {0}")]
    Failed(String),
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// One upload's `INSTREAM` session.
pub struct Session {
    conn: Box<dyn Conn>,
    verdict_timeout: Duration,
    /// clamd closed its side early (it stops reading at its stream limit); its reason is
    /// read with the verdict.
    broken: bool,
}

/// Connect to the configured clamd.
async fn connect(config: &ClamavConfig) -> Result<Box<dyn Conn>, ScanError> {
    let unavailable = |e: std::io::Error| ScanError::Unavailable(e.to_string());
    let connecting = async {
        match config.address.strip_prefix("unix:") {
            #[cfg(unix)]
            Some(path) => Ok(Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unavailable)?,
            ) as Box<dyn Conn>),
            #[cfg(not(unix))]
            Some(_) => Err(ScanError::Unavailable(
                "unix sockets are not supported here".into(),
            )),
            None => Ok(Box::new(
                tokio::net::TcpStream::connect(&config.address)
                    .await
                    .map_err(unavailable)?,
            ) as Box<dyn Conn>),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| ScanError::Unavailable("connecting timed out".into()))?
}

/// Whether clamd answers (`PING` → `PONG`).
pub async fn ping(config: &ClamavConfig) -> Result<(), ScanError> {
    let mut conn = connect(config).await?;
    let io = |e: std::io::Error| ScanError::Unavailable(e.to_string());
    conn.write_all(b"zPING\0").await.map_err(io)?;
    let reply = read_reply(&mut conn, Duration::from_secs(5)).await?;
    if reply == "PONG" {
        Ok(())
    } else {
        Err(ScanError::Unavailable(format!(
            "unexpected answer {reply:?}"
        )))
    }
}

impl Session {
    pub async fn start(config: &ClamavConfig) -> Result<Self, ScanError> {
        let mut conn = connect(config).await?;
        conn.write_all(b"zINSTREAM\0")
            .await
            .map_err(|e| ScanError::Unavailable(e.to_string()))?;
        Ok(Self {
            conn,
            verdict_timeout: Duration::from_millis(config.verdict_timeout_ms.max(1)),
            broken: false,
        })
    }

    /// Forward one chunk of the upload.
    pub async fn feed(&mut self, bytes: &[u8]) {
        if self.broken || bytes.is_empty() {
            return;
        }
        // Chunks arrive as the client's frames (at most a few hundred KiB); a u32 length
        // holds any of them, but cut anyway so the rule does not depend on the framing.
        for piece in bytes.chunks(1 << 20) {
            let length = (piece.len() as u32).to_be_bytes();
            if self.conn.write_all(&length).await.is_err()
                || self.conn.write_all(piece).await.is_err()
            {
                self.broken = true;
                return;
            }
        }
    }

    /// End the stream and read clamd's verdict.
    pub async fn verdict(mut self) -> Result<Verdict, ScanError> {
        if !self.broken {
            let _ = self.conn.write_all(&[0, 0, 0, 0]).await;
            let _ = self.conn.flush().await;
        }
        let reply = read_reply(&mut self.conn, self.verdict_timeout).await?;
        parse_reply(&reply)
    }
}

/// Read one NUL-terminated reply (at most 4 KiB).
async fn read_reply(conn: &mut Box<dyn Conn>, timeout: Duration) -> Result<String, ScanError> {
    let reading = async {
        let mut reply = Vec::new();
        let mut byte = [0u8; 256];
        loop {
            let n = conn
                .read(&mut byte)
                .await
                .map_err(|e| ScanError::Failed(e.to_string()))?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&byte[..n]);
            if reply.contains(&0) || reply.len() > 4096 {
                break;
            }
        }
        let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
        Ok(String::from_utf8_lossy(&reply[..end]).trim().to_string())
    };
    tokio::time::timeout(timeout, reading)
        .await
        .map_err(|_| ScanError::Failed("no verdict in time".into()))?
}

/// `stream: OK`, `stream: <signature> FOUND`, or `<reason> ERROR`.
fn parse_reply(reply: &str) -> Result<Verdict, ScanError> {
    if reply.is_empty() {
        return Err(ScanError::Failed(
            "the scanner closed without a verdict".into(),
        ));
    }
    if let Some(error) = reply.strip_suffix(" ERROR") {
        return Err(ScanError::Failed(
            error.trim().trim_end_matches('.').to_string(),
        ));
    }
    let result = reply.strip_prefix("stream:").unwrap_or(reply).trim();
    if result == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(signature) = result.strip_suffix(" FOUND") {
        // clamd marks signatures from local databases `.UNOFFICIAL`; the name is the point.
        let signature = signature.trim().trim_end_matches(".UNOFFICIAL");
        return Ok(Verdict::Infected(signature.to_string()));
    }
    Err(ScanError::Failed(format!("unexpected answer {reply:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_clamd_writes_them() {
        assert_eq!(parse_reply("stream: OK").ok(), Some(Verdict::Clean));
        assert_eq!(
            parse_reply("stream: Eicar-Test-Signature.UNOFFICIAL FOUND").ok(),
            Some(Verdict::Infected("Eicar-Test-Signature".into()))
        );
        assert!(matches!(
            parse_reply("INSTREAM size limit exceeded. ERROR"),
            Err(ScanError::Failed(reason)) if reason == "INSTREAM size limit exceeded"
        ));
        assert!(parse_reply("").is_err());
        assert!(parse_reply("stream: something odd").is_err());
    }
}
