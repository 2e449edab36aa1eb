//! Conveniences on the hook result types and message metadata.

use crate::{
    Decision, FileReplacement, FileUploadOutcome, Metadata, Modification, PreSendOutcome, Rejection,
};

impl PreSendOutcome {
    /// Replace the message's body and metadata.
    pub fn modify(body: impl Into<String>, metadata: Metadata) -> Self {
        Self::Modify(Modification {
            body: body.into(),
            metadata,
        })
    }

    /// Refuse the message. `code` is a short token (`[a-z0-9_.-]`, at most 64 bytes) that
    /// clients can match on; `reason` is shown to the sender.
    pub fn reject(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Reject(Rejection {
            code: code.into(),
            reason: reason.into(),
        })
    }
}

impl FileUploadOutcome {
    /// Refuse the file; `reason` is shown to the uploader and nothing is kept.
    pub fn reject(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Reject(Rejection {
            code: code.into(),
            reason: reason.into(),
        })
    }

    /// Keep `content` instead of the upload (and rename it, if `name` is given).
    pub fn replace(content: Vec<u8>, name: Option<String>) -> Self {
        Self::Replace(FileReplacement { content, name })
    }
}

impl Decision {
    /// Refuse with a reason shown to the user.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny(reason.into())
    }
}

/// The value of `key` in message metadata, if present.
pub fn meta_get<'a>(metadata: &'a Metadata, key: &str) -> Option<&'a str> {
    metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Set `key` to `value` in message metadata, replacing an existing entry.
pub fn meta_set(metadata: &mut Metadata, key: impl Into<String>, value: impl Into<String>) {
    let key = key.into();
    let value = value.into();
    match metadata.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => metadata.push((key, value)),
    }
}

/// Message metadata as a small map: `msg.metadata.get_value("dlp.flagged")`,
/// `metadata.set_value("lang", "en")`. Keys stay unique and keep their first position.
pub trait MetadataExt {
    /// The value of `key`, if present.
    fn get_value(&self, key: &str) -> Option<&str>;
    /// Set `key` to `value`, replacing an existing entry in place.
    fn set_value(&mut self, key: impl Into<String>, value: impl Into<String>);
    /// Remove `key`; its value, if it was there.
    fn remove_value(&mut self, key: &str) -> Option<String>;
}

impl MetadataExt for Metadata {
    fn get_value(&self, key: &str) -> Option<&str> {
        meta_get(self, key)
    }

    fn set_value(&mut self, key: impl Into<String>, value: impl Into<String>) {
        meta_set(self, key, value);
    }

    fn remove_value(&mut self, key: &str) -> Option<String> {
        let index = self.iter().position(|(k, _)| k == key)?;
        Some(self.remove(index).1)
    }
}
