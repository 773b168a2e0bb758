//! The beacon wire format: what the pixel shim posts to `/t/e`.
//!
//! ```json
//! {"event_name": "AddToCart", "event_id": "0190c3a4-…", "event_source_url": "https://shop…/p/1",
//!  "referrer_url": "…", "event_time_ms": 1732345678901, "fbp": "fb.1.…", "fbc": "fb.1.…",
//!  "custom_data": {"value": 19.9, "currency": "EUR", "content_ids": ["sku-1"]},
//!  "user_data": {"em": "jane@example.com"}}
//! ```
//! Parsed by hand from `serde_json::Value` so that no error message can echo a value.

use crate::error::{Error, Result};
use crate::privacy::{gpc_flag, Consent};
use serde_json::{Map, Value};

/// Largest beacon body the Worker reads.
pub const MAX_BEACON_BYTES: usize = 64 * 1024;

/// The deepest `custom_data` a beacon may carry, the object itself counting one level (Meta's
/// deepest, an item of `contents`, is at 3). serde_json reads at most 128 levels, and a queue
/// message holds the event a few levels deeper than the beacon did: a beacon nested close to
/// that limit would be read here and then make the whole pooled message, other visitors'
/// events with it, unreadable to the consumer.
pub const MAX_CUSTOM_DATA_DEPTH: usize = 8;

/// A parsed beacon; nothing here is trusted or normalized yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Beacon {
    pub event_name: String,
    pub event_id: String,
    pub event_source_url: String,
    pub referrer_url: Option<String>,
    pub event_time_ms: Option<u64>,
    pub fbp: Option<String>,
    pub fbc: Option<String>,
    pub custom_data: Map<String, Value>,
    /// Raw customer fields by Meta key (`em`, `ph`, …), hashed by `website::website_event`.
    pub user_data: Map<String, Value>,
    /// The visitor's marketing consent as the page stated it (`"consent": "granted"|"denied"`).
    pub consent: Consent,
    /// `navigator.globalPrivacyControl` as the page saw it (`"gpc": true`).
    pub gpc: bool,
    /// The browser session's Events Manager test code (`?capi_test=CODE`), unvalidated.
    pub test_event_code: Option<String>,
}

impl Beacon {
    /// Parses a beacon body (JSON, possibly sent as `text/plain` by `sendBeacon`).
    pub fn parse(body: &[u8]) -> Result<Beacon> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Error::MalformedJson(syntax_only(&e)))?;
        let Value::Object(mut obj) = value else {
            return Err(Error::NotAnObject);
        };
        let event_name = required_str(&mut obj, "event_name")?;
        if event_name.chars().count() > 50
            || !event_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ' ')
        {
            return Err(Error::InvalidField {
                field: "event_name",
                why: "must be 1-50 letters, digits, spaces, `_` or `-`",
            });
        }
        let event_id = required_str(&mut obj, "event_id")?;
        if event_id.len() > 128 || !event_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidField {
                field: "event_id",
                why: "must be 1-128 printable ASCII characters",
            });
        }
        let event_source_url = required_str(&mut obj, "event_source_url")?;
        if !is_http_url(&event_source_url) {
            return Err(Error::InvalidField {
                field: "event_source_url",
                why: "must be an absolute http(s) URL of at most 2048 characters",
            });
        }
        let referrer_url = optional_str(&mut obj, "referrer_url")?.filter(|r| is_http_url(r));
        let event_time_ms = match obj.remove("event_time_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or(Error::InvalidField {
                field: "event_time_ms",
                why: "must be a non-negative integer (Unix milliseconds)",
            })?),
        };
        let fbp = optional_str(&mut obj, "fbp")?;
        let fbc = optional_str(&mut obj, "fbc")?;
        let custom_data = optional_object(&mut obj, "custom_data")?;
        if custom_data.values().map(depth).max().unwrap_or(0) >= MAX_CUSTOM_DATA_DEPTH {
            return Err(Error::InvalidField {
                field: "custom_data",
                why: "must nest at most 8 levels of objects and arrays",
            });
        }
        let user_data = optional_object(&mut obj, "user_data")?;
        let consent = Consent::from_json(obj.get("consent"));
        let gpc = gpc_flag(obj.get("gpc"));
        let test_event_code = optional_str(&mut obj, "test_event_code").unwrap_or(None);
        Ok(Beacon {
            event_name,
            event_id,
            event_source_url,
            referrer_url,
            event_time_ms,
            fbp,
            fbc,
            custom_data,
            user_data,
            consent,
            gpc,
            test_event_code,
        })
    }
}

/// How many levels of arrays and objects `v` is (0 for a string, number, bool or null). At most
/// 128 levels: serde_json refuses deeper input.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// serde_json's message without anything quoted from the input.
fn syntax_only(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
    .to_lowercase()
}

/// An absolute http(s) URL as browsers send it (RFC 3986: no spaces or control characters;
/// `location.href` is already percent-encoded), at most 2048 characters.
fn is_http_url(s: &str) -> bool {
    s.len() <= 2048
        && (s.starts_with("https://") || s.starts_with("http://"))
        && s.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80)
        && crate::origin::origin_of(s).is_some()
}

fn required_str(obj: &mut Map<String, Value>, field: &'static str) -> Result<String> {
    optional_str(obj, field)?.ok_or(Error::MissingField(field))
}

fn optional_str(obj: &mut Map<String, Value>, field: &'static str) -> Result<Option<String>> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(Error::InvalidField {
            field,
            why: "must be a string",
        }),
    }
}

fn optional_object(
    obj: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Map<String, Value>> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(Error::InvalidField {
            field,
            why: "must be an object",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str =
        r#"{"event_name":"AddToCart","event_id":"e1","event_source_url":"https://s.example/p"}"#;

    #[test]
    fn a_minimal_beacon_parses() {
        let b = Beacon::parse(OK.as_bytes()).expect("valid");
        assert_eq!(
            (b.event_name.as_str(), b.event_id.as_str()),
            ("AddToCart", "e1")
        );
    }

    #[test]
    fn custom_data_nests_at_most_eight_levels() {
        // `levels` levels in all, the custom_data object itself the first.
        let with_depth = |levels: usize| {
            let inner = format!("{}1{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
            format!(
                r#"{{"event_name":"AddToCart","event_id":"e1","event_source_url":"https://s.example/p","custom_data":{{"a":{inner}}}}}"#
            )
        };
        let contents = r#"{"event_name":"Purchase","event_id":"e1","event_source_url":"https://s.example/p","custom_data":{"contents":[{"id":"a","quantity":1}]}}"#;
        assert!(Beacon::parse(contents.as_bytes()).is_ok());
        assert!(Beacon::parse(with_depth(MAX_CUSTOM_DATA_DEPTH).as_bytes()).is_ok());
        for levels in [MAX_CUSTOM_DATA_DEPTH + 1, 126] {
            match Beacon::parse(with_depth(levels).as_bytes()) {
                Err(Error::InvalidField { field, .. }) => assert_eq!(field, "custom_data"),
                other => panic!("{levels} levels: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_beacons_say_what_is_wrong_without_echoing_values() {
        let cases = [
            ("{not json", "malformed_json"),
            ("[1]", "not_an_object"),
            (
                r#"{"event_id":"e1","event_source_url":"https://s.example/"}"#,
                "missing_field",
            ),
            (
                r#"{"event_name":"jane@example.com","event_id":"e","event_source_url":"https://s.example/"}"#,
                "invalid_field",
            ),
            (
                r#"{"event_name":"A","event_id":"e","event_source_url":"javascript:alert(1)"}"#,
                "invalid_field",
            ),
            (
                r#"{"event_name":"A","event_id":"e","event_source_url":"https://s.example/","custom_data":[1]}"#,
                "invalid_field",
            ),
            (
                "{\"event_name\":\"A\",\"event_id\":\"e\",\"event_source_url\":\"https://s.example/a b\\r\\nX: 1\"}",
                "invalid_field",
            ),
        ];
        for (body, code) in cases {
            let err = Beacon::parse(body.as_bytes()).expect_err(body);
            assert_eq!(err.code(), code, "{body}");
            assert!(!err.to_string().contains("jane"), "{err}");
        }
    }
}
