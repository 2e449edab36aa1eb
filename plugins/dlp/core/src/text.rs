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

/// `prefix` followed by exactly `n` characters satisfying `ok`, standing alone.
fn fixed_tokens(
    text: &str,
    prefixes: &[&str],
    n: usize,
    ok: fn(u8) -> bool,
    out: &mut Vec<Finding>,
) {
    let b = text.as_bytes();
    for prefix in prefixes {
        for (i, _) in text.match_indices(prefix) {
            let body = i + prefix.len();
            let end = body + n;
            if end <= b.len()
                && boundary_before(b, i)
                && b[body..end].iter().all(|&c| ok(c))
                && boundary_after(b, end)
            {
                out.push(Finding {
                    detector: Detector::Secret,
                    start: i,
                    end,
                });
            }
        }
    }
}

/// `prefix` followed by at least `min` characters satisfying `ok`.
fn open_tokens(
    text: &str,
    prefixes: &[&str],
    min: usize,
    ok: fn(u8) -> bool,
    out: &mut Vec<Finding>,
) {
    let b = text.as_bytes();
    for prefix in prefixes {
        for (i, _) in text.match_indices(prefix) {
            let body = i + prefix.len();
            let mut end = body;
            while end < b.len() && ok(b[end]) {
                end += 1;
            }
            if end - body >= min && boundary_before(b, i) {
                out.push(Finding {
                    detector: Detector::Secret,
                    start: i,
                    end,
                });
            }
        }
    }
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

pub(crate) fn find_secrets(text: &str, out: &mut Vec<Finding>) {
    // AWS access key ids: a fixed prefix and 16 base-32 characters.
    fixed_tokens(text, &["AKIA", "ASIA", "ABIA", "ACCA"], 16, aws_char, out);
    // GitHub and Slack tokens.
    fixed_tokens(
        text,
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        36,
        |c| c.is_ascii_alphanumeric(),
        out,
    );
    open_tokens(text, &["github_pat_"], 22, word_char, out);
    open_tokens(
        text,
        &["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"],
        10,
        word_char,
        out,
    );
    find_private_keys(text, out);
    find_bearer_tokens(text, out);
}

/// `-----BEGIN … PRIVATE KEY-----` up to its END line (or the end of the text, since half a
/// key is still a leak).
fn find_private_keys(text: &str, out: &mut Vec<Finding>) {
    const BEGIN: &str = "-----BEGIN ";
    for (start, _) in text.match_indices(BEGIN) {
        let rest = &text[start..];
        let line_end = rest.find('\n').unwrap_or(rest.len());
        if !rest[..line_end].contains("PRIVATE KEY-----") {
            continue;
        }
        let end = match rest.find("-----END ") {
            Some(e) => {
                let tail = &rest[e..];
                let close = tail[9..].find("-----").map_or(tail.len(), |c| 9 + c + 5);
                start + e + close
            }
            None => text.len(),
        };
        out.push(Finding {
            detector: Detector::PrivateKey,
            start,
            end,
        });
    }
}

/// `Bearer <token>` (any case): the token, at least 16 characters, not the word.
fn find_bearer_tokens(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    for (i, _) in lower.match_indices("bearer ") {
        if !boundary_before(b, i) {
            continue;
        }
        let start = i + "bearer ".len();
        let mut end = start;
        while end < b.len() && token_char(b[end]) {
            end += 1;
        }
        while end < b.len() && b[end] == b'=' {
            end += 1;
        }
        let token = &b[start..end];
        // Real tokens mix letters and digits; "Bearer authentication-is-described" does not.
        let mixed =
            token.iter().any(u8::is_ascii_digit) && token.iter().any(u8::is_ascii_alphabetic);
        if token.len() >= 16 && mixed {
            out.push(Finding {
                detector: Detector::Secret,
                start,
                end,
            });
        }
    }
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
