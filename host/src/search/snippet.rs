//! The snippet of a search result: a window of the message's text around the first match,
//! as plain-text parts with the matches marked. Parts, not markup: a client renders each as
//! a text node, so a message can never inject HTML through its snippet.

use serde::Serialize;

use crate::store::search_text::fold_with_offsets;

/// Characters of context shown before the first match.
const LEAD_CHARS: usize = 60;
/// Characters a snippet shows at most.
const WINDOW_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SnippetPart {
    pub text: String,
    /// This part is a match.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Snippet {
    pub parts: Vec<SnippetPart>,
    /// Text was left out before the first part (show an ellipsis).
    pub cut_start: bool,
    /// Text was left out after the last part.
    pub cut_end: bool,
}

/// The snippet of `body` for the folded `terms` (each matched wherever it occurs, as the
/// search matched it).
pub fn build(body: &str, terms: &[String]) -> Snippet {
    let (folded, origin) = fold_with_offsets(body);
    // Byte ranges of `body` that matched, sorted and merged.
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for term in terms.iter().filter(|t| !t.is_empty()) {
        for (at, _) in folded.match_indices(term.as_str()) {
            let (start, end) = (origin[at], origin[at + term.len()]);
            if start < end {
                hits.push((start, end));
            }
        }
    }
    hits.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(hits.len());
    for (start, end) in hits {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }

    // The window, in bytes of `body`, on character boundaries.
    let first = merged.first().map_or(0, |h| h.0);
    let start = body[..first]
        .char_indices()
        .rev()
        .nth(LEAD_CHARS.saturating_sub(1))
        .map_or(0, |(at, _)| at);
    let end = body[start..]
        .char_indices()
        .nth(WINDOW_CHARS)
        .map_or(body.len(), |(at, _)| start + at);

    let mut parts = Vec::new();
    let mut at = start;
    for (hit_start, hit_end) in merged {
        let (hit_start, hit_end) = (hit_start.max(at), hit_end.min(end));
        if hit_start >= hit_end {
            continue;
        }
        if at < hit_start {
            parts.push(SnippetPart {
                text: body[at..hit_start].to_string(),
                hit: false,
            });
        }
        parts.push(SnippetPart {
            text: body[hit_start..hit_end].to_string(),
            hit: true,
        });
        at = hit_end;
    }
    if at < end {
        parts.push(SnippetPart {
            text: body[at..end].to_string(),
            hit: false,
        });
    }
    Snippet {
        parts,
        cut_start: start > 0,
        cut_end: end < body.len(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::search_text::fold;
    use proptest::prelude::*;

    fn marked(snippet: &Snippet) -> String {
        snippet
            .parts
            .iter()
            .map(|p| {
                if p.hit {
                    format!("[{}]", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }

    #[test]
    fn matches_are_marked_in_the_original_text() {
        let s = build("Le Café est fermé; CAFÉ demain", &[fold("cafe")]);
        assert_eq!(marked(&s), "Le [Café] est fermé; [CAFÉ] demain");
        assert!(!s.cut_start && !s.cut_end);
        let s = build("数据库会议在周三", &[fold("会议")]);
        assert_eq!(marked(&s), "数据库[会议]在周三");
        let s = build("see <b>bold</b>", &[fold("<b>")]);
        assert_eq!(marked(&s), "see [<b>]bold</b>");
    }

    #[test]
    fn overlapping_matches_merge() {
        let s = build("abcdef", &[fold("abc"), fold("cde")]);
        assert_eq!(marked(&s), "[abcde]f");
    }

    #[test]
    fn a_long_text_is_cut_around_the_first_match() {
        let body = format!("{}needle{}", "x".repeat(500), "y".repeat(500));
        let s = build(&body, &[fold("needle")]);
        assert!(s.cut_start && s.cut_end);
        let text = marked(&s);
        assert!(text.starts_with(&"x".repeat(LEAD_CHARS)));
        assert!(text.contains("[needle]"));
        assert_eq!(text.chars().count(), WINDOW_CHARS + 2);
    }

    #[test]
    fn no_terms_shows_the_start() {
        let s = build("hello world", &[]);
        assert_eq!(marked(&s), "hello world");
    }

    proptest! {
        #[test]
        fn the_parts_are_a_window_of_the_body(body in "\\PC{0,300}", term in "\\PC{1,4}") {
            let s = build(&body, &[fold(&term)]);
            let joined: String = s.parts.iter().map(|p| p.text.as_str()).collect();
            prop_assert!(body.contains(&joined));
            prop_assert!(joined.chars().count() <= WINDOW_CHARS);
            if !s.cut_start && !s.cut_end {
                prop_assert_eq!(joined, body);
            }
        }
    }
}
