//! Delivery to Meta. Ingest hands accepted events to [`deliver`], which puts them on a
//! Cloudflare Queue; [`consume`] (the same Worker's queue consumer) sends them in batches of at
//! most 1,000 per pixel and decides from Meta's answer (policy in `capi_core::delivery`):
//! receipts for what was sent, split batches to isolate an event Meta rejects, reschedule
//! transient failures with exponential backoff and jitter, expire events past Meta's 7 days,
//! dead-letter what exhausts its attempts. If the queue refuses a message, the event is sent
//! directly instead of being dropped.

use crate::config::Config;
use crate::ledger::{EventKey, LedgerClient, Receipt, FINAL_OUTCOMES};
use capi_core::delivery::{is_expired, retry_delay_secs, step_for, Step, META_CLIENT_TIMEOUT_MS};
use capi_core::event::{events_url, request_body, ServerEvent};
use capi_core::meta_answer::{meta_answer, MetaAnswer};
use capi_core::meta_rules::check_event;
use capi_core::MAX_EVENTS_PER_REQUEST;
use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use worker::{
    AbortController, Date, Delay, Env, Fetch, Headers, Message, MessageBatch, MessageBuilder,
    MessageExt, Method, QueueRetryOptionsBuilder, Request, RequestInit,
};

const META_TIMEOUT: Duration = Duration::from_millis(META_CLIENT_TIMEOUT_MS);

/// Where and how to send.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub access_token: String,
    pub test_event_code: Option<String>,
}

impl Target {
    pub fn new(cfg: &Config, pixel_id: &str, access_token: String) -> Target {
        Target {
            url: events_url(&cfg.graph_url, &cfg.api_version, pixel_id),
            access_token,
            test_event_code: cfg.test_event_code.clone(),
        }
    }
}

/// One event on the queue. The access token is not in it: the consumer reads it from config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub pixel_id: String,
    pub event: ServerEvent,
    /// Delivery attempts made so far.
    #[serde(default)]
    pub attempt: u32,
}

impl QueuedEvent {
    /// Queue bodies are JSON text: an exact round trip (a JS-object body would turn
    /// `user_data`'s flattened map into a JS `Map` and lose it).
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A dead letter: the event and why it could not be delivered.
#[derive(Serialize)]
struct DeadLetter<'a> {
    queued: &'a QueuedEvent,
    reason: &'a str,
}

/// How handing an event to delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// On the queue; the consumer takes it from here.
    Queued,
    /// (Direct send) Meta accepted it.
    Sent { fbtrace_id: Option<String> },
    /// (Direct send) Meta or the network kept failing transiently.
    Failed { reason: String },
    /// (Direct send) refused by Meta or by `meta_rules` before sending: resending cannot help.
    Rejected { reason: String },
}

/// Hands an accepted event to delivery: the queue, or a direct send if the queue refuses it.
pub async fn deliver(
    env: &Env,
    cfg: &Config,
    pixel_id: &str,
    token: &str,
    event: ServerEvent,
) -> Delivery {
    let queued = QueuedEvent {
        pixel_id: pixel_id.to_string(),
        event,
        attempt: 0,
    };
    match env.queue("EVENTS") {
        Ok(q) => match q.send(queued.to_json()).await {
            Ok(()) => return Delivery::Queued,
            Err(e) => worker::console_error!(
                "{}",
                serde_json::json!({"msg": "queue_send_failed", "event_id": queued.event.event_id, "detail": e.to_string(), "fallback": "direct"})
            ),
        },
        Err(_) => worker::console_warn!(
            "{}",
            serde_json::json!({"msg": "queue_not_bound", "binding": "EVENTS", "fallback": "direct"})
        ),
    }
    let target = Target::new(cfg, pixel_id, token.to_string());
    let key = EventKey {
        event_name: queued.event.event_name.clone(),
        event_id: queued.event.event_id.clone(),
    };
    let delivery = send_now(&target, queued.event).await;
    let (outcome, reason, fbtrace_id) = match &delivery {
        Delivery::Sent { fbtrace_id } => ("sent", None, fbtrace_id.clone()),
        Delivery::Failed { reason } => ("failed", Some(reason.clone()), None),
        Delivery::Rejected { reason } => ("rejected", Some(reason.clone()), None),
        Delivery::Queued => ("queued", None, None),
    };
    if let Some(l) = LedgerClient::for_pixel(env, pixel_id) {
        let receipt = Receipt {
            event_name: key.event_name,
            event_id: key.event_id,
            outcome: outcome.into(),
            reason,
            attempts: 1,
            fbtrace_id,
        };
        l.record(vec![receipt], Date::now().as_millis()).await;
    }
    delivery
}

/// Sends one event at once (the fallback when the queue is unavailable).
async fn send_now(target: &Target, event: ServerEvent) -> Delivery {
    let now = (Date::now().as_millis() / 1000) as i64;
    let verdict = serde_json::to_value(&event)
        .map_err(|_| "unserializable")
        .and_then(|v| check_event(&v, now).map_err(|v| v.rule));
    if let Err(rule) = verdict {
        log(&event, "rejected", Some(rule), None, 0);
        return Delivery::Rejected {
            reason: rule.to_string(),
        };
    }
    let answer = post(
        target,
        &request_body(
            std::slice::from_ref(&event),
            target.test_event_code.as_deref(),
        ),
    )
    .await;
    let (reason, fbtrace_id) = (answer.reason().unwrap_or_default(), answer.fbtrace_id());
    let delivery = match answer {
        MetaAnswer::Accepted { .. } => Delivery::Sent {
            fbtrace_id: fbtrace_id.clone(),
        },
        MetaAnswer::Transient { .. } | MetaAnswer::Unauthorized { .. } => {
            Delivery::Failed { reason }
        }
        MetaAnswer::Rejected { .. } => Delivery::Rejected { reason },
    };
    let (outcome, reason) = match &delivery {
        Delivery::Sent { .. } | Delivery::Queued => ("sent", None),
        Delivery::Failed { reason } => ("failed", Some(reason.as_str())),
        Delivery::Rejected { reason } => ("rejected", Some(reason.as_str())),
    };
    log(&event, outcome, reason, fbtrace_id.as_deref(), 1);
    delivery
}

/// A queue message and the event it carries.
struct Queued {
    m: Message<String>,
    q: QueuedEvent,
}

/// The queue consumer: groups the batch per pixel and delivers each group.
pub async fn consume(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let cfg = Config::from_env(&env);
    let mut by_pixel: BTreeMap<String, Vec<Queued>> = BTreeMap::new();
    for m in batch.messages()? {
        match serde_json::from_str::<QueuedEvent>(m.body()) {
            Ok(q) => by_pixel
                .entry(q.pixel_id.clone())
                .or_default()
                .push(Queued { m, q }),
            Err(e) => {
                // Not ours to read: keep it for inspection rather than drop it.
                worker::console_error!(
                    "{}",
                    serde_json::json!({"msg": "unreadable_queue_message", "detail": e.to_string()})
                );
                let kept = match env.queue("DEAD_LETTERS") {
                    Ok(dlq) => dlq.send(m.body().clone()).await.is_ok(),
                    Err(_) => false,
                };
                if kept {
                    m.ack();
                } else {
                    m.retry();
                }
            }
        }
    }
    for (pixel_id, messages) in by_pixel {
        deliver_group(&cfg, &env, &pixel_id, messages).await;
    }
    Ok(())
}

/// Delivers one pixel's messages; every message ends acked (receipt written) or rescheduled.
async fn deliver_group(cfg: &Config, env: &Env, pixel_id: &str, messages: Vec<Queued>) {
    let now_ms = Date::now().as_millis();
    let now = (now_ms / 1000) as i64;
    let ledger = LedgerClient::for_pixel(env, pixel_id);
    let mut receipts = Vec::new();
    let Some(token) = cfg.access_token.clone() else {
        worker::console_error!(
            "{}",
            serde_json::json!({"msg": "not_configured", "setting": "META_ACCESS_TOKEN", "events_waiting": messages.len()})
        );
        for m in &messages {
            reschedule(env, cfg, m, true, "not_configured", &mut receipts).await;
        }
        record(&ledger, receipts, now_ms).await;
        return;
    };
    let target = Target::new(cfg, pixel_id, token);

    // A message redelivered after its event was already settled (e.g. the consumer stopped
    // after sending but before acking) is acked without sending it again.
    let keys: Vec<EventKey> = messages
        .iter()
        .map(|m| EventKey {
            event_name: m.q.event.event_name.clone(),
            event_id: m.q.event.event_id.clone(),
        })
        .collect();
    let outcomes = match &ledger {
        Some(l) => l.outcomes(keys).await,
        None => vec![String::new(); messages.len()],
    };
    let mut pending = Vec::with_capacity(messages.len());
    for (m, outcome) in messages.iter().zip(outcomes) {
        let q = &m.q;
        if FINAL_OUTCOMES.contains(&outcome.as_str()) {
            m.m.ack();
            continue;
        }
        if is_expired(q.event.event_time, now) {
            settle(
                m,
                "expired",
                Some("older_than_7_days".into()),
                None,
                q.attempt,
                &mut receipts,
            );
            continue;
        }
        let verdict = serde_json::to_value(&q.event)
            .map_err(|_| "unserializable")
            .and_then(|v| check_event(&v, now).map_err(|v| v.rule));
        match verdict {
            Ok(()) => pending.push(m),
            Err(rule) => settle(
                m,
                "rejected",
                Some(rule.into()),
                None,
                q.attempt,
                &mut receipts,
            ),
        }
    }

    // Batches of at most 1,000; a rejected batch is split until the bad event stands alone.
    let mut work: Vec<Vec<&Queued>> = pending
        .chunks(MAX_EVENTS_PER_REQUEST)
        .map(<[_]>::to_vec)
        .collect();
    while let Some(group) = work.pop() {
        let events: Vec<ServerEvent> = group.iter().map(|m| m.q.event.clone()).collect();
        let answer = post(
            &target,
            &request_body(&events, target.test_event_code.as_deref()),
        )
        .await;
        match (step_for(&answer, group.len()), &answer) {
            (Step::Sent, MetaAnswer::Accepted { fbtrace_id, .. }) => {
                group.iter().for_each(|m| {
                    settle(
                        m,
                        "sent",
                        None,
                        fbtrace_id.clone(),
                        m.q.attempt + 1,
                        &mut receipts,
                    )
                });
            }
            (Step::Split, _) => {
                let (a, b) = group.split_at(group.len() / 2);
                work.push(a.to_vec());
                work.push(b.to_vec());
            }
            (Step::RejectOne, _) => {
                let (reason, fbtrace_id) = (answer.reason(), answer.fbtrace_id());
                group.iter().for_each(|m| {
                    settle(
                        m,
                        "rejected",
                        reason.clone(),
                        fbtrace_id.clone(),
                        m.q.attempt + 1,
                        &mut receipts,
                    )
                });
            }
            (step, _) => {
                let slow = matches!(step, Step::Retry { slow: true });
                let reason = answer.reason().unwrap_or_else(|| "transient".into());
                if slow {
                    worker::console_error!(
                        "{}",
                        serde_json::json!({"msg": "meta_unauthorized", "reason": reason, "hint": "check META_ACCESS_TOKEN and the pixel's permissions; events are kept and retried slowly"})
                    );
                }
                for m in group {
                    reschedule(env, cfg, m, slow, &reason, &mut receipts).await;
                }
            }
        }
    }
    record(&ledger, receipts, now_ms).await;
}

async fn record(ledger: &Option<LedgerClient>, receipts: Vec<Receipt>, now_ms: u64) {
    if let Some(l) = ledger {
        l.record(receipts, now_ms).await;
    }
}

/// Acks a message whose event reached a final outcome, with its receipt.
fn settle(
    m: &Queued,
    outcome: &str,
    reason: Option<String>,
    fbtrace_id: Option<String>,
    attempts: u32,
    receipts: &mut Vec<Receipt>,
) {
    let e = &m.q.event;
    log(
        e,
        outcome,
        reason.as_deref(),
        fbtrace_id.as_deref(),
        attempts,
    );
    receipts.push(Receipt {
        event_name: e.event_name.clone(),
        event_id: e.event_id.clone(),
        outcome: outcome.into(),
        reason,
        attempts,
        fbtrace_id,
    });
    m.m.ack();
}

/// Schedules another attempt after a backoff, or dead-letters the event once its attempts are
/// used up. A message is acked only after its next step is safely on a queue; if that fails,
/// the platform's own retry takes over (and, past its limit, its dead-letter queue): never dropped.
async fn reschedule(
    env: &Env,
    cfg: &Config,
    queued: &Queued,
    slow: bool,
    reason: &str,
    receipts: &mut Vec<Receipt>,
) {
    let (m, q) = (&queued.m, &queued.q);
    let attempt = q.attempt + 1;
    let e = &q.event;
    let receipt = |outcome: &str, reason: String| Receipt {
        event_name: e.event_name.clone(),
        event_id: e.event_id.clone(),
        outcome: outcome.into(),
        reason: Some(reason),
        attempts: attempt,
        fbtrace_id: None,
    };
    if attempt >= cfg.max_delivery_attempts {
        let reason = format!("attempts_exhausted_{reason}");
        let sent = match env.queue("DEAD_LETTERS") {
            Ok(dlq) => dlq
                .send(
                    serde_json::to_string(&DeadLetter {
                        queued: q,
                        reason: &reason,
                    })
                    .unwrap_or_default(),
                )
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        log(e, "dead_lettered", Some(&reason), None, attempt);
        receipts.push(receipt("dead_lettered", reason));
        match sent {
            Ok(()) => m.ack(),
            Err(detail) => {
                worker::console_error!(
                    "{}",
                    serde_json::json!({"msg": "dead_letter_send_failed", "event_id": e.event_id, "detail": detail})
                );
                m.retry();
            }
        }
        return;
    }
    let delay = retry_delay_secs(
        q.attempt,
        cfg.retry_base_secs,
        cfg.retry_max_secs,
        slow,
        worker::js_sys::Math::random(),
    );
    let next = QueuedEvent {
        attempt,
        ..q.clone()
    };
    log(e, "retrying", Some(reason), None, attempt);
    receipts.push(receipt("retrying", reason.to_string()));
    let requeued = match env.queue("EVENTS") {
        Ok(queue) => queue
            .send(
                MessageBuilder::new(next.to_json())
                    .delay_seconds(delay)
                    .build(),
            )
            .await
            .is_ok(),
        Err(_) => false,
    };
    if requeued {
        m.ack();
    } else {
        m.retry_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(delay)
                .build(),
        );
    }
}

/// One POST with Meta's recommended timeout; network errors and timeouts are transient.
async fn post(target: &Target, body: &str) -> MetaAnswer {
    let transient = MetaAnswer::Transient {
        code: None,
        fbtrace_id: None,
    };
    let url = format!(
        "{}?access_token={}",
        target.url,
        percent_encode(&target.access_token)
    );
    let headers = Headers::new();
    if headers.set("content-type", "application/json").is_err() {
        return transient;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let Ok(req) = Request::new_with_init(&url, &init) else {
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
