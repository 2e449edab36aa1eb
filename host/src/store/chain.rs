//! The audit log's hash chain: how a record's hash is computed, and how a chain is checked.
//!
//! `hash = SHA-256(prev_hash ‖ canonical JSON of {at, actor, action, subject, detail})`, hex.
//! The canonical JSON sorts object keys and writes no white space, so the hash does not
//! depend on how a backend stores JSON (PostgreSQL's `jsonb` reorders keys). The position
//! (`seq`) is not hashed: order is carried by the links, so a record removed, added or moved
//! shows as a broken link at exactly that place, and an edited record as a hash mismatch.

use sha2::{Digest, Sha256};

use super::AuditRecord;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "";

/// The hash of a record with this content, linked after `prev_hash`.
pub fn record_hash(
    prev_hash: &str,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> String {
    let content = serde_json::json!({
        "action": action,
        "actor": actor,
        "at": at,
        "detail": detail,
        "subject": subject,
    });
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical_json(&content).as_bytes());
    hex::encode(hasher.finalize())
}

/// JSON with object keys sorted (by code point) and no white space.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// What is wrong at one place of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The record's content (or its stored hash) was changed.
    Modified { seq: i64 },
    /// The record is not linked to the one before it, and the next record links past it to
    /// its predecessor: it was put in afterwards.
    Inserted { seq: i64 },
    /// The record does not link to the one before it: records between were removed.
    Deleted { after_seq: i64, before_seq: i64 },
}

/// Walks a chain in `seq` order, one record at a time (so a chain of any length is checked
/// in pages), and collects the breaks.
#[derive(Debug)]
pub struct Walker {
    /// The `seq` and stored hash of the last record seen, and of the one before it.
    last: (i64, String),
    before_last: Option<(i64, String)>,
    /// A record that did not link to its predecessor, with that predecessor: the next
    /// record decides whether it was put in (the next links past it) or records before it
    /// were removed.
    pending: Option<(i64, (i64, String))>,
    pub breaks: Vec<Break>,
    pub records: u64,
}

impl Default for Walker {
    fn default() -> Self {
        Self {
            last: (0, GENESIS.to_string()),
            before_last: None,
            pending: None,
            breaks: Vec::new(),
            records: 0,
        }
    }
}

impl Walker {
    /// Check the next record. A record without `prev_hash` or `hash` counts as modified.
    pub fn next(&mut self, record: &AuditRecord) {
        let (Some(prev_hash), Some(hash)) = (&record.prev_hash, &record.hash) else {
            self.breaks.push(Break::Modified { seq: record.seq });
            return;
        };
        let computed = record_hash(
            prev_hash,
            record.at,
            &record.actor,
            &record.action,
            &record.subject,
            &record.detail,
        );
        if &computed != hash {
            self.breaks.push(Break::Modified { seq: record.seq });
        }
        let mut linked = prev_hash == &self.last.1;
        if let Some((suspect, predecessor)) = self.pending.take() {
            if prev_hash == &predecessor.1 {
                // This record links past the suspect to the suspect's predecessor.
                self.breaks.push(Break::Inserted { seq: suspect });
                linked = true;
            } else {
                self.breaks.push(Break::Deleted {
                    after_seq: predecessor.0,
                    before_seq: suspect,
                });
            }
        } else if !linked {
            match &self.before_last {
                // Links past the last record to the one before it: the last was put in.
                Some((_, before)) if before == prev_hash => {
                    self.breaks.push(Break::Inserted { seq: self.last.0 });
                }
                _ => self.pending = Some((record.seq, self.last.clone())),
            }
        }
        let _ = linked;
        self.before_last = Some(std::mem::replace(
            &mut self.last,
            (record.seq, hash.clone()),
        ));
        self.records += 1;
    }

    /// The end of the chain: a record still in doubt can only have lost its predecessors
    /// (nothing follows that could show it was put in).
    pub fn finish(&mut self) {
        if let Some((suspect, predecessor)) = self.pending.take() {
            self.breaks.push(Break::Deleted {
                after_seq: predecessor.0,
                before_seq: suspect,
            });
        }
    }

    /// The `seq` and stored hash of the last record seen (the head, after `finish`).
    pub fn head(&self) -> (i64, &str) {
        (self.last.0, &self.last.1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let detail = serde_json::json!({ "n": seq, "b": [1, "x"] });
                let hash = record_hash(&prev, seq, "system", "test", "room:1", &detail);
                let record = AuditRecord {
                    id: seq,
                    seq,
                    at: seq,
                    actor: "system".into(),
                    action: "test".into(),
                    subject: "room:1".into(),
                    detail,
                    prev_hash: Some(prev.clone()),
                    hash: Some(hash.clone()),
                };
                prev = hash;
                record
            })
            .collect()
    }

    fn walk(records: &[AuditRecord]) -> Vec<Break> {
        let mut walker = Walker::default();
        for record in records {
            walker.next(record);
        }
        walker.finish();
        walker.breaks
    }

    #[test]
    fn an_intact_chain_has_no_breaks_and_key_order_does_not_matter() {
        assert!(walk(&chain(20)).is_empty());
        let a = serde_json::json!({ "x": 1, "a": { "z": true, "b": null } });
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"b":null,"z":true},"x":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn each_kind_of_tampering_is_told_apart() {
        let mut modified = chain(10);
        modified[4].detail = serde_json::json!({ "n": 999 });
        assert_eq!(walk(&modified), [Break::Modified { seq: 5 }]);

        let mut deleted = chain(10);
        deleted.remove(4);
        assert_eq!(
            walk(&deleted),
            [Break::Deleted {
                after_seq: 4,
                before_seq: 6
            }]
        );

        // Put in with a correct link to its predecessor (the forger knows the hash rule).
        let mut inserted = chain(10);
        let prev = inserted[4].hash.clone().unwrap();
        let detail = serde_json::json!({ "forged": true });
        let hash = record_hash(&prev, 0, "user:1", "user.create", "user:9", &detail);
        let mut forged = inserted[4].clone();
        forged.seq = 50;
        forged.detail = detail;
        forged.actor = "user:1".into();
        forged.action = "user.create".into();
        forged.subject = "user:9".into();
        forged.at = 0;
        forged.prev_hash = Some(prev);
        forged.hash = Some(hash);
        inserted.insert(5, forged.clone());
        assert_eq!(walk(&inserted), [Break::Inserted { seq: 50 }]);

        // Put in carelessly, linked to nothing.
        let mut sloppy = chain(10);
        forged.prev_hash = Some("f00".into());
        forged.hash = Some(record_hash(
            "f00",
            0,
            "user:1",
            "user.create",
            "user:9",
            &forged.detail,
        ));
        sloppy.insert(5, forged);
        assert_eq!(walk(&sloppy), [Break::Inserted { seq: 50 }]);

        // The end cut off shows only against a checkpoint; the walk itself is clean.
        let mut truncated = chain(10);
        truncated.truncate(7);
        assert!(walk(&truncated).is_empty());
    }
}
