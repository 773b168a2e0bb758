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

#[cfg(test)]
mod tests {
    use super::*;

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
