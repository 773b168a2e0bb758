//! Delivery to Meta: one replaceable piece. Today: send at once with Meta's 1.5 s timeout and a
//! few quick retries on transient answers; the caller decides what a failure means (beacons log
//! it, webhooks give the claim back and let the platform redeliver).

use capi_core::event::{request_body, ServerEvent};
use capi_core::meta_answer::{meta_answer, MetaAnswer};
use capi_core::meta_rules::check_event;
use futures_util::future::{select, Either};
use std::time::Duration;
use worker::{AbortController, Date, Delay, Fetch, Headers, Method, Request, RequestInit};

/// Meta's troubleshooting guide: set the client timeout to about 1.5 s.
const META_TIMEOUT: Duration = Duration::from_millis(1500);
/// Backoff before each retry of a transient failure.
const RETRY_BACKOFF_MS: [u64; 2] = [250, 1000];

/// Where and how to send.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub access_token: String,
    pub test_event_code: Option<String>,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Meta accepted the events.
    Sent { fbtrace_id: Option<String> },
    /// Meta (or the network) kept failing transiently; sending later may work.
    Failed { reason: String },
    /// Meta refused the request, or `meta_rules` did before sending: resending cannot help.
    Rejected { reason: String },
}

/// Sends `events` to Meta; logs one line per event with the outcome (ids only, no customer data).
pub async fn send(target: &Target, events: Vec<ServerEvent>) -> Delivery {
    let now = (Date::now().as_millis() / 1000) as i64;
    let mut valid = Vec::with_capacity(events.len());
    let mut first_rejection = None;
    for e in events {
        let verdict = serde_json::to_value(&e)
            .map_err(|_| "unserializable")
            .and_then(|v| check_event(&v, now).map_err(|v| v.rule));
        match verdict {
            Ok(()) => valid.push(e),
            Err(rule) => {
                log(&e, "rejected", Some(rule), None, 0);
                first_rejection.get_or_insert(rule);
            }
        }
    }
    if valid.is_empty() {
        return Delivery::Rejected {
            reason: first_rejection.unwrap_or("no_events").to_string(),
        };
    }
    let body = request_body(&valid, target.test_event_code.as_deref());
    let url = format!(
        "{}?access_token={}",
        target.url,
        percent_encode(&target.access_token)
    );
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (delivery, fbtrace_id) = match post(&url, &body).await {
            MetaAnswer::Accepted { fbtrace_id, .. } => (
                Delivery::Sent {
                    fbtrace_id: fbtrace_id.clone(),
                },
                fbtrace_id,
            ),
            MetaAnswer::Transient { .. } if (attempt as usize) <= RETRY_BACKOFF_MS.len() => {
                let backoff = RETRY_BACKOFF_MS
                    .get(attempt as usize - 1)
                    .copied()
                    .unwrap_or(1000);
                Delay::from(Duration::from_millis(backoff)).await;
                continue;
            }
            MetaAnswer::Transient { code, fbtrace_id } => {
                let reason =
                    code.map_or("transient".to_string(), |c| format!("transient_code_{c}"));
                (Delivery::Failed { reason }, fbtrace_id)
            }
            MetaAnswer::Unauthorized { code, fbtrace_id } => {
                worker::console_error!(
                    "{}",
                    serde_json::json!({"msg": "meta_unauthorized", "code": code, "hint": "check META_ACCESS_TOKEN and the pixel's permissions"})
                );
                (
                    Delivery::Failed {
                        reason: format!("unauthorized_code_{code}"),
                    },
                    fbtrace_id,
                )
            }
            MetaAnswer::Rejected {
                code,
                subcode,
                fbtrace_id,
            } => (
                Delivery::Rejected {
                    reason: format!("meta_code_{code}_subcode_{}", subcode.unwrap_or(0)),
                },
                fbtrace_id,
            ),
        };
        let (outcome, reason) = match &delivery {
            Delivery::Sent { .. } => ("sent", None),
            Delivery::Failed { reason } => ("failed", Some(reason.as_str())),
            Delivery::Rejected { reason } => ("rejected", Some(reason.as_str())),
        };
        valid
            .iter()
            .for_each(|e| log(e, outcome, reason, fbtrace_id.as_deref(), attempt));
        return delivery;
    }
}

/// One POST with Meta's recommended timeout; network errors and timeouts are transient.
async fn post(url: &str, body: &str) -> MetaAnswer {
    let transient = MetaAnswer::Transient {
        code: None,
        fbtrace_id: None,
    };
    let headers = Headers::new();
    if headers.set("content-type", "application/json").is_err() {
        return transient;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let Ok(req) = Request::new_with_init(url, &init) else {
        return transient;
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(req);
    let sending = Box::pin(async move { fetch.send_with_signal(&signal).await });
    let timeout = Box::pin(Delay::from(META_TIMEOUT));
    match select(sending, timeout).await {
        Either::Left((Ok(mut resp), _)) => {
            let status = resp.status_code();
            let text = resp.text().await.unwrap_or_default();
            meta_answer(status, &text)
        }
        Either::Left((Err(_), _)) => transient,
        Either::Right(_) => {
            controller.abort();
            transient
        }
    }
}

pub fn log(
    e: &ServerEvent,
    outcome: &str,
    reason: Option<&str>,
    fbtrace_id: Option<&str>,
    attempts: u32,
) {
    worker::console_log!(
        "{}",
        serde_json::json!({"msg": "capi_delivery", "event_name": e.event_name, "event_id": e.event_id, "outcome": outcome, "reason": reason, "fbtrace_id": fbtrace_id, "attempts": attempts})
    );
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
