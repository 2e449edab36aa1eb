//! What every message must satisfy before it is stored, whoever wrote it: the rules are the
//! same for a user's input and for what a plugin returns, so a plugin cannot store what a
//! user could not send. The router turns a broken rule into a `400` for users; the plugin
//! layer turns it into an `invalid_output` failure charged to the plugin that produced it.

use crate::store::Metadata;

/// Most metadata entries a user may send on one message, and the most a plugin may add or
/// change on one message.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// Longest metadata key, and longest value, in bytes.
pub const MAX_METADATA_KEY: usize = 64;
pub const MAX_METADATA_VALUE: usize = 1024;
/// The server's metadata key listing a message's attached files (ids, comma-separated).
pub const FILES_METADATA_KEY: &str = "files";
/// The most files one message carries.
pub const MAX_FILES_PER_MESSAGE: usize = 10;

/// A broken rule: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub code: &'static str,
    pub message: String,
}

/// Whether `c` shows nothing: white space, or a format character that renders as nothing
/// (zero-width spaces and joiners, word joiner, bidi controls, soft hyphen, the byte-order
/// mark, variation selectors, tag characters, Hangul fillers, the blank Braille pattern).
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// The body rules: something visible (not empty, not only white space or invisible format
/// characters), at most `max_bytes`, no NUL (PostgreSQL text cannot hold it, so it is
/// refused on every backend alike).
pub fn check_body(body: &str, max_bytes: usize) -> Result<(), Broken> {
    if body.chars().all(is_invisible) {
        return Err(Broken {
            code: "empty_body",
            message: "a message needs a body".into(),
        });
    }
    if body.len() > max_bytes {
        return Err(Broken {
            code: "message_too_large",
            message: format!("a message body may have at most {max_bytes} bytes"),
        });
    }
    if body.contains('\0') {
        return Err(Broken {
            code: "invalid_body",
            message: "a message body may not contain NUL".into(),
        });
    }
    Ok(())
}

/// One metadata entry: a key of 1 to [`MAX_METADATA_KEY`] bytes, a value of at most
/// [`MAX_METADATA_VALUE`] bytes, neither with NUL.
pub fn check_metadata_entry(key: &str, value: &str) -> Result<(), Broken> {
    if key.is_empty()
        || key.len() > MAX_METADATA_KEY
        || value.len() > MAX_METADATA_VALUE
        || key.contains('\0')
        || value.contains('\0')
    {
        return Err(Broken {
            code: "invalid_metadata",
            message: format!(
                "metadata keys have 1 to {MAX_METADATA_KEY} bytes and values up to \
                 {MAX_METADATA_VALUE} bytes, without NUL"
            ),
        });
    }
    Ok(())
}

/// Whether only plugins and the server may write `key`: every key with a `.` (the
/// plugins' namespaces, `dlp.redacted`, `keyword-guard.rewrites`, and the server's
/// `bot.plugin`), and `modified`, `redacted` and `dlp…`, which clients read as "a plugin
/// changed this message" (a user who could set them could make a message look vetted), and
/// `files`, which only the server writes when it attaches files.
pub fn is_reserved_metadata_key(key: &str) -> bool {
    key.contains('.')
        || key == "modified"
        || key == "redacted"
        || key == FILES_METADATA_KEY
        || key.starts_with("dlp")
}

/// A user's metadata: at most [`MAX_METADATA_ENTRIES`] entries, each valid.
pub fn check_metadata(metadata: &Metadata) -> Result<(), Broken> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(Broken {
            code: "invalid_metadata",
            message: format!("metadata may have at most {MAX_METADATA_ENTRIES} entries"),
        });
    }
    metadata
        .iter()
        .try_for_each(|(k, v)| check_metadata_entry(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert!(check_body("hi", 10).is_ok());
        assert_eq!(check_body("", 10).map_err(|b| b.code), Err("empty_body"));
        assert_eq!(
            check_body(" \t\n", 10).map_err(|b| b.code),
            Err("empty_body")
        );
        assert_eq!(
            check_body(" \u{200b}\u{feff}\u{2060}\u{202e} ", 64).map_err(|b| b.code),
            Err("empty_body")
        );
        assert!(check_body("\u{200b}a", 64).is_ok());
        assert!(check_body("👍", 64).is_ok());
        assert_eq!(
            check_body("x".repeat(11).as_str(), 10).map_err(|b| b.code),
            Err("message_too_large")
        );
        assert_eq!(
            check_body("a\0b", 10).map_err(|b| b.code),
            Err("invalid_body")
        );
    }

    #[test]
    fn metadata() {
        assert!(check_metadata_entry("k", "v").is_ok());
        assert!(check_metadata_entry("", "v").is_err());
        assert!(check_metadata_entry(&"k".repeat(65), "v").is_err());
        assert!(check_metadata_entry("k", &"v".repeat(1025)).is_err());
        assert!(check_metadata_entry("k\0", "v").is_err());
        assert!(check_metadata_entry("k", "v\0").is_err());
        let many: Metadata = (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(check_metadata(&many).is_err());
        for reserved in [
            "dlp.redacted",
            "bot.plugin",
            "modified",
            "redacted",
            "dlp",
            "a.b",
        ] {
            assert!(is_reserved_metadata_key(reserved), "{reserved}");
        }
        for free in ["lang", "reply_to", "x-client"] {
            assert!(!is_reserved_metadata_key(free), "{free}");
        }
    }
}
