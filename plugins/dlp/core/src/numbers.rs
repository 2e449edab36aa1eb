//! Digit-based detectors: payment cards (Luhn) and US social security numbers.
//!
//! Both start from "digit runs": groups of digits joined by single, consistent separators
//! (a space or a dash), standing alone between non-alphanumeric characters. A run is judged
//! by its shape as well as its digits, which is what keeps false positives low: sixteen
//! digits that fail the Luhn check, or digits grouped like a phone number, are not a card.

use crate::{Detector, Finding};

pub(crate) struct Run {
    /// Byte ranges of each digit group, in order.
    groups: Vec<(usize, usize)>,
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Runs of digit groups, e.g. `4111 1111 1111 1111` (four groups) or `078-05-1120`.
pub(crate) fn digit_runs(text: &[u8]) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit()
            || (i > 0 && (is_alnum(text[i - 1]) || prev_is_joined_digit(text, i)))
        {
            i += 1;
            continue;
        }
        let mut groups = Vec::new();
        let mut sep: Option<u8> = None;
        let mut j = i;
        loop {
            let start = j;
            while j < text.len() && text[j].is_ascii_digit() {
                j += 1;
            }
            groups.push((start, j));
            let joined = j + 1 < text.len()
                && (text[j] == b' ' || text[j] == b'-')
                && sep.is_none_or(|s| s == text[j])
                && text[j + 1].is_ascii_digit()
                && groups.len() < 32;
            if !joined {
                break;
            }
            sep = Some(text[j]);
            j += 1;
        }
        // A run glued to letters (`1234abc`) is an identifier, not a number.
        if j >= text.len() || !is_alnum(text[j]) {
            runs.push(Run { groups });
        }
        i = j.max(i + 1);
    }
    runs
}

/// `-5` in `12-5`: the digit continues a number, so it does not start a run.
fn prev_is_joined_digit(text: &[u8], i: usize) -> bool {
    i >= 2
        && (text[i - 1] == b'-' || text[i - 1] == b'.' || text[i - 1] == b',')
        && text[i - 2].is_ascii_digit()
}

fn digits(text: &[u8], groups: &[(usize, usize)]) -> Vec<u8> {
    groups
        .iter()
        .flat_map(|&(s, e)| text[s..e].iter().map(|b| b - b'0'))
        .collect()
}

/// The Luhn (mod 10) check every payment card number satisfies.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Issuer prefixes and lengths of the major networks (Visa, Mastercard, Amex, Discover,
/// JCB, Diners, UnionPay, Maestro).
fn plausible_issuer(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| {
        d.iter()
            .take(k)
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x))
    };
    match d[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => {
            (51..=55).contains(&prefix(2)) && n == 16
                || (50..=69).contains(&prefix(2)) && (12..=19).contains(&n)
        }
        2 => (2221..=2720).contains(&prefix(4)) && n == 16,
        3 => {
            matches!(prefix(2), 34 | 37) && n == 15
                || (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n)
                || matches!(prefix(2), 36 | 38 | 39 | 30) && (14..=19).contains(&n)
        }
        6 => (14..=19).contains(&n),
        _ => false,
    }
}

/// Card numbers are printed ungrouped, in fours, or as 4-6-5 / 4-6-4 (Amex, Diners).
fn plausible_grouping(groups: &[(usize, usize)]) -> bool {
    let lens: Vec<usize> = groups.iter().map(|(s, e)| e - s).collect();
    match lens.as_slice() {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&l| l == 4) && (1..=4).contains(last),
        [] => false,
    }
}

pub(crate) fn find_cards(text: &str, runs: &[Run], out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    for run in runs {
        let g = &run.groups;
        // Most numbers in chat (dates, amounts, versions) are far too short to be a card.
        if g.iter().map(|(s, e)| e - s).sum::<usize>() < 12 {
            continue;
        }
        // Try windows of groups, longest first, so `card 4111 1111 1111 1111 2030` still
        // finds the card in front of the year.
        'window: for len in (1..=g.len()).rev() {
            for start in 0..=g.len() - len {
                let window = &g[start..start + len];
                let d = digits(bytes, window);
                if !(12..=19).contains(&d.len()) || !plausible_grouping(window) {
                    continue;
                }
                if d.iter().all(|&x| x == d[0]) || !plausible_issuer(&d) || !luhn(&d) {
                    continue;
                }
                out.push(Finding {
                    detector: Detector::Card,
                    start: window[0].0,
                    end: window[len - 1].1,
                });
                break 'window;
            }
        }
    }
}

pub(crate) fn find_ssns(text: &str, runs: &[Run], out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    for run in runs {
        let g = &run.groups;
        if g.len() != 3 || g.iter().map(|(s, e)| e - s).ne([3, 2, 4]) {
            continue;
        }
        let d = digits(bytes, g);
        let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
        let group = d[3] * 10 + d[4];
        let serial_zero = d[5..].iter().all(|&x| x == 0);
        if area == 0 || area == 666 || area >= 900 || group == 0 || serial_zero {
            continue;
        }
        out.push(Finding {
            detector: Detector::Ssn,
            start: g[0].0,
            end: g[2].1,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find_cards(text, &digit_runs(text.as_bytes()), &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn luhn_known_values() {
        let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(luhn(&d("378282246310005")));
        assert!(!luhn(&d("4111111111111112")));
    }

    #[test]
    fn finds_plain_spaced_and_dashed_cards() {
        assert_eq!(cards("pay 4111111111111111 now"), ["4111111111111111"]);
        assert_eq!(cards("pay 4111 1111 1111 1111."), ["4111 1111 1111 1111"]);
        assert_eq!(cards("5500-0000-0000-0004"), ["5500-0000-0000-0004"]);
        assert_eq!(cards("amex 3782 822463 10005"), ["3782 822463 10005"]);
        assert_eq!(cards("4111 1111 1111 1111 2030"), ["4111 1111 1111 1111"]);
    }

    #[test]
    fn ignores_numbers_that_are_not_cards() {
        assert!(cards("order 4111111111111112").is_empty(), "fails Luhn");
        assert!(cards("0000000000000000").is_empty());
        assert!(cards("id4111111111111111").is_empty(), "glued to letters");
        assert!(cards("4111 1111-1111 1111").is_empty(), "mixed separators");
        assert!(cards("call 555 123 4567 or 555 987 6543").is_empty());
        assert!(cards("41111 11111 11111 1").is_empty(), "not card grouping");
    }

    #[test]
    fn ssns_need_shape_and_valid_ranges() {
        let find = |t: &str| {
            let mut out = Vec::new();
            find_ssns(t, &digit_runs(t.as_bytes()), &mut out);
            out.len()
        };
        assert_eq!(find("ssn 078-05-1120"), 1);
        assert_eq!(find("ssn 078 05 1120"), 1);
        assert_eq!(
            find("000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000"),
            0
        );
        assert_eq!(find("078051120"), 0, "bare nine digits are too ambiguous");
        assert_eq!(find("2024-05-1120"), 0);
    }
}
