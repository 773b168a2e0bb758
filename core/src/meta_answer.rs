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
    /// A cause that will not fix itself (an expired token, a missing permission, a deleted
    /// pixel, a retired API version): hold the events for replay and raise an incident.
    Blocked {
        cause: Incident,
        code: i64,
        fbtrace_id: Option<String>,
    },
    /// The request itself is invalid (e.g. code 100): retrying unchanged cannot help.
    Rejected {
        code: i64,
        subcode: Option<i64>,
        fbtrace_id: Option<String>,
        /// The event of the request the answer blames, by its index (`data[N]`), if it names one.
        blamed: Option<usize>,
    },
}

/// How the reason of an event Meta rejected begins (`meta_code_100_subcode_0`): the pre-send
/// check's reasons never do.
const METAS_REJECTION: &str = "meta_code_";

/// Whether a receipt's reason says Meta rejected the event (not the check before sending it).
pub fn is_metas_rejection(reason: &str) -> bool {
    reason.starts_with(METAS_REJECTION)
}

impl MetaAnswer {
    /// The stable reason recorded in receipts and counters (`None` when Meta accepted).
    pub fn reason(&self) -> Option<String> {
        match self {
            MetaAnswer::Accepted { .. } => None,
            MetaAnswer::Transient { code: Some(c), .. } => Some(format!("transient_code_{c}")),
            MetaAnswer::Transient { code: None, .. } => Some("transient".into()),
            MetaAnswer::Blocked { cause, .. } => Some(cause.as_str().into()),
            MetaAnswer::Rejected { code, subcode, .. } => Some(format!(
                "{METAS_REJECTION}{code}_subcode_{}",
                subcode.unwrap_or(0)
            )),
        }
    }

    /// Meta's `fbtrace_id`, when the answer carried one.
    pub fn fbtrace_id(&self) -> Option<String> {
        match self {
            MetaAnswer::Accepted { fbtrace_id, .. }
            | MetaAnswer::Transient { fbtrace_id, .. }
            | MetaAnswer::Blocked { fbtrace_id, .. }
            | MetaAnswer::Rejected { fbtrace_id, .. } => fbtrace_id.clone(),
        }
    }
}

/// Why delivery to a pixel stopped until someone acts (meta-capi.md §7: codes 190, 10,
/// 200–299 are not retryable; 100/33 names an object that does not exist; 2635 a retired API
/// version — v24 retired on 2026-11-10).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Incident {
    /// Code 190: the access token expired or was revoked.
    TokenInvalid,
    /// Code 10 or 200–299: the token lacks a permission on the pixel.
    PermissionMissing,
    /// Code 100, subcode 33: the pixel (dataset) does not exist or is not the token's.
    PixelNotFound,
    /// Code 2635: the Graph API version is retired.
    ApiVersionRetired,
}

impl Incident {
    pub const ALL: [Incident; 4] = [
        Incident::TokenInvalid,
        Incident::PermissionMissing,
        Incident::PixelNotFound,
        Incident::ApiVersionRetired,
    ];

    /// The incident a Graph error code (and subcode) means, if any.
    pub fn of(code: i64, subcode: Option<i64>) -> Option<Incident> {
        match (code, subcode) {
            (190, _) => Some(Incident::TokenInvalid),
            (10 | 200..=299, _) => Some(Incident::PermissionMissing),
            (100, Some(33)) => Some(Incident::PixelNotFound),
            (2635, _) => Some(Incident::ApiVersionRetired),
            _ => None,
        }
    }

    /// The stable name: receipts' reason, counters, `/t/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Incident::TokenInvalid => "token_invalid",
            Incident::PermissionMissing => "permission_missing",
            Incident::PixelNotFound => "pixel_not_found",
            Incident::ApiVersionRetired => "api_version_retired",
        }
    }

    pub fn parse(s: &str) -> Option<Incident> {
        Incident::ALL.into_iter().find(|i| i.as_str() == s)
    }

    /// What is wrong, and what fixes it, for the alert and `/t/health`.
    pub fn what_to_do(self) -> &'static str {
        match self {
            Incident::TokenInvalid => "Meta refuses the access token (expired or revoked): generate a new one in Events Manager → Settings → Conversions API and store it with `wrangler secret put`",
            Incident::PermissionMissing => "the access token lacks a permission on this pixel: grant the system user access to the dataset in Business Settings, or generate the token from the pixel's Events Manager",
            Incident::PixelNotFound => "Meta says the pixel does not exist for this token: check the pixel id (PIXEL_ID / TENANTS pixels) and that the pixel was not deleted",
            Incident::ApiVersionRetired => "the Graph API version is retired: set META_API_VERSION to a current version (or remove it to use capi-edge's default)",
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
    // Meta's success says how many events it received; a 2xx without that (a proxy's or a
    // captive portal's page on the way) is no word from Meta: tried again, never taken as sent
    // (a copy Meta did get is deduplicated by its event_id).
    let received = json.get("events_received").and_then(Value::as_u64);
    if let (true, Some(events_received)) = ((200..300).contains(&status), received) {
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
        Some(c) if Incident::of(c, subcode).is_some() => MetaAnswer::Blocked {
            cause: Incident::of(c, subcode).unwrap_or(Incident::TokenInvalid),
            code: c,
            fbtrace_id,
        },
        Some(c) => MetaAnswer::Rejected {
            code: c,
            subcode,
            fbtrace_id,
            blamed: rejected_event_index(body),
        },
        // No Graph error (a bare 401 or 403 from a proxy or a firewall on the way, say): not
        // Meta's word on the token, so nothing is held and no incident is raised on it; retried
        // with backoff, and parked once the attempts are used up.
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
        for (body, cause) in [
            (
                r#"{"error":{"code":190,"error_subcode":463}}"#,
                Incident::TokenInvalid,
            ),
            (r#"{"error":{"code":200}}"#, Incident::PermissionMissing),
            (r#"{"error":{"code":10}}"#, Incident::PermissionMissing),
            (
                r#"{"error":{"code":100,"error_subcode":33}}"#,
                Incident::PixelNotFound,
            ),
            (r#"{"error":{"code":2635}}"#, Incident::ApiVersionRetired),
        ] {
            assert!(
                matches!(meta_answer(400, body), MetaAnswer::Blocked { cause: c, .. } if c == cause),
                "{body}"
            );
        }
        // A 2xx that is not Meta's answer is tried again, not taken as sent.
        assert!(matches!(
            meta_answer(200, "<html>Welcome</html>"),
            MetaAnswer::Transient { code: None, .. }
        ));
        // Only Meta's own error code says a token is dead: a bare 403 is retried.
        assert!(matches!(
            meta_answer(403, "<html>Forbidden</html>"),
            MetaAnswer::Transient { code: None, .. }
        ));
        assert!(matches!(
            meta_answer(401, r#"{"error":{"code":190}}"#),
            MetaAnswer::Blocked {
                cause: Incident::TokenInvalid,
                code: 190,
                ..
            }
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
