//! Property-driven fuzzing of the two parsers every client byte goes through: the JSON
//! extractor behind `AppJson` and the WebSocket frame parser ([`parse_json`] of a
//! [`ClientFrame`]). Each run tries a few thousand generated inputs: arbitrary bytes,
//! arbitrary JSON, and frames that are almost right (every field, with hostile values).
//! A longer run: `PROPTEST_CASES=200000 cargo test -p switchboard input_fuzz`.
//!
//! The properties: nothing panics; every refusal is a `400` with a code from the documented
//! set and a message; and the NUL rule agrees with an oracle (a full parse).

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::Value;

use super::{has_escaped_nul, parse_json};
use crate::protocol::ClientFrame;

/// The codes a parse failure may carry.
const PARSE_CODES: [&str; 4] = [
    "invalid_utf8",
    "malformed_json",
    "invalid_body",
    "invalid_text",
];

fn assert_refusal_is_clean(err: &crate::error::ApiError) {
    assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST, "{err:?}");
    assert!(PARSE_CODES.contains(&err.code()), "{err:?}");
    assert!(!err.body().message.is_empty());
}

/// Strings an attacker would try: NUL and other controls, escapes, bidi and zero-width
/// characters, astral characters, long runs.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(String::new()),
        Just("\0".to_string()),
        Just("a\u{0}b".to_string()),
        Just("\\u0000".to_string()),
        Just("\u{202e}\u{200b}\u{feff}".to_string()),
        Just("😀".repeat(50)),
        "[a-z\\\\\"\u{0}-\u{1f}]{0,40}",
        (1usize..5000).prop_map(|n| "x".repeat(n)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(serde_json::json!(u64::MAX)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame object with a real `type` and the protocol's field names, each with a value
/// that may or may not have the right type.
fn almost_a_frame() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just("send"),
        Just("edit"),
        Just("delete"),
        Just("read"),
        Just("typing"),
        Just("sync"),
        Just("ping"),
        Just("nonsense"),
    ];
    let field = prop_oneof![
        Just("req"),
        Just("room"),
        Just("client_msg_id"),
        Just("body"),
        Just("metadata"),
        Just("message"),
        Just("seq"),
        Just("active"),
        Just("rooms"),
        Just("extra"),
    ];
    (kind, prop::collection::btree_map(field, json_value(), 0..6)).prop_map(|(kind, fields)| {
        let mut object: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        object.insert("type".into(), Value::String(kind.into()));
        Value::Object(object)
    })
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(err) = parse_json::<ClientFrame>(&bytes) {
            assert_refusal_is_clean(&err);
        }
        if let Err(err) = parse_json::<Value>(&bytes) {
            assert_refusal_is_clean(&err);
        }
    }

    #[test]
    fn almost_right_frames_parse_or_are_refused_cleanly(frame in almost_a_frame()) {
        let text = serde_json::to_vec(&frame).unwrap();
        match parse_json::<ClientFrame>(&text) {
            Ok(parsed) => prop_assert!(!contains_nul(&frame), "NUL got through: {parsed:?}"),
            Err(err) => assert_refusal_is_clean(&err),
        }
    }

    #[test]
    fn mutated_frames_never_panic(frame in almost_a_frame(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut text = serde_json::to_vec(&frame).unwrap();
        let at = cut.index(text.len() + 1);
        text.insert(at.min(text.len()), byte);
        if let Err(err) = parse_json::<ClientFrame>(&text) {
            assert_refusal_is_clean(&err);
        }
        text.truncate(at);
        if let Err(err) = parse_json::<ClientFrame>(&text) {
            assert_refusal_is_clean(&err);
        }
    }

    /// The NUL rule is exact: a JSON text is refused for NUL if and only if some string in
    /// it (key or value) holds one, however the backslashes around it fall.
    #[test]
    fn the_nul_rule_agrees_with_a_full_parse(value in json_value()) {
        let text = serde_json::to_vec(&value).unwrap();
        prop_assert_eq!(has_escaped_nul(&text), contains_nul(&value));
    }
}
