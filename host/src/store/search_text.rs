//! The text a message is found by: its stored body *folded* — lower-cased, compatibility
//! forms unified (full-width `Ａ` is `a`), and accents taken off Latin, Greek and Cyrillic
//! letters (`café` is `cafe`) — kept beside the body as `events.search_text`.
//!
//! Search is substring search over this folded text, on both stores (SQLite's FTS5 trigram
//! index, PostgreSQL's `pg_trgm`): a query's words are folded by the same function and must
//! each occur. One Rust function for both the index and the query is what makes the two
//! stores answer alike, and what makes partial words, hyphenated words, e-mail addresses,
//! paths and text without spaces (Chinese, Japanese) findable as typed.
//!
//! Folding works one character at a time, so a position in the folded text maps back to
//! the body ([`fold_with_offsets`]) for highlighting.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Whether the trigram indexes can find a folded term: it has a trigram, so three
/// characters or more. Shorter terms are checked on the rows themselves.
pub fn is_indexed(term: &str) -> bool {
    term.chars().nth(2).is_some()
}

/// The most trigrams of one term the word index is asked for.
const TRIGRAMS_PER_TERM_MAX: usize = 16;

/// The trigrams of a folded term that SQLite's word index is asked for: rows holding all of
/// them are the term's candidates, and the term itself is then checked on each row (the
/// index keeps which rows hold a trigram, not where: migration 0021). So these are the
/// term's distinct trigrams in order, or for a long term [`TRIGRAMS_PER_TERM_MAX`] of them
/// spread evenly from the first to the last: fewer trigrams can only admit more candidates,
/// never lose a row, and every trigram asked for costs a list read. Empty for a term that
/// [`is_indexed`] says the index cannot find.
pub fn index_trigrams(term: &str) -> Vec<String> {
    let chars: Vec<char> = term.chars().collect();
    let mut distinct: Vec<String> = Vec::new();
    for window in chars.windows(3) {
        let trigram: String = window.iter().collect();
        if !distinct.contains(&trigram) {
            distinct.push(trigram);
        }
    }
    if distinct.len() <= TRIGRAMS_PER_TERM_MAX {
        return distinct;
    }
    let last = distinct.len() - 1;
    (0..TRIGRAMS_PER_TERM_MAX)
        .map(|i| distinct[i * last / (TRIGRAMS_PER_TERM_MAX - 1)].clone())
        .collect()
}

/// The folded form of `text` (see the module header).
pub fn fold(text: &str) -> String {
    if text.is_ascii() {
        // The common case, without the Unicode tables.
        return text.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    for (_, cluster) in clusters(text) {
        fold_cluster(cluster, &mut out);
    }
    out
}

/// [`fold`], and for each byte of the folded text the byte offset in `text` of the
/// character cluster it came from (plus one entry for the end), so a match found in the
/// folded text can be shown in the original.
pub fn fold_with_offsets(text: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    for (at, cluster) in clusters(text) {
        let before = out.len();
        fold_cluster(cluster, &mut out);
        origin.resize(origin.len() + (out.len() - before), at);
    }
    origin.push(text.len());
    (out, origin)
}

/// `text` cut into clusters: a character and the marks that follow it (combining marks,
/// and the half-width kana voicing marks, which become combining marks when normalised).
/// A cluster is folded as a whole, so `e` + U+0301 folds like `é` and `ｶﾞ` like `ガ`.
fn clusters(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = rest.next()?;
        let mut end = text.len();
        while let Some(&(at, c)) = rest.peek() {
            if !is_combining_mark(c) && !matches!(c, '\u{FF9E}' | '\u{FF9F}') {
                end = at;
                break;
            }
            rest.next();
        }
        Some((start, &text[start..end]))
    })
}

/// Append the folded form of one cluster: compatibility-decomposed, accents dropped when its
/// letter (once decomposed) is one whose accents come off, lower-cased, and recomposed so a
/// letter that keeps its mark (Japanese が) stays one character.
fn fold_cluster(cluster: &str, out: &mut String) {
    if cluster.is_ascii() {
        out.extend(cluster.chars().map(|c| c.to_ascii_lowercase()));
        return;
    }
    let mut parts = cluster.nfkd().peekable();
    // Decided on the letter as it will be written out (lower case), so folding the folded
    // text again decides the same.
    let strip = parts.peek().is_some_and(|&base| {
        std::iter::once(base)
            .chain(base.to_lowercase())
            .any(|c| c.is_ascii_alphabetic() || accents_come_off(c))
    });
    let mut piece = String::with_capacity(cluster.len());
    for part in parts {
        if is_combining_mark(part) {
            if !strip {
                piece.push(part);
            }
        } else {
            piece.extend(part.to_lowercase());
        }
    }
    out.extend(piece.nfc());
}

/// Latin, Greek and Cyrillic letters (after decomposition, so full-width and other
/// compatibility forms count too), whose accents people leave out when they type a search;
/// also the combining accents themselves, for a mark with no letter before it. Other
/// scripts keep their marks: in them a mark changes the letter.
fn accents_come_off(c: char) -> bool {
    matches!(c,
        '\u{00C0}'..='\u{052F}'      // Latin-1 letters … Cyrillic Supplement (and U+0300–036F)
        | '\u{1AB0}'..='\u{1AFF}'    // Combining Diacritical Marks Extended
        | '\u{1DC0}'..='\u{1FFF}'    // … Supplement, Latin Extended Additional, Greek Extended
        | '\u{20D0}'..='\u{20FF}'    // Combining Diacritical Marks for Symbols
        | '\u{FE20}'..='\u{FE2F}'    // Combining Half Marks
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folding_folded_text_changes_nothing_for_ordinary_text() {
        for text in [
            "Café Crème",
            "ＡＢＣ",
            "がぎぐ ｶﾞ",
            "数据库",
            "Ærøskøbing",
            "e\u{301}te",
        ] {
            let once = fold(text);
            assert_eq!(fold(&once), once, "{text}");
        }
    }

    #[test]
    fn case_accents_and_width_fold_away() {
        assert_eq!(fold("Café Crème"), "cafe creme");
        assert_eq!(fold("e\u{301}te\u{301}"), "ete");
        assert_eq!(fold("ＡＢＣ１２３"), "abc123");
        assert_eq!(fold("Ærøskøbing"), "ærøskøbing");
        assert_eq!(fold("ΆΘΗΝΑ"), "αθηνα");
        assert_eq!(fold("Straße"), "straße");
        assert_eq!(fold("Ёлка"), "елка");
    }

    #[test]
    fn other_scripts_keep_their_marks() {
        assert_eq!(fold("がぎぐ"), "がぎぐ");
        assert_eq!(fold("ｶﾞ"), "ガ"); // half-width katakana becomes the full-width letter
        assert_eq!(fold("ｶﾞ"), fold("ガ"));
        assert_eq!(fold("数据库"), "数据库");
        assert_eq!(fold("हिन्दी"), "हिन्दी");
    }

    #[test]
    fn offsets_point_back_into_the_original() {
        let text = "Ünïcode ＡＢ ok";
        let (folded, origin) = fold_with_offsets(text);
        assert_eq!(folded, "unicode ab ok");
        let at = folded.find("ab").unwrap();
        let end = at + "ab".len();
        assert_eq!(&text[origin[at]..origin[end]], "ＡＢ");
        let at = folded.find("unicode").unwrap();
        assert_eq!(&text[origin[at]..origin[at + 7]], "Ünïcode");
    }

    proptest! {
        #[test]
        fn offsets_are_char_boundaries_in_order(text in "\\PC{0,40}") {
            let once = fold(&text);
            let (with_offsets, origin) = fold_with_offsets(&text);
            prop_assert_eq!(&with_offsets, &once);
            prop_assert_eq!(origin.len(), once.len() + 1);
            for &at in &origin {
                prop_assert!(text.is_char_boundary(at));
            }
            prop_assert!(origin.windows(2).all(|w| w[0] <= w[1]));
        }

        /// Any run of whole characters (a letter with its marks) of a text, as a user would
        /// type it, is found in the text.
        #[test]
        fn a_folded_substring_is_found_in_the_folded_whole(
            text in "\\PC{0,30}", start in 0usize..30, len in 0usize..10,
        ) {
            let starts: Vec<usize> = clusters(&text).map(|(at, _)| at).chain([text.len()]).collect();
            let first = start.min(starts.len() - 1);
            let last = (first + len).min(starts.len() - 1);
            let part = &text[starts[first]..starts[last]];
            prop_assert!(fold(&text).contains(&fold(part)));
        }

        /// The trigrams asked of the index are distinct, at most 16, each three characters
        /// of the term itself (so every row holding the term holds them all), and there is
        /// one whenever the term is indexed at all; a short term keeps every one of its own.
        #[test]
        fn index_trigrams_are_the_terms_own(term in "\\PC{0,60}") {
            let trigrams = index_trigrams(&term);
            prop_assert_eq!(trigrams.is_empty(), !is_indexed(&term));
            prop_assert!(trigrams.len() <= TRIGRAMS_PER_TERM_MAX);
            for (i, trigram) in trigrams.iter().enumerate() {
                prop_assert_eq!(trigram.chars().count(), 3);
                prop_assert!(term.contains(trigram.as_str()));
                prop_assert!(!trigrams[..i].contains(trigram));
            }
            let all: std::collections::HashSet<String> = term
                .chars()
                .collect::<Vec<_>>()
                .windows(3)
                .map(|w| w.iter().collect())
                .collect();
            if all.len() <= TRIGRAMS_PER_TERM_MAX {
                prop_assert_eq!(trigrams.len(), all.len());
            }
        }
    }

    #[test]
    fn a_long_terms_trigrams_span_it_from_first_to_last() {
        let term = "abcdefghijklmnopqrstuvwxyz";
        let trigrams = index_trigrams(term);
        assert_eq!(trigrams.len(), TRIGRAMS_PER_TERM_MAX);
        assert_eq!(trigrams.first().map(String::as_str), Some("abc"));
        assert_eq!(trigrams.last().map(String::as_str), Some("xyz"));
        assert_eq!(index_trigrams("aaaa"), vec!["aaa".to_string()]);
        assert_eq!(index_trigrams("ab"), Vec::<String>::new());
    }
}
