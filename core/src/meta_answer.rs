//! What Meta's answer to a CAPI request means for delivery (D-ERR, D-RL; meta-capi.md §7).

use serde_json::Value;

/// Meta's answer, reduced to what delivery must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaAnswer {
    /// 2xx: Meta took the events.
    Accepted {
        events_received: u64,
        fbtrace_id: Option<String>,
    },
    /// Worth retrying later with backoff: 5xx, rate limits, `is_transient`, timeouts.
    Transient {
        code: Option<i64>,
        fbtrace_id: Option<String>,
    },
    /// The token or its permissions are wrong: keep the events, retry slowly, alert.
    Unauthorized {
        code: i64,
        fbtrace_id: Option<String>,
    },
    /// The request itself is invalid (e.g. code 100): retrying unchanged cannot help.
    Rejected {
        code: i64,
        subcode: Option<i64>,
        fbtrace_id: Option<String>,
    },
}

impl MetaAnswer {
    /// The stable reason recorded in receipts and counters (`None` when Meta accepted).
    pub fn reason(&self) -> Option<String> {
        match self {
            MetaAnswer::Accepted { .. } => None,
            MetaAnswer::Transient { code: Some(c), .. } => Some(format!("transient_code_{c}")),
            MetaAnswer::Transient { code: None, .. } => Some("transient".into()),
            MetaAnswer::Unauthorized { code, .. } => Some(format!("unauthorized_code_{code}")),
            MetaAnswer::Rejected { code, subcode, .. } => {
                Some(format!("meta_code_{code}_subcode_{}", subcode.unwrap_or(0)))
            }
        }
    }

    /// Meta's `fbtrace_id`, when the answer carried one.
    pub fn fbtrace_id(&self) -> Option<String> {
        match self {
            MetaAnswer::Accepted { fbtrace_id, .. }
            | MetaAnswer::Transient { fbtrace_id, .. }
            | MetaAnswer::Unauthorized { fbtrace_id, .. }
            | MetaAnswer::Rejected { fbtrace_id, .. } => fbtrace_id.clone(),
        }
    }
}

/// Graph codes that mean "try again later" (D-ERR, D-RL).
const TRANSIENT_CODES: &[i64] = &[1, 2, 4, 17, 32, 341, 368, 613];

/// Classifies Meta's HTTP status and body. Meta's message text is deliberately not kept: it
/// is never shown to a browser and may quote what was sent.
pub fn meta_answer(status: u16, body: &str) -> MetaAnswer {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let trace = |v: &Value| {
        v.get("fbtrace_id")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if (200..300).contains(&status) {
        let events_received = json
            .get("events_received")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        return MetaAnswer::Accepted {
            events_received,
            fbtrace_id: trace(&json),
        };
    }
    let err = json.get("error").cloned().unwrap_or(Value::Null);
    let code = err.get("code").and_then(Value::as_i64);
    let subcode = err.get("error_subcode").and_then(Value::as_i64);
    let fbtrace_id = trace(&err);
    let transient = err.get("is_transient").and_then(Value::as_bool) == Some(true);
    match code {
        _ if transient || status >= 500 || status == 429 => {
            MetaAnswer::Transient { code, fbtrace_id }
        }
        Some(c) if TRANSIENT_CODES.contains(&c) => MetaAnswer::Transient { code, fbtrace_id },
        Some(c @ (190 | 10 | 200..=299)) => MetaAnswer::Unauthorized {
            code: c,
            fbtrace_id,
        },
        Some(c) => MetaAnswer::Rejected {
            code: c,
            subcode,
            fbtrace_id,
        },
        None if status == 401 || status == 403 => MetaAnswer::Unauthorized {
            code: 190,
            fbtrace_id,
        },
        None => MetaAnswer::Transient {
            code: None,
            fbtrace_id,
        },
    }
}

/// The event a rejected request's answer blames, by its index in `data`: Meta names it as
/// `data[3]` (as the sandbox does) in the error's `error_user_msg`, `message`, `error_user_title`
/// or `error_data`. `None` when the answer names no event: the caller must then split the batch
/// to find it (Meta rejects the whole request for one bad event, D-USE).
pub fn rejected_event_index(body: &str) -> Option<usize> {
    let json: Value = serde_json::from_str(body).ok()?;
    let err = json.get("error")?;
    [
        "error_user_msg",
        "message",
        "error_user_title",
        "error_data",
    ]
    .iter()
    .filter_map(|k| err.get(*k))
    .map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
    .find_map(|text| data_index(&text))
}

/// The first `data[N]` in `text`.
fn data_index(text: &str) -> Option<usize> {
    text.match_indices("data[").find_map(|(at, m)| {
        let rest = &text[at + m.len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        rest[digits..]
            .starts_with(']')
            .then(|| rest[..digits].parse().ok())
            .flatten()
    })
}

/// Meta's own words for a rejection, for the person who sent the request (`capi-edge send`'s
/// summary): `error_user_title: error_user_msg`, else `message`, without the `data[N]: ` that
/// names the event, at most 200 characters. Only shown where every value sent was hashed, so
/// what Meta quotes back holds no contact data; the Worker never shows it.
pub fn rejection_text(body: &str) -> Option<String> {
    let json: Value = serde_json::from_str(body).ok()?;
    let err = json.get("error")?;
    let field = |k: &str| {
        err.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let text = match (field("error_user_title"), field("error_user_msg")) {
        (Some(title), Some(msg)) => format!("{title}: {}", without_index(msg)),
        (None, Some(msg)) => without_index(msg).to_string(),
        (Some(title), None) => title.to_string(),
        (None, None) => field("message")?.to_string(),
    };
    Some(text.chars().take(200).collect())
}

/// `text` without a leading `data[N]: `.
fn without_index(text: &str) -> &str {
    text.strip_prefix("data[")
        .and_then(|rest| rest.split_once("]: "))
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(text, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_names_its_event_by_index() {
        let sandbox = r#"{"error":{"message":"Invalid parameter","type":"OAuthException","code":100,"error_user_title":"event_time_too_old","error_user_msg":"data[17]: event_time is more than 7 days in the past","fbtrace_id":"x"}}"#;
        assert_eq!(rejected_event_index(sandbox), Some(17));
        assert_eq!(
            rejection_text(sandbox).as_deref(),
            Some("event_time_too_old: event_time is more than 7 days in the past")
        );
        let in_data = r#"{"error":{"code":100,"message":"Invalid parameter","error_data":{"blame_field_specs":[["data[3]","event_time"]]}}}"#;
        assert_eq!(rejected_event_index(in_data), Some(3));
        assert_eq!(
            rejection_text(in_data).as_deref(),
            Some("Invalid parameter")
        );
        for none in [
            r#"{"error":{"code":100,"message":"Invalid parameter"}}"#,
            r#"{"error":{"code":100,"message":"data[]: x data[x]"}}"#,
            "not json",
        ] {
            assert_eq!(rejected_event_index(none), None, "{none}");
        }
        assert_eq!(without_index("data[2]: bad"), "bad");
        assert_eq!(without_index("data[a]: bad"), "data[a]: bad");
    }

    #[test]
    fn answers_are_classified_like_meta_documents() {
        assert_eq!(
            meta_answer(
                200,
                r#"{"events_received":2,"messages":[],"fbtrace_id":"AbC"}"#
            ),
            MetaAnswer::Accepted {
                events_received: 2,
                fbtrace_id: Some("AbC".into())
            }
        );
        assert!(matches!(
            meta_answer(500, "oops"),
            MetaAnswer::Transient { .. }
        ));
        assert!(matches!(
            meta_answer(400, r#"{"error":{"code":613,"fbtrace_id":"x"}}"#),
            MetaAnswer::Transient {
                code: Some(613),
                ..
            }
        ));
        assert!(matches!(
            meta_answer(400, r#"{"error":{"code":100,"is_transient":true}}"#),
            MetaAnswer::Transient { .. }
        ));
        assert!(matches!(
            meta_answer(400, r#"{"error":{"code":190}}"#),
            MetaAnswer::Unauthorized { code: 190, .. }
        ));
        assert!(matches!(
            meta_answer(400, r#"{"error":{"code":100,"error_subcode":2804001}}"#),
            MetaAnswer::Rejected {
                code: 100,
                subcode: Some(2804001),
                ..
            }
        ));
    }
}
