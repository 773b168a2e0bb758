//! Meta's acceptance rules for a CAPI request, on its JSON form.
//!
//! The Worker checks each event before sending (so one bad event never sinks a batch) and the
//! local sandbox applies the same function to what it receives, answering like Meta does.

use crate::fbc::{fbc_click_id, is_valid_fbp};
use crate::hash::is_sha256_hex;
use crate::normalize::Field;
use crate::{MAX_EVENTS_PER_REQUEST, MAX_EVENT_AGE_SECS};
use serde_json::Value;

/// Seconds Meta accepts a `physical_store` event after it happened (D-USE, D-OFF: store sales
/// may be uploaded within 62 days).
pub const MAX_PHYSICAL_STORE_EVENT_AGE_SECS: i64 = 62 * 24 * 3600;

/// How old an event of this `action_source` may be when Meta receives it: 62 days for
/// `physical_store`, 7 days for every other source (D-SE, D-OFF).
pub fn max_event_age_secs(action_source: &str) -> i64 {
    if action_source == "physical_store" {
        MAX_PHYSICAL_STORE_EVENT_AGE_SECS
    } else {
        MAX_EVENT_AGE_SECS
    }
}

/// Whether Meta still takes an event of `action_source` that happened at `event_time`.
pub fn is_within_window(action_source: &str, event_time: i64, now_secs: i64) -> bool {
    event_time >= now_secs - max_event_age_secs(action_source)
}

/// Meta's `action_source` values (D-SE).
pub const ACTION_SOURCES: &[&str] = &[
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];

/// A rule Meta would enforce, broken. Shaped after Graph's error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Graph error code: 190 (token), 100 (invalid parameter).
    pub code: u32,
    /// Graph error subcode, where Meta documents one.
    pub subcode: Option<u32>,
    /// Stable name of the rule, for counting.
    pub rule: &'static str,
    /// Human-readable detail; names fields and event indices, never values.
    pub message: String,
}

impl Violation {
    fn param(rule: &'static str, message: String) -> Violation {
        Violation {
            code: 100,
            subcode: None,
            rule,
            message,
        }
    }
}

/// Checks a whole request body (`data`, token) as Meta would: any bad event fails it all.
pub fn check_request(
    body: &Value,
    access_token: Option<&str>,
    now_secs: i64,
) -> Result<usize, Violation> {
    if access_token.is_none_or(|t| t.trim().is_empty()) {
        return Err(Violation {
            code: 190,
            subcode: None,
            rule: "access_token_missing",
            message: "An access token is required to request this resource.".into(),
        });
    }
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| Violation::param("data_missing", "The parameter data is required".into()))?;
    if data.is_empty() || data.len() > MAX_EVENTS_PER_REQUEST {
        return Err(Violation::param(
            "batch_size",
            format!(
                "data must hold 1 to {MAX_EVENTS_PER_REQUEST} events, got {}",
                data.len()
            ),
        ));
    }
    for (i, event) in data.iter().enumerate() {
        check_event(event, now_secs).map_err(|mut v| {
            v.message = format!("data[{i}]: {}", v.message);
            v
        })?;
    }
    Ok(data.len())
}

/// Checks one server event against Meta's documented rules.
pub fn check_event(event: &Value, now_secs: i64) -> Result<(), Violation> {
    let str_field = |k: &str| {
        event
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if str_field("event_name").is_none() {
        return Err(Violation::param(
            "event_name_missing",
            "event_name is required".into(),
        ));
    }
    let t = event
        .get("event_time")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            Violation::param(
                "event_time_missing",
                "event_time must be an integer (Unix seconds)".into(),
            )
        })?;
    let source = str_field("action_source").unwrap_or_default();
    if !is_within_window(source, t, now_secs) {
        return Err(Violation {
            code: 100,
            subcode: Some(2804003),
            rule: "event_time_too_old",
            message: format!(
                "event_time is more than {} days in the past",
                max_event_age_secs(source) / 86_400
            ),
        });
    }
    if t > now_secs + 60 {
        return Err(Violation::param(
            "event_time_in_future",
            "event_time is in the future".into(),
        ));
    }
    let action_source = str_field("action_source").ok_or_else(|| {
        Violation::param("action_source_missing", "action_source is required".into())
    })?;
    if !ACTION_SOURCES.contains(&action_source) {
        return Err(Violation::param(
            "action_source_invalid",
            "action_source is not one of Meta's values".into(),
        ));
    }
    let user_data = event
        .get("user_data")
        .and_then(Value::as_object)
        .filter(|u| !u.is_empty());
    let user_data = user_data.ok_or_else(|| {
        Violation::param(
            "user_data_missing",
            "user_data must have at least one parameter".into(),
        )
    })?;
    if action_source == "website" {
        if str_field("event_source_url").is_none() {
            return Err(Violation::param(
                "event_source_url_missing",
                "website events require event_source_url".into(),
            ));
        }
        if user_data
            .get("client_user_agent")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Violation::param(
                "client_user_agent_missing",
                "website events require user_data.client_user_agent".into(),
            ));
        }
    }
    for field in Field::ALL {
        let Some(v) = user_data.get(field.key()) else {
            continue;
        };
        let values: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        if !values
            .iter()
            .all(|v| v.as_str().is_some_and(is_hashed_value))
        {
            return Err(Violation::param(
                "unhashed_user_data",
                format!(
                    "user_data.{} must be SHA-256 hashed (64 lowercase hex)",
                    field.key()
                ),
            ));
        }
    }
    if let Some(fbc) = user_data.get("fbc") {
        if fbc.as_str().and_then(fbc_click_id).is_none() {
            return Err(Violation {
                code: 100,
                subcode: Some(2804001),
                rule: "fbc_malformed",
                message: "user_data.fbc is incorrectly formatted".into(),
            });
        }
    }
    if let Some(fbp) = user_data.get("fbp") {
        if !fbp.as_str().is_some_and(is_valid_fbp) {
            return Err(Violation::param(
                "fbp_malformed",
                "user_data.fbp is incorrectly formatted".into(),
            ));
        }
    }
    if let Some(ip) = user_data.get("client_ip_address") {
        if ip
            .as_str()
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            .is_none()
        {
            return Err(Violation::param(
                "client_ip_invalid",
                "user_data.client_ip_address is not an IP address".into(),
            ));
        }
    }
    if only_weak_keys(user_data.keys().map(String::as_str)) {
        return Err(Violation::param(
            "weak_user_data",
            "user_data has only keys that cannot match on their own".into(),
        ));
    }
    let cd = event.get("custom_data");
    // Meta (since April 2026): every `contents` item names its product by `id`.
    if let Some(contents) = cd.and_then(|c| c.get("contents")) {
        let message = match contents.as_array() {
            Some(items) => items
                .iter()
                .position(|item| !has_content_id(item))
                .map(|i| format!("custom_data.contents[{i}] has no id")),
            None => Some("custom_data.contents must be a list of items with an id".into()),
        };
        if let Some(message) = message {
            return Err(Violation::param("contents_item_missing_id", message));
        }
    }
    if str_field("event_name") == Some("Purchase") {
        let value_ok = cd
            .and_then(|c| c.get("value"))
            .is_some_and(Value::is_number);
        let currency_ok = cd
            .and_then(|c| c.get("currency"))
            .and_then(Value::as_str)
            .is_some_and(|c| c.len() == 3);
        if !value_ok || !currency_ok {
            return Err(Violation::param(
                "purchase_value_currency",
                "Purchase events require custom_data.value and custom_data.currency".into(),
            ));
        }
    }
    Ok(())
}

/// A `contents` item with a non-empty `id` (a string or a number).
fn has_content_id(item: &Value) -> bool {
    match item.get("id") {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    }
}

/// A hashed user_data value: 64 lowercase hex, or a Parameter Builder `<hex>.<appendix>`.
fn is_hashed_value(s: &str) -> bool {
    match s.split_once('.') {
        None => is_sha256_hex(s),
        Some((h, appendix)) => is_sha256_hex(h) && (2..=8).contains(&appendix.len()),
    }
}

/// Meta v13 baseline (D-BP): user_data made only of a subset of one of these sets is rejected.
pub fn only_weak_keys<'a>(keys: impl Iterator<Item = &'a str>) -> bool {
    const WEAK_SETS: &[&[&str]] = &[
        &["ct", "country", "st", "zp", "ge", "client_user_agent"],
        &["db", "client_user_agent"],
        &["fn", "ge"],
        &["ln", "ge"],
    ];
    let keys: Vec<&str> = keys.collect();
    WEAK_SETS
        .iter()
        .any(|set| keys.iter().all(|k| set.contains(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_763_000_000;

    fn ok_event() -> Value {
        json!({"event_name": "Purchase", "event_time": NOW - 10, "event_id": "purchase:1", "action_source": "website",
               "event_source_url": "https://s.example/thanks",
               "user_data": {"client_user_agent": "Mozilla/5.0", "client_ip_address": "192.0.2.1", "em": crate::hash::sha256_hex("a@b.co")},
               "custom_data": {"value": 10.5, "currency": "EUR"}})
    }

    #[test]
    fn a_good_event_passes() {
        assert_eq!(check_event(&ok_event(), NOW), Ok(()));
        assert_eq!(
            check_request(&json!({"data": [ok_event()]}), Some("tok"), NOW),
            Ok(1)
        );
    }

    #[test]
    fn each_rule_is_enforced() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "event_time_too_old",
                Box::new(|e| e["event_time"] = json!(NOW - 8 * 86400)),
            ),
            (
                "event_time_in_future",
                Box::new(|e| e["event_time"] = json!(NOW + 3600)),
            ),
            (
                "unhashed_user_data",
                Box::new(|e| e["user_data"]["em"] = json!("a@b.co")),
            ),
            (
                "client_user_agent_missing",
                Box::new(|e| e["user_data"]["client_user_agent"] = json!("")),
            ),
            (
                "event_source_url_missing",
                Box::new(|e| e["event_source_url"] = Value::Null),
            ),
            (
                "purchase_value_currency",
                Box::new(|e| e["custom_data"] = json!({})),
            ),
            (
                "fbc_malformed",
                Box::new(|e| e["user_data"]["fbc"] = json!("fb.1.123")),
            ),
            (
                "action_source_invalid",
                Box::new(|e| e["action_source"] = json!("web")),
            ),
            (
                "contents_item_missing_id",
                Box::new(|e| {
                    e["custom_data"]["contents"] =
                        json!([{"id": "sku-1", "quantity": 1}, {"quantity": 2}])
                }),
            ),
            (
                "contents_item_missing_id",
                Box::new(|e| e["custom_data"]["contents"] = json!([{"id": " "}])),
            ),
            (
                "contents_item_missing_id",
                Box::new(|e| e["custom_data"]["contents"] = json!("sku-1")),
            ),
            (
                "weak_user_data",
                Box::new(|e| {
                    e["user_data"] =
                        json!({"client_user_agent": "UA", "ct": crate::hash::sha256_hex("x")})
                }),
            ),
        ];
        for (rule, mutate) in cases {
            let mut e = ok_event();
            mutate(&mut e);
            assert_eq!(check_event(&e, NOW).map_err(|v| v.rule), Err(rule));
        }
    }

    #[test]
    fn contents_items_need_an_id() {
        let mut e = ok_event();
        e["custom_data"]["contents"] = json!([{"id": "sku-1", "quantity": 2}, {"id": 42}]);
        assert_eq!(check_event(&e, NOW), Ok(()));
        e["custom_data"]["contents"] = json!([{"id": "sku-1"}, {"quantity": 2}]);
        let v = check_event(&e, NOW).err();
        assert_eq!(v.as_ref().map(|v| v.rule), Some("contents_item_missing_id"));
        assert_eq!(
            v.map(|v| v.message),
            Some("custom_data.contents[1] has no id".into())
        );
    }

    #[test]
    fn physical_store_events_may_be_62_days_old_others_7() {
        let day = 86_400;
        assert_eq!(max_event_age_secs("physical_store"), 62 * day);
        for source in [
            "website",
            "phone_call",
            "system_generated",
            "email",
            "other",
            "",
        ] {
            assert_eq!(max_event_age_secs(source), 7 * day, "{source}");
        }
        assert!(is_within_window("physical_store", NOW - 62 * day, NOW));
        assert!(!is_within_window("physical_store", NOW - 62 * day - 1, NOW));
        assert!(is_within_window("phone_call", NOW - 7 * day, NOW));
        assert!(!is_within_window("phone_call", NOW - 7 * day - 1, NOW));

        let mut store = ok_event();
        store["action_source"] = json!("physical_store");
        store["event_time"] = json!(NOW - 30 * day);
        assert_eq!(check_event(&store, NOW), Ok(()));
        store["event_time"] = json!(NOW - 63 * day);
        let v = check_event(&store, NOW).err();
        assert_eq!(v.as_ref().map(|v| v.rule), Some("event_time_too_old"));
        assert_eq!(
            v.map(|v| v.message),
            Some("event_time is more than 62 days in the past".into())
        );
        let mut call = ok_event();
        call["action_source"] = json!("phone_call");
        call["event_time"] = json!(NOW - 8 * day);
        assert_eq!(
            check_event(&call, NOW).map_err(|v| v.rule),
            Err("event_time_too_old")
        );
    }

    #[test]
    fn requests_need_a_token_and_a_sane_batch() {
        assert_eq!(
            check_request(&json!({"data": [ok_event()]}), None, NOW).map_err(|v| v.code),
            Err(190)
        );
        assert_eq!(
            check_request(&json!({"data": []}), Some("t"), NOW).map_err(|v| v.rule),
            Err("batch_size")
        );
        let many = Value::Array(vec![ok_event(); 1001]);
        assert_eq!(
            check_request(&json!({ "data": many }), Some("t"), NOW).map_err(|v| v.rule),
            Err("batch_size")
        );
    }
}
