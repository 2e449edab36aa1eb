//! The search query language, as people type it into a search box:
//!
//! - `budget review` — messages containing both (anywhere: `view` finds `review`);
//! - `"exact phrase"` — the words together, in this order;
//! - `-draft` — messages without `draft`;
//! - `from:alice` (or `from:@alice`), `in:room-name` (or `in:"team room"`);
//! - `before:2026-03-01` (earlier than that day), `after:2026-03-01` (later than that day),
//!   `on:2026-03-01` (that day), all in UTC;
//! - `has:file` — messages with an attachment.
//!
//! A `key:value` whose key is not one of these is text (`https://example.com` or `10:30` is
//! searched as typed). Text is folded ([`crate::store::search_text::fold`]) the same way
//! the index is, so case and accents do not matter.

use thiserror::Error;

use crate::store::search_text::fold;

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Folded text every result contains: a word, or a whole phrase.
    pub required: Vec<String>,
    /// Folded text no result contains (`-word`, `-"a phrase"`).
    pub excluded: Vec<String>,
    /// User names from `from:` (any of them).
    pub from: Vec<String>,
    /// Room names from `in:` (any of them).
    pub rooms: Vec<String>,
    /// `before:` as days since 1970-01-01: results are older than this day's start.
    pub before: Option<i64>,
    /// `after:`: results are newer than this day's end.
    pub after: Option<i64>,
    /// `on:`: results are from this day.
    pub on: Option<i64>,
    pub has_file: bool,
}

/// How big a query may be.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_chars: usize,
    pub max_terms: usize,
}

/// Why a query was refused; shown to the user as typed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    #[error("type something to search for")]
    Empty,
    #[error("the query is longer than {max} characters")]
    TooLong { max: usize },
    #[error("the query has more than {max} words, phrases and filters")]
    TooManyTerms { max: usize },
    #[error("`{key}:` needs a value, e.g. `{key}:{example}`")]
    MissingValue {
        key: &'static str,
        example: &'static str,
    },
    #[error("`{value}` is not a date: write it as YYYY-MM-DD, e.g. 2026-03-01")]
    BadDate { value: String },
    #[error("`has:{value}` is not known; `has:file` is")]
    UnknownHas { value: String },
    #[error("the query only excludes: add a word to look for, or a filter")]
    OnlyExclusions,
}

impl Query {
    /// Whether the query narrows anything down (a search for nothing is refused, not run
    /// over every message).
    fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.from.is_empty()
            && self.rooms.is_empty()
            && self.before.is_none()
            && self.after.is_none()
            && self.on.is_none()
            && !self.has_file
    }
}

/// Parse what the user typed.
pub fn parse(input: &str, limits: QueryLimits) -> Result<Query, QueryError> {
    if input.chars().count() > limits.max_chars {
        return Err(QueryError::TooLong {
            max: limits.max_chars,
        });
    }
    let tokens = tokenize(input);
    if tokens.len() > limits.max_terms {
        return Err(QueryError::TooManyTerms {
            max: limits.max_terms,
        });
    }
    let mut query = Query::default();
    for token in tokens {
        let Token {
            negated,
            key,
            value,
            quoted,
        } = token;
        match key.as_deref() {
            Some("from") => query.from.push(
                required(value, "from", "alice")?
                    .trim_start_matches('@')
                    .to_string(),
            ),
            Some("in") => query.rooms.push(
                required(value, "in", "general")?
                    .trim_start_matches('#')
                    .to_string(),
            ),
            Some("before") => query.before = Some(day(&required(value, "before", "2026-03-01")?)?),
            Some("after") => query.after = Some(day(&required(value, "after", "2026-03-01")?)?),
            Some("on") => query.on = Some(day(&required(value, "on", "2026-03-01")?)?),
            Some("has") => {
                let value = required(value, "has", "file")?;
                if !value.eq_ignore_ascii_case("file") {
                    return Err(QueryError::UnknownHas { value });
                }
                query.has_file = true;
            }
            // Not a filter: the whole token is text.
            Some(other) => push_text(&mut query, negated, &format!("{other}:{value}")),
            None if value.is_empty() && !quoted => {}
            None => push_text(&mut query, negated, &value),
        }
    }
    if query.is_empty() {
        return Err(if query.excluded.is_empty() {
            QueryError::Empty
        } else {
            QueryError::OnlyExclusions
        });
    }
    Ok(query)
}

fn push_text(query: &mut Query, negated: bool, text: &str) {
    let folded = fold(text.trim());
    if folded.is_empty() {
        return;
    }
    let list = if negated {
        &mut query.excluded
    } else {
        &mut query.required
    };
    if !list.contains(&folded) {
        list.push(folded);
    }
}

fn required(value: String, key: &'static str, example: &'static str) -> Result<String, QueryError> {
    if value.trim().is_empty() {
        Err(QueryError::MissingValue { key, example })
    } else {
        Ok(value)
    }
}

/// One whitespace-separated piece of a query.
#[derive(Debug, PartialEq, Eq)]
struct Token {
    negated: bool,
    /// `from` in `from:alice` (lower-cased); `None` for plain text.
    key: Option<String>,
    value: String,
    /// The value was in quotes (a phrase, or a quoted filter value).
    quoted: bool,
}

/// The filter keys; any other `word:` is text.
const KEYS: [&str; 6] = ["from", "in", "before", "after", "on", "has"];

/// Split on whitespace, keeping `"quoted phrases"` (also as a filter's value) together. A
/// quote left open runs to the end of the query, which is what the user most likely meant.
fn tokenize(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return tokens;
        }
        let negated = chars.next_if_eq(&'-').is_some();
        let mut raw = String::new();
        let mut quoted = false;
        let mut key = None;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' && raw.is_empty() {
                quoted = true;
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    raw.push(c);
                }
                break;
            }
            if c == ':' && key.is_none() {
                let lower = raw.to_ascii_lowercase();
                if KEYS.contains(&lower.as_str()) {
                    key = Some(lower);
                    raw.clear();
                    continue;
                }
            }
            raw.push(c);
        }
        // `-` alone is text, not a negation of nothing.
        if negated && raw.is_empty() && key.is_none() && !quoted {
            tokens.push(Token {
                negated: false,
                key: None,
                value: "-".into(),
                quoted: false,
            });
            continue;
        }
        tokens.push(Token {
            negated,
            key,
            value: raw,
            quoted,
        });
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01 (proleptic Gregorian, UTC).
fn day(value: &str) -> Result<i64, QueryError> {
    let bad = || QueryError::BadDate {
        value: value.to_string(),
    };
    let mut parts = value.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return Err(bad());
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d == 0 || d > days_in_month {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d))
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const LIMITS: QueryLimits = QueryLimits {
        max_chars: 500,
        max_terms: 16,
    };

    fn p(q: &str) -> Query {
        parse(q, LIMITS).unwrap()
    }

    #[test]
    fn words_phrases_and_exclusions() {
        let q = p(r#"Budget "Q3 Review" -draft -"old plan""#);
        assert_eq!(q.required, ["budget", "q3 review"]);
        assert_eq!(q.excluded, ["draft", "old plan"]);
    }

    #[test]
    fn filters() {
        let q = p(
            r#"from:@Alice in:"team room" in:#ops before:2026-03-01 after:2026-02-01 has:FILE report"#,
        );
        assert_eq!(q.from, ["Alice"]);
        assert_eq!(q.rooms, ["team room", "ops"]);
        assert_eq!(q.before, Some(days_from_civil(2026, 3, 1)));
        assert_eq!(q.after, Some(days_from_civil(2026, 2, 1)));
        assert!(q.has_file);
        assert_eq!(q.required, ["report"]);
        assert_eq!(p("on:2024-02-29").on, Some(days_from_civil(2024, 2, 29)));
        assert_eq!(p("FROM:bob").from, ["bob"]);
    }

    #[test]
    fn text_that_looks_like_a_filter_is_text() {
        let q = p("https://example.com/a-b 10:30 C:\\Users\\bob e-mail x@y.io");
        assert_eq!(
            q.required,
            [
                "https://example.com/a-b",
                "10:30",
                "c:\\users\\bob",
                "e-mail",
                "x@y.io"
            ]
        );
        assert_eq!(p("- dash").required, ["-", "dash"]);
        assert_eq!(p("Café").required, ["cafe"]);
        assert_eq!(p("数据库 会议").required, ["数据库", "会议"]);
    }

    #[test]
    fn an_open_quote_runs_to_the_end() {
        assert_eq!(p(r#"say "hello there"#).required, ["say", "hello there"]);
    }

    #[test]
    fn dates_are_days_since_the_epoch() {
        assert_eq!(day("1970-01-01").unwrap(), 0);
        assert_eq!(day("2000-03-01").unwrap(), 11_017);
        assert_eq!(day("2024-02-29").unwrap(), 19_782);
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-1",
            "26-01-01",
            "2026-01-32",
            "yesterday",
            "2026-01-01-01",
        ] {
            assert!(matches!(day(bad), Err(QueryError::BadDate { .. })), "{bad}");
        }
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(parse("   ", LIMITS), Err(QueryError::Empty));
        assert_eq!(parse(r#""""#, LIMITS), Err(QueryError::Empty));
        assert_eq!(parse("-spam", LIMITS), Err(QueryError::OnlyExclusions));
        assert_eq!(
            parse("from: x", LIMITS),
            Err(QueryError::MissingValue {
                key: "from",
                example: "alice"
            })
        );
        assert!(matches!(
            parse("has:link", LIMITS),
            Err(QueryError::UnknownHas { .. })
        ));
        assert!(matches!(
            parse("before:soon", LIMITS),
            Err(QueryError::BadDate { .. })
        ));
        assert_eq!(
            parse(&"a ".repeat(17), LIMITS),
            Err(QueryError::TooManyTerms { max: 16 })
        );
        assert_eq!(
            parse(&"a".repeat(501), LIMITS),
            Err(QueryError::TooLong { max: 500 })
        );
    }

    proptest! {
        #[test]
        fn any_input_parses_or_is_refused_with_a_reason(input in "\\PC{0,80}") {
            match parse(&input, LIMITS) {
                Ok(q) => {
                    prop_assert!(!q.is_empty());
                    prop_assert!(q.required.iter().chain(&q.excluded).all(|t| !t.is_empty()));
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }

        #[test]
        fn every_plain_word_is_required(words in proptest::collection::vec("[a-zA-Z0-9]{1,8}", 1..8)) {
            let q = parse(&words.join(" "), LIMITS).unwrap();
            for w in &words {
                prop_assert!(q.required.contains(&w.to_ascii_lowercase()));
            }
        }
    }
}
