//! The bytes of the file a [`Plugin::file_pre_upload`](crate::Plugin::file_pre_upload) call
//! is about (since interface 0.3). Read them in ranges with [`read`], or as a
//! [`std::io::Read`] + [`std::io::Seek`] stream with [`Upload`]: a plugin never needs the
//! whole file in its memory, and archive formats (DOCX, ZIP) can seek to their ends.
//! Outside that hook every read fails with [`HostError::InvalidArgument`].

#[cfg(target_arch = "wasm32")]
use crate::__wit::switchboard::plugin::upload as wit;
// Natively, the fake host of `testing` answers (so hooks run in `cargo test`).
use crate::HostError;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::upload as wit;

/// The most bytes one [`read`] returns.
pub const MAX_READ: u32 = 1024 * 1024;

/// Up to `len` bytes from `offset` (fewer at the end of the file, none past it).
pub fn read(offset: u64, len: u32) -> Result<Vec<u8>, HostError> {
    wit::read(offset, len)
}

/// The upload as a seekable stream of `size` bytes (the file's
/// [`FileInfo::size`](crate::FileInfo)). Reads are passed to the host in chunks of at
/// most `chunk` bytes.
#[derive(Debug)]
pub struct Upload {
    size: u64,
    position: u64,
    chunk: u32,
}

impl Upload {
    /// A stream over the upload, read 64 KiB at a time.
    pub fn new(size: u64) -> Self {
        Self::with_chunk(size, 64 * 1024)
    }

    /// A stream reading `chunk` bytes (1 to [`MAX_READ`]) per host call.
    pub fn with_chunk(size: u64, chunk: u32) -> Self {
        Self {
            size,
            position: 0,
            chunk: chunk.clamp(1, MAX_READ),
        }
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl std::io::Read for Upload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.position >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = u32::try_from(buf.len()).unwrap_or(u32::MAX).min(self.chunk);
        let bytes = read(self.position, want)
            .map_err(|e| std::io::Error::other(format!("upload.read: {e:?}")))?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for Upload {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => self.size.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        match target {
            Some(n) => {
                self.position = n;
                Ok(n)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the upload",
            )),
        }
    }
}
