//! Text-shaped detectors: e-mail addresses and secrets (cloud access keys, private-key
//! blocks, bearer tokens, well-known token formats).

use crate::{Detector, Finding};

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

pub(crate) fn find_emails(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    for (at, _) in b.iter().enumerate().filter(|&(_, &c)| c == b'@') {
        let mut start = at;
        while start > 0 && is_local(b[start - 1]) {
            start -= 1;
        }
        while start < at && b[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < b.len() && is_domain(b[end]) {
            end += 1;
        }
        while end > at + 1 && (b[end - 1] == b'.' || b[end - 1] == b'-') {
            end -= 1;
        }
        if start == at || end == at + 1 {
            continue;
        }
        let domain = &b[at + 1..end];
        let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        if dot == 0 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
            continue;
        }
        out.push(Finding {
            detector: Detector::Email,
            start,
            end,
        });
    }
}

fn boundary_before(b: &[u8], i: usize) -> bool {
    i == 0 || !b[i - 1].is_ascii_alphanumeric()
}

fn boundary_after(b: &[u8], i: usize) -> bool {
    i >= b.len() || !b[i].is_ascii_alphanumeric()
}

/// `prefix` at `i`, followed by exactly `n` characters satisfying `ok`, standing alone.
fn fixed_token(b: &[u8], i: usize, prefix: &[u8], n: usize, ok: fn(u8) -> bool) -> Option<Finding> {
    let body = i + prefix.len();
    let end = body + n;
    let hit = b[i..].starts_with(prefix)
        && end <= b.len()
        && boundary_before(b, i)
        && b[body..end].iter().all(|&c| ok(c))
        && boundary_after(b, end);
    hit.then_some(Finding {
        detector: Detector::Secret,
        start: i,
        end,
    })
}

/// `prefix` at `i`, followed by at least `min` characters satisfying `ok`.
fn open_token(
    b: &[u8],
    i: usize,
    prefix: &[u8],
    min: usize,
    ok: fn(u8) -> bool,
) -> Option<Finding> {
    if !b[i..].starts_with(prefix) || !boundary_before(b, i) {
        return None;
    }
    let body = i + prefix.len();
    let end = body + b[body..].iter().take_while(|&&c| ok(c)).count();
    (end - body >= min).then_some(Finding {
        detector: Detector::Secret,
        start: i,
        end,
    })
}

fn aws_char(c: u8) -> bool {
    c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)
}

fn token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

fn word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// One pass over the text, dispatching on the first byte of each secret format, so the
/// cost does not grow with the number of formats.
pub(crate) fn find_secrets(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    for i in 0..b.len() {
        let found = match b[i] {
            // AWS access key ids: a fixed prefix and 16 base-32 characters.
            b'A' => [&b"AKIA"[..], b"ASIA", b"ABIA", b"ACCA"]
                .iter()
                .find_map(|p| fixed_token(b, i, p, 16, aws_char)),
            // GitHub tokens.
            b'g' => [&b"ghp_"[..], b"gho_", b"ghu_", b"ghs_", b"ghr_"]
                .iter()
                .find_map(|p| fixed_token(b, i, p, 36, alnum))
                .or_else(|| open_token(b, i, b"github_pat_", 22, word_char)),
            // Slack tokens.
            b'x' => [&b"xoxb-"[..], b"xoxp-", b"xoxa-", b"xoxr-", b"xoxs-"]
                .iter()
                .find_map(|p| open_token(b, i, p, 10, word_char)),
            b'-' => private_key(text, i),
            b'b' | b'B' => bearer_token(b, i),
            _ => None,
        };
        out.extend(found);
    }
}

/// `-----BEGIN … PRIVATE KEY-----` at `start`, up to its END line (or the end of the text,
/// since half a key is still a leak).
fn private_key(text: &str, start: usize) -> Option<Finding> {
    let rest = &text[start..];
    if !rest.starts_with("-----BEGIN ") {
        return None;
    }
    let line_end = rest.find('\n').unwrap_or(rest.len());
    if !rest[..line_end].contains("PRIVATE KEY-----") {
        return None;
    }
    let end = match rest.find("-----END ") {
        Some(e) => {
            let tail = &rest[e..];
            let close = tail[9..].find("-----").map_or(tail.len(), |c| 9 + c + 5);
            start + e + close
        }
        None => text.len(),
    };
    Some(Finding {
        detector: Detector::PrivateKey,
        start,
        end,
    })
}

/// `Bearer <token>` (any case) at `i`: the token, at least 16 characters, not the word.
fn bearer_token(b: &[u8], i: usize) -> Option<Finding> {
    const WORD: &[u8] = b"bearer ";
    if b.len() < i + WORD.len()
        || !b[i..i + WORD.len()].eq_ignore_ascii_case(WORD)
        || !boundary_before(b, i)
    {
        return None;
    }
    let start = i + WORD.len();
    let mut end = start + b[start..].iter().take_while(|&&c| token_char(c)).count();
    end += b[end..].iter().take_while(|&&c| c == b'=').count();
    let token = &b[start..end];
    // Real tokens mix letters and digits; "Bearer authentication-is-described" does not.
    let mixed = token.iter().any(u8::is_ascii_digit) && token.iter().any(u8::is_ascii_alphabetic);
    (token.len() >= 16 && mixed).then_some(Finding {
        detector: Detector::Secret,
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: fn(&str, &mut Vec<Finding>), text: &str) -> Vec<String> {
        let mut out = Vec::new();
        f(text, &mut out);
        out.iter()
            .map(|x| text[x.start..x.end].to_string())
            .collect()
    }

    #[test]
    fn emails() {
        assert_eq!(
            run(find_emails, "mail jane.doe+x@example.co.uk."),
            ["jane.doe+x@example.co.uk"]
        );
        assert!(run(find_emails, "a @ b, x@localhost, user@host.c0m, @handle").is_empty());
    }

    #[test]
    fn secrets() {
        assert_eq!(
            run(find_secrets, "key AKIAIOSFODNN7EXAMPLE here"),
            ["AKIAIOSFODNN7EXAMPLE"]
        );
        assert!(run(find_secrets, "AKIAIOSFODNN7EXAMPL").is_empty());
        let bearer = run(
            find_secrets,
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123",
        );
        assert_eq!(bearer, ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123"]);
        assert!(run(find_secrets, "bearer authentication-is-described").is_empty());
        let pem = "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\ny";
        assert_eq!(
            run(find_secrets, pem),
            ["-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"]
        );
        assert!(run(find_secrets, "-----BEGIN PUBLIC KEY-----").is_empty());
    }
}
