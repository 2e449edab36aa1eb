//! The name rules, each written once: user names (people and bots share one namespace),
//! identifiers (plugin names, slash commands, login methods) and machine codes (a plugin's
//! rejection code). Names appear in mentions, logs, audit records and URLs, so they stay
//! plain lower-case ASCII that no client renders two ways.

/// Longest user name.
pub const MAX_USER_NAME: usize = 32;
/// Longest plugin name.
pub const MAX_PLUGIN_NAME: usize = 64;
/// Longest slash command (without the slash).
pub const MAX_COMMAND: usize = 32;
/// Longest login method.
pub const MAX_LOGIN_METHOD: usize = 32;

/// 1 to [`MAX_USER_NAME`] of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn is_user_name(name: &str) -> bool {
    (1..=MAX_USER_NAME).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// 1 to `max` bytes of `a-z 0-9 _ -`.
pub fn is_identifier(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// 1 to `max` bytes of `a-z 0-9 _ . -`: a stable machine code.
pub fn is_code(code: &str, max: usize) -> bool {
    (1..=max).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// Characters that let one text render as another: bidi overrides and isolates, zero-width
/// and other invisible characters, Hangul fillers, tags. Refused in display names, dropped
/// from file names.
pub fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        assert!(is_user_name("alice.b-2_x"));
        assert!(is_user_name("7up"));
        for bad in [
            "",
            ".alice",
            "-a",
            "Alice",
            "al ice",
            "ålice",
            &"a".repeat(33),
        ] {
            assert!(!is_user_name(bad), "{bad:?}");
        }
        assert!(is_identifier("api-key_2", 32));
        for bad in ["", "a.b", "A", &"a".repeat(33)] {
            assert!(!is_identifier(bad, 32), "{bad:?}");
        }
        assert!(is_code("dlp.card-number_1", 64));
        assert!(!is_code("Card", 64));
    }
}
