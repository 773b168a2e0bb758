//! Meta's acceptance rules for a CAPI request, on its JSON form.
//!
//! The Worker checks each event before sending (so one bad event never sinks a batch) and the
//! local sandbox applies the same function to what it receives, answering like Meta does.

use crate::fbc::{fbc_click_id, is_valid_fbp};
use crate::hash::is_sha256_hex;
use crate::normalize::Field;
use crate::{MAX_EVENTS_PER_REQUEST, MAX_EVENT_AGE_SECS};
use serde_json::Value;

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
    if t < now_secs - MAX_EVENT_AGE_SECS {
        return Err(Violation {
            code: 100,
            subcode: Some(2804003),
            rule: "event_time_too_old",
            message: "event_time is more than 7 days in the past".into(),
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
    if str_field("event_name") == Some("Purchase") {
        let cd = event.get("custom_data");
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
