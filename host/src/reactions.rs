//! What a reaction may be: one emoji, or a `:shortcode:` naming one.
//!
//! A reaction is shown as a small chip under a message and counted per distinct value, so
//! the server keeps the values few and recognisable: exactly one emoji (one grapheme
//! cluster, which covers skin tones, ZWJ sequences such as 👩‍💻, flags and keycaps), or a
//! shortcode of lowercase letters, digits, `_`, `+` and `-` between colons (`:+1:`,
//! `:party_parrot:`) for clients that render custom emoji. Free text, several emoji, markup
//! and invisible characters are refused with a clear error: they would let a reaction carry
//! a message that no plugin filter saw.

use unicode_segmentation::UnicodeSegmentation as _;

/// The longest emoji accepted, in bytes (the longest standard ZWJ sequences take ~35).
pub const EMOJI_MAX_BYTES: usize = 64;
/// The longest shortcode name accepted, in characters (without its colons).
pub const SHORTCODE_MAX_CHARS: usize = 32;

/// Why a value is not a reaction (the message is for the person who sent it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReaction {
    #[error("a reaction is one emoji or a `:shortcode:`; this is empty")]
    Empty,
    #[error(
        "a reaction is one emoji or a `:shortcode:` of at most {SHORTCODE_MAX_CHARS} characters"
    )]
    TooLong,
    #[error("a `:shortcode:` holds only lowercase letters, digits, `_`, `+` and `-`")]
    BadShortcode,
    #[error("a reaction is a single emoji (not several, and not text)")]
    NotOneEmoji,
}

/// Check that `value` is a reaction as described in the module header.
pub fn check(value: &str) -> Result<(), InvalidReaction> {
    if value.is_empty() {
        return Err(InvalidReaction::Empty);
    }
    if let Some(name) = value
        .strip_prefix(':')
        .and_then(|rest| rest.strip_suffix(':'))
    {
        if name.is_empty() {
            return Err(InvalidReaction::BadShortcode);
        }
        if name.chars().count() > SHORTCODE_MAX_CHARS {
            return Err(InvalidReaction::TooLong);
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_+-".contains(c);
        return if name.chars().all(allowed) {
            Ok(())
        } else {
            Err(InvalidReaction::BadShortcode)
        };
    }
    if value.len() > EMOJI_MAX_BYTES {
        return Err(InvalidReaction::TooLong);
    }
    if value.graphemes(true).count() != 1 {
        return Err(InvalidReaction::NotOneEmoji);
    }
    let chars: Vec<char> = value.chars().collect();
    if !chars.iter().all(|&c| emoji_part(c)) {
        return Err(InvalidReaction::NotOneEmoji);
    }
    // A keycap (`1️⃣`) starts with an ASCII digit, `#` or `*`; anything else needs a
    // pictograph or a regional indicator (flags), not only joiners and modifiers.
    let keycap = chars.contains(&'\u{20E3}');
    if keycap
        || chars
            .iter()
            .any(|&c| pictograph(c) || regional_indicator(c))
    {
        Ok(())
    } else {
        Err(InvalidReaction::NotOneEmoji)
    }
}

/// A character that may appear in an emoji sequence.
fn emoji_part(c: char) -> bool {
    pictograph(c)
        || regional_indicator(c)
        || matches!(c,
            '0'..='9' | '#' | '*'             // keycap bases
            | '\u{200D}'                      // zero-width joiner
            | '\u{FE0F}' | '\u{FE0E}'         // emoji / text presentation
            | '\u{20E3}'                      // combining enclosing keycap
            | '\u{1F3FB}'..='\u{1F3FF}'       // skin tones
            | '\u{E0020}'..='\u{E007F}') // tag sequences (subdivision flags)
}

/// The blocks where Unicode puts pictographic emoji (a superset of `Extended_Pictographic`
/// restricted to symbol blocks: no letters, digits or punctuation of any script).
fn pictograph(c: char) -> bool {
    matches!(c,
        '\u{00A9}' | '\u{00AE}' | '\u{203C}' | '\u{2049}' | '\u{2122}' | '\u{2139}'
        | '\u{2194}'..='\u{21AA}'
        | '\u{231A}'..='\u{23FF}'
        | '\u{24C2}'
        | '\u{25AA}'..='\u{25FE}'
        | '\u{2600}'..='\u{27BF}'
        | '\u{2934}' | '\u{2935}'
        | '\u{2B05}'..='\u{2B55}'
        | '\u{3030}' | '\u{303D}' | '\u{3297}' | '\u{3299}'
        | '\u{1F000}'..='\u{1F1E5}'
        | '\u{1F200}'..='\u{1FAFF}')
}

fn regional_indicator(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_emoji_of_every_shape_are_reactions() {
        for ok in [
            "👍",
            "👍🏽",
            "❤️",
            "❤",
            "🎉",
            "👩‍💻",
            "👨‍👩‍👧‍👦",
            "🏳️‍🌈",
            "🇫🇷",
            "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
            "1️⃣",
            "#️⃣",
            "✅",
            "☕",
            "©️",
            "🫠",
            ":+1:",
            ":party_parrot:",
            ":white-check-mark:",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn text_several_emoji_and_invisible_characters_are_not() {
        for (bad, why) in [
            ("", InvalidReaction::Empty),
            ("👍👍", InvalidReaction::NotOneEmoji),
            ("ok", InvalidReaction::NotOneEmoji),
            ("a", InvalidReaction::NotOneEmoji),
            ("1", InvalidReaction::NotOneEmoji),
            ("👍 ", InvalidReaction::NotOneEmoji),
            (" ", InvalidReaction::NotOneEmoji),
            ("\u{200D}", InvalidReaction::NotOneEmoji),
            ("\u{FE0F}", InvalidReaction::NotOneEmoji),
            ("<b>", InvalidReaction::NotOneEmoji),
            ("é", InvalidReaction::NotOneEmoji),
            ("中", InvalidReaction::NotOneEmoji),
            ("\u{202E}👍", InvalidReaction::NotOneEmoji),
            ("::", InvalidReaction::BadShortcode),
            (":Thumbs:", InvalidReaction::BadShortcode),
            (":a b:", InvalidReaction::BadShortcode),
            (":<script>:", InvalidReaction::BadShortcode),
            (
                ":aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:",
                InvalidReaction::TooLong,
            ),
        ] {
            assert_eq!(check(bad), Err(why), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever is accepted is short, one grapheme or a shortcode, and holds no
        /// whitespace, control or markup character.
        #[test]
        fn accepted_values_are_small_and_inert(value in "\\PC{0,6}|:[a-z0-9_+<> -]{0,40}:") {
            if check(&value).is_ok() {
                prop_assert!(value.len() <= EMOJI_MAX_BYTES + 2);
                prop_assert!(!value.chars().any(|c| c.is_whitespace() || c.is_control()
                    || "<>&\"'".contains(c)));
                prop_assert!(value.starts_with(':') || value.graphemes(true).count() == 1);
            }
        }
    }
}
