//! International bank account numbers: country code, check digits, and the ISO 13616
//! mod-97 check over the whole number; the length must match the country's.

use crate::{Detector, Finding};

/// IBAN length per country (ISO 13616 registry, common entries).
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VG", 24),
    ("XK", 20),
];

fn country_length(code: &[u8]) -> Option<usize> {
    LENGTHS
        .iter()
        .find(|(c, _)| c.as_bytes() == code)
        .map(|&(_, n)| n)
}

/// The mod-97 check: move the first four characters to the end, read letters as 10..35,
/// and the number must leave remainder 1.
pub fn mod97_valid(iban: &[u8]) -> bool {
    let rotated = iban[4..].iter().chain(&iban[..4]);
    let mut rem: u32 = 0;
    for &c in rotated {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else if c.is_ascii_uppercase() {
            let v = u32::from(c - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        } else {
            return false;
        }
    }
    rem == 1
}

pub(crate) fn find_ibans(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i + 4 <= b.len() {
        let starts = b[i].is_ascii_uppercase()
            && b[i + 1].is_ascii_uppercase()
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit()
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        let Some(len) = starts.then(|| country_length(&b[i..i + 2])).flatten() else {
            i += 1;
            continue;
        };
        // Collect `len` alphanumerics, allowing single spaces between groups (the printed
        // form is groups of four).
        let mut compact = Vec::with_capacity(len);
        let mut j = i;
        while j < b.len() && compact.len() < len {
            if b[j].is_ascii_alphanumeric() {
                compact.push(b[j]);
                j += 1;
            } else if b[j] == b' '
                && j + 1 < b.len()
                && b[j + 1].is_ascii_alphanumeric()
                && compact.len() % 4 == 0
            {
                j += 1;
            } else {
                break;
            }
        }
        let bounded = j >= b.len() || !b[j].is_ascii_alphanumeric();
        if compact.len() == len && bounded && mod97_valid(&compact) {
            out.push(Finding {
                detector: Detector::Iban,
                start: i,
                end: j,
            });
            i = j;
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find_ibans(text, &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn finds_compact_and_grouped_ibans() {
        assert_eq!(
            find("to DE89370400440532013000 ok"),
            ["DE89370400440532013000"]
        );
        assert_eq!(
            find("GB82 WEST 1234 5698 7654 32."),
            ["GB82 WEST 1234 5698 7654 32"]
        );
    }

    #[test]
    fn rejects_bad_checksums_lengths_and_unknown_countries() {
        assert!(find("DE89370400440532013001").is_empty());
        assert!(find("DE8937040044053201300").is_empty());
        assert!(find("ZZ89370400440532013000").is_empty());
        assert!(find("XDE89370400440532013000").is_empty());
    }
}
