//! Known-answer vectors for normalization + hashing, read from `tests/data/normalization.json`.
//! Each case names its source (Meta's docs example with its published hash, or a known pitfall).

use capi_core::hash::sha256_hex;
use capi_core::normalize::{hashed, normalized, Field, Normalized};
use serde_json::Value;

#[test]
fn every_vector_normalizes_and_hashes_as_published() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/normalization.json"
    ))
    .expect("vectors file");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("vectors are JSON");
    assert!(cases.len() >= 30);
    for case in &cases {
        let s = |k: &str| case.get(k).and_then(Value::as_str);
        let field = Field::from_key(s("field").expect("field")).expect("known field");
        let input = s("input").expect("input");
        let got = normalized(field, input, s("country"));
        let label = s("source").unwrap_or_default();
        if case.get("dropped").is_some() {
            assert!(got.is_err(), "{label}: expected a drop, got {got:?}");
            continue;
        }
        match (s("normalized"), got) {
            (Some(want), Ok(Normalized::Plain(n))) => assert_eq!(n, want, "{label}"),
            (None, Ok(Normalized::PreHashed(_))) => {}
            (want, got) => panic!("{label}: wanted {want:?}, got {got:?}"),
        }
        let want_hash = s("sha256").expect("sha256");
        assert_eq!(
            hashed(field, input, s("country")).as_deref(),
            Ok(want_hash),
            "{label}"
        );
        if let Some(n) = s("normalized") {
            assert_eq!(
                sha256_hex(n),
                want_hash,
                "{label}: vector hash disagrees with its own normalized value"
            );
        }
    }
}

/// The match-quality estimate's known answers (`tests/data/match_quality.json`).
#[test]
fn match_quality_estimates_follow_the_published_priorities() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/match_quality.json"
    ))
    .expect("vectors");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
    for c in &cases {
        let name = c["name"].as_str().unwrap_or_default();
        let e = capi_core::quality::estimate_event(c["user_data"].as_object().expect("object"));
        assert_eq!(e.score, c["score"].as_f64().expect("score"), "{name}");
        assert_eq!(e.rating, c["rating"].as_str().expect("rating"), "{name}");
        let list = |k: &str| -> Vec<String> {
            c.get(k)
                .and_then(serde_json::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(e.missing, list("missing"), "{name}");
        assert_eq!(e.invalid, list("invalid"), "{name}");
    }
}
