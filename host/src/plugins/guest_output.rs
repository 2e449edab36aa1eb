//! What a guest writes to its stdout and stderr: kept (bounded) instead of discarded, so that
//! a panic message or a Python traceback reaches the operator. Both streams go into one
//! buffer per instance; after each call the runtime takes it, logs it under the plugin's
//! name and hook (within the plugin's log budget), and keeps its tail with a failed call's
//! record. A guest writing more than [`MAX_PER_CALL`] bytes in one call loses the rest —
//! counted, never an error: output must not be a way to make a plugin fail, nor to fill
//! the server's memory.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The most output kept from one call.
pub(crate) const MAX_PER_CALL: usize = 16 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: u64,
}

/// One instance's stdout and stderr.
#[derive(Clone, Default)]
pub(crate) struct GuestOutput(Arc<Mutex<Buffer>>);

/// What a call wrote.
pub(crate) struct Written {
    pub(crate) text: String,
    /// Bytes beyond [`MAX_PER_CALL`], not kept.
    pub(crate) dropped: u64,
}

impl GuestOutput {
    fn append(&self, bytes: &[u8]) {
        let mut buffer = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = MAX_PER_CALL.saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += (bytes.len() - kept) as u64;
    }

    /// What was written since the last take, if anything.
    pub(crate) fn take(&self) -> Option<Written> {
        let mut buffer = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buffer.bytes.is_empty() && buffer.dropped == 0 {
            return None;
        }
        let taken = std::mem::take(&mut *buffer);
        Some(Written {
            text: String::from_utf8_lossy(&taken.bytes).into_owned(),
            dropped: taken.dropped,
        })
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: what does not fit is dropped, not refused.
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_bounded_per_call_and_taken_once() {
        let out = GuestOutput::default();
        assert!(out.take().is_none());
        out.append(b"line one\n");
        out.append(&vec![b'x'; MAX_PER_CALL]);
        let written = out.take().expect("written");
        assert_eq!(written.text.len(), MAX_PER_CALL);
        assert!(written.text.starts_with("line one\n"));
        assert_eq!(written.dropped, 9);
        assert!(out.take().is_none(), "taken");
    }
}
