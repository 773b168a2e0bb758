//! Delivery to Meta: I/O only; the policy is `capi_core::delivery` (pre-send check, the step
//! after Meta's answer, the retry plan, outcomes).
//!
//! Ingest's messages are put on a Cloudflare Queue by the entry module (`worker/entry.mjs`,
//! pooled per isolate); webhooks and retries use [`enqueue`];
//! [`consume`] (the same Worker's queue consumer) delivers a batch: one ledger claim call per
//! shard for the whole batch, CAPI requests of at most 1,000 events per pixel, split on a
//! rejection to isolate the bad event, one receipt call per shard. The same path,
//! [`deliver_pixel`], serves the queue-less fallback when the queue refuses a message.

use crate::config::Config;
use crate::ledger::{ClaimItem, ClaimStatus, Count, EventKey, LedgerClient, Receipt};
use crate::log;
use capi_core::delivery::{
    next_attempt, presend_check, step_for, NextAttempt, Outcome, Step, META_CLIENT_TIMEOUT_MS,
};
use capi_core::event::{events_url, request_body, ServerEvent};
use capi_core::meta_answer::{meta_answer, MetaAnswer};
use capi_core::report::coverage_of;
use capi_core::MAX_EVENTS_PER_REQUEST;
use futures_util::future::{join_all, select, Either};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use worker::{
    AbortController, Context, Date, Delay, Env, Fetch, Headers, Message, MessageBatch,
    MessageBuilder, MessageExt, Method, QueueContentType, QueueRetryOptionsBuilder, Request,
    RequestInit,
};

/// The consumer lets other work (beacons) run after parsing this many events.
const YIELD_EVERY_EVENTS: usize = 250;

const META_TIMEOUT: Duration = Duration::from_millis(META_CLIENT_TIMEOUT_MS);

/// One queue message: an event to deliver and/or counts to add to `/t/stats`. The access token
/// is not in it: the consumer reads it from configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedEvent {
    /// The tenant whose configuration holds the pixel's credentials.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub pixel_id: String,
    /// None for a message that only carries counts (an event not relayed).
    #[serde(default)]
    pub event: Option<ServerEvent>,
    /// Delivery attempts made so far.
    #[serde(default)]
    pub attempt: u32,
    /// Identifies this message's claim in the ledger across retries and redeliveries.
    #[serde(default)]
    pub nonce: String,
    /// What ingest dropped or decided, counted once when the message is first claimed.
    #[serde(default)]
    pub counts: Vec<Count>,
    /// `webhook` for a verified order (reconciliation counts those), else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The browser session's Events Manager test code: sent in requests of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<String>,
}

fn default_tenant() -> String {
    crate::config::DEFAULT_TENANT.to_string()
}

impl QueuedEvent {
    /// Queue bodies are JSON text: an exact round trip (a JS-object body would turn
    /// `user_data`'s flattened map into a JS `Map` and lose it).
    /// ASCII only (anything else as `\uXXXX` escapes): the entry module sizes its bundles by
    /// length, which is then the size in bytes.
    pub fn to_json(&self) -> String {
        ascii_json(serde_json::to_string(self).unwrap_or_default())
    }

    fn key(&self) -> Option<EventKey> {
        self.event.as_ref().map(|e| EventKey {
            event_name: e.event_name.clone(),
            event_id: e.event_id.clone(),
        })
    }
}

/// JSON text with every non-ASCII character escaped (valid JSON: outside strings, JSON text is
/// ASCII already).
fn ascii_json(text: String) -> String {
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// A fresh claim nonce: unique per accepted copy of an event.
pub fn new_nonce() -> String {
    let r = |bits: f64| (worker::js_sys::Math::random() * bits) as u64;
    format!(
        "{:x}-{:08x}{:08x}",
        Date::now().as_millis(),
        r(4_294_967_296.0),
        r(4_294_967_296.0)
    )
}

/// A dead letter: the event and why it could not be delivered.
#[derive(Serialize)]
struct DeadLetter<'a> {
    queued: &'a QueuedEvent,
    reason: &'a str,
}

/// A dead letter as read back from the dead-letter queue.
#[derive(Deserialize)]
struct DeadLetterIn {
    queued: QueuedEvent,
    reason: String,
}

/// The dead-letter queue's consumer: parks each dead letter in its event's ledger shard, where
/// `POST /t/replay` finds it once the cause is fixed. Messages the platform dead-lettered itself
/// (its retries exhausted) are plain queued events or bundles of them.
pub async fn park_dead_letters(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let cfg = Config::from_env(&env);
    let now_ms = Date::now().as_millis();
    for m in batch.messages()? {
        let parsed = match serde_json::from_str::<DeadLetterIn>(m.body()) {
            Ok(d) => Some(vec![(d.queued, d.reason)]),
            Err(_) => message_events(m.body()).map(|events| {
                events
                    .into_iter()
                    .map(|q| (q, "platform_retries_exhausted".to_string()))
                    .collect()
            }),
        };
        let Some(letters) = parsed else {
            log::error("unreadable_dead_letter", &[]);
            m.ack();
            continue;
        };
        let mut parked = true;
        for (queued, reason) in letters {
            if queued.event.is_none() {
                continue;
            }
            parked &= match LedgerClient::for_pixel(
                &env,
                &queued.tenant,
                &queued.pixel_id,
                cfg.ledger_shards,
            ) {
                Some(l) => l.park(&queued, &reason, now_ms).await,
                None => false,
            };
        }
        if parked {
            m.ack();
        } else {
            m.retry();
        }
    }
    Ok(())
}

/// How an event's delivery round ended, and what to do with its message.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub fbtrace_id: Option<String>,
    pub next: Next,
    /// Whether this round writes a receipt (false for duplicates and settled redeliveries).
    pub receipt: bool,
}

/// What happens to the message after a delivery round.
#[derive(Debug, Clone)]
pub enum Next {
    /// Finished (a final outcome, a duplicate, a count-only message): ack.
    Done,
    /// Another attempt after `delay_secs`, with this message.
    Retry {
        queued: Box<QueuedEvent>,
        delay_secs: u32,
    },
    /// Attempts used up: to the dead-letter queue with this reason.
    DeadLetter { reason: String },
    /// The ledger could not be reached: the platform retries the message unchanged.
    RetryUnchanged,
}

/// Puts one message on the `EVENTS` queue; false if the queue refused it or is not bound.
pub async fn enqueue(env: &Env, queued: &QueuedEvent, delay_secs: u32) -> bool {
    let Ok(q) = env.queue("EVENTS") else {
        log::warn("queue_not_bound", &[("binding", "EVENTS".into())]);
        return false;
    };
    // Text: the body is already JSON; workerd need not serialise it again.
    let mut msg = MessageBuilder::new(queued.to_json()).content_type(QueueContentType::Text);
    if delay_secs > 0 {
        msg = msg.delay_seconds(delay_secs);
    }
    match q.send(msg.build()).await {
        Ok(()) => true,
        Err(e) => {
            log::error("queue_send_failed", &[("error", log::kind_of(&e).into())]);
            false
        }
    }
}

/// Delivers queue bodies now, without the queue (the entry module's fallback when the queue
/// refused a pooled batch or is not bound): grouped per tenant and pixel, through
/// [`deliver_pixel`] like the consumer. Each copy claims under a fresh nonce: if the refused
/// batch was in fact (partly) enqueued, the ledger lets exactly one of the two copies through.
/// A transient failure is rescheduled on the queue if it takes it now. A body that is not ours
/// cannot happen (ingest wrote it); it is logged and skipped.
pub async fn deliver_texts(env: &Env, bodies: &[String]) {
    let cfg = Config::from_env(env);
    let mut by_pixel: BTreeMap<PixelKey, Vec<QueuedEvent>> = BTreeMap::new();
    for body in bodies {
        match serde_json::from_str::<QueuedEvent>(body) {
            Ok(mut q) => {
                if q.event.is_some() {
                    q.nonce = new_nonce();
                }
                by_pixel
                    .entry((q.tenant.clone(), q.pixel_id.clone()))
                    .or_default()
                    .push(q)
            }
            Err(_) => log::error("unreadable_queue_message", &[]),
        }
    }
    for ((tenant, pixel_id), queued) in by_pixel {
        for d in deliver_pixel(&cfg, env, &tenant, &pixel_id, &queued, None).await {
            if let Next::Retry { queued, delay_secs } = d.next {
                if !enqueue(env, &queued, delay_secs).await {
                    log::error(
                        "retry_not_scheduled",
                        &[("pixel_id", pixel_id.clone().into())],
                    );
                }
            }
        }
    }
}

/// `(tenant, pixel id)`: what a group of messages is delivered for.
type PixelKey = (String, String);

/// A queue message's events: one event (`{…}`, webhooks and retries) or a bundle (`[{…}, …]`,
/// the beacons ingest pooled into one message of at most 64 KB, one Queues operation); None
/// if it is not ours to read.
pub fn message_events(body: &str) -> Option<Vec<QueuedEvent>> {
    if body.trim_start().starts_with('[') {
        serde_json::from_str(body).ok()
    } else {
        serde_json::from_str(body).ok().map(|q| vec![q])
    }
}

/// The queue consumer: groups the batch's events per tenant and pixel, delivers each group,
/// then settles each message from the outcomes of its events.
pub async fn consume(batch: MessageBatch<String>, env: Env, ctx: &Context) -> worker::Result<()> {
    let cfg = Config::from_env(&env);
    let messages = batch.messages()?;
    let mut by_pixel: BTreeMap<PixelKey, Vec<(usize, QueuedEvent)>> = BTreeMap::new();
    let mut readable = vec![false; messages.len()];
    let mut parsed = 0;
    for (mi, m) in messages.iter().enumerate() {
        // A batch of bundles can hold thousands of events: parsing them all in one go would
        // hold the isolate's event loop (and the beacons waiting on it) for that long.
        if parsed >= YIELD_EVERY_EVENTS {
            parsed = 0;
            Delay::from(Duration::ZERO).await;
        }
        let Some(events) = message_events(m.body()) else {
            // Not ours to read: keep it for inspection rather than drop it.
            log::error("unreadable_queue_message", &[]);
            if to_dead_letters(&env, m.body().clone()).await {
                m.ack();
            } else {
                m.retry();
            }
            continue;
        };
        readable[mi] = true;
        parsed += events.len();
        for q in events {
            by_pixel
                .entry((q.tenant.clone(), q.pixel_id.clone()))
                .or_default()
                .push((mi, q));
        }
    }
    let mut outcomes: Vec<Vec<(QueuedEvent, Next)>> =
        (0..messages.len()).map(|_| Vec::new()).collect();
    for ((tenant, pixel_id), group) in by_pixel {
        let (owners, queued): (Vec<usize>, Vec<QueuedEvent>) = group.into_iter().unzip();
        let results = deliver_pixel(&cfg, &env, &tenant, &pixel_id, &queued, Some(ctx)).await;
        for ((mi, q), d) in owners.into_iter().zip(queued).zip(results) {
            outcomes[mi].push((q, d.next));
        }
    }
    for ((m, events), ok) in messages.iter().zip(outcomes).zip(readable) {
        if ok {
            finish(&env, m, events).await;
        }
    }
    Ok(())
}

/// Puts a body on the dead-letter queue; false if it refused it or is not bound.
async fn to_dead_letters(env: &Env, body: String) -> bool {
    match env.queue("DEAD_LETTERS") {
        Ok(dlq) => dlq.send(body).await.is_ok(),
        Err(_) => false,
    }
}

/// Acks, reschedules or dead-letters one message from the outcomes of its events. A message
/// is acked only after every event's next step is safely on a queue; if that fails (or the
/// ledger could not be reached), the platform retries the whole message — events already
/// settled are recognised by their claims and not sent again — and, past its limit, moves it
/// to its dead-letter queue: never dropped.
async fn finish(env: &Env, m: &Message<String>, events: Vec<(QueuedEvent, Next)>) {
    if events
        .iter()
        .any(|(_, next)| matches!(next, Next::RetryUnchanged))
    {
        m.retry_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(5)
                .build(),
        );
        return;
    }
    let mut kept = true;
    for (q, next) in events {
        kept &= match next {
            Next::Done | Next::RetryUnchanged => true,
            Next::Retry { queued, delay_secs } => enqueue(env, &queued, delay_secs).await,
            Next::DeadLetter { reason } => {
                let body = serde_json::to_string(&DeadLetter {
                    queued: &q,
                    reason: &reason,
                })
                .unwrap_or_default();
                let sent = to_dead_letters(env, body).await;
                if !sent {
                    log::error("dead_letter_send_failed", &[]);
                }
                sent
            }
        };
    }
    if kept {
        m.ack();
    } else {
        m.retry();
    }
}

/// The one delivery path for a pixel's events (queue consumer and queue-less fallback):
/// claims them in the ledger (one call per shard), settles what must not be sent, sends the
/// rest in requests of at most 1,000 (splitting a rejected request to isolate the bad event),
/// plans retries, and records every receipt and count (one call per shard). Returns one
/// result per input, in order.
pub async fn deliver_pixel(
    cfg: &Config,
    env: &Env,
    tenant_id: &str,
    pixel_id: &str,
    items: &[QueuedEvent],
    background: Option<&Context>,
) -> Vec<Delivered> {
    let now_ms = Date::now().as_millis();
    let now = (now_ms / 1000) as i64;
    let ledger = LedgerClient::for_pixel(env, tenant_id, pixel_id, cfg.ledger_shards);
    // The pixel's credentials and test code, from its tenant's configuration as it is now.
    let tenant = cfg.tenant(tenant_id).filter(|t| t.errors.is_empty());
    let pixel = tenant.and_then(|t| t.pixel(pixel_id));
    let token = pixel.and_then(|p| p.access_token.clone());
    let app_secret = pixel.and_then(|p| p.app_secret.clone());
    let tenant_test_code = tenant.and_then(|t| t.test_event_code.clone());
    let shard_of = |q: &QueuedEvent| match (&ledger, &q.event) {
        (Some(l), Some(e)) => l.shard_of(&e.event_id),
        _ => 0,
    };

    // 1. Claims and counts: one ledger call per shard for the whole batch.
    let mut statuses = vec![ClaimStatus::Unavailable; items.len()];
    if let Some(l) = &ledger {
        let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, q) in items.iter().enumerate() {
            by_shard.entry(shard_of(q)).or_default().push(i);
        }
        // The shards are independent objects: their calls run concurrently.
        let calls = by_shard.into_iter().map(|(shard, idx)| {
            let claims: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|i| items[*i].event.is_some())
                .collect();
            let claim_items = claims
                .iter()
                .filter_map(|i| {
                    items[*i].key().map(|key| ClaimItem {
                        key,
                        nonce: items[*i].nonce.clone(),
                        source: items[*i].source.clone(),
                    })
                })
                .collect();
            // Counts ride on a message's first attempt only, so a retry never counts twice.
            let counts = idx
                .iter()
                .filter(|i| items[**i].attempt == 0)
                .flat_map(|i| items[*i].counts.iter().cloned())
                .collect();
            async move { (claims, l.claim(shard, claim_items, counts, now_ms).await) }
        });
        for (claims, got) in join_all(calls).await {
            for (i, s) in claims.iter().zip(got) {
                statuses[*i] = s;
            }
        }
    }

    // 2. What must not be sent is settled here, before any request.
    let mut results: Vec<Option<Delivered>> = vec![None; items.len()];
    let mut pending: Vec<usize> = Vec::new();
    for (i, q) in items.iter().enumerate() {
        let Some(event) = &q.event else {
            results[i] = Some(done(Outcome::Queued, None));
            continue;
        };
        let claimed = match (statuses[i], &ledger) {
            (ClaimStatus::New | ClaimStatus::Mine, _) => true,
            (ClaimStatus::Duplicate, _) => {
                log_event(event, Outcome::Duplicate, None, None, q.attempt);
                results[i] = Some(done(Outcome::Duplicate, None));
                false
            }
            // Redelivered after its event was settled (e.g. the consumer stopped after sending
            // but before acking): acked without sending again.
            (ClaimStatus::Settled, _) => {
                results[i] = Some(done(Outcome::Sent, Some("already_settled".into())));
                false
            }
            // Without a ledger binding at all, deliver (nothing to claim against).
            (ClaimStatus::Unavailable, None) => true,
            (ClaimStatus::Unavailable, Some(_)) => {
                results[i] = Some(Delivered {
                    outcome: Outcome::Queued,
                    reason: Some("ledger_unavailable".into()),
                    fbtrace_id: None,
                    next: Next::RetryUnchanged,
                    receipt: false,
                });
                false
            }
        };
        if !claimed {
            continue;
        }
        match presend_check(event, now) {
            Ok(()) => pending.push(i),
            Err(settled) => {
                results[i] = Some(settle(
                    event,
                    settled.outcome,
                    Some(settled.reason.into()),
                    None,
                    q.attempt,
                ))
            }
        }
    }

    // 3. Send: requests of at most 1,000; a rejected request is split until the bad event
    //    stands alone.
    match token {
        None => {
            log::error(
                "not_configured",
                &[
                    ("tenant", tenant_id.into()),
                    ("pixel_id", pixel_id.into()),
                    ("setting", "access token".into()),
                    ("events_waiting", pending.len().into()),
                ],
            );
            for i in pending {
                results[i] = Some(failed(cfg, &items[i], true, "not_configured".into()));
            }
        }
        Some(token) => {
            let url = events_url(&cfg.graph_url, &cfg.api_version, pixel_id);
            // Events with a session test code go in requests of their own (Meta applies a
            // request's test code to all its events); the rest use TEST_EVENT_CODE if set.
            let mut by_code: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
            for i in pending {
                let code = items[i]
                    .test_event_code
                    .clone()
                    .or_else(|| tenant_test_code.clone());
                by_code.entry(code).or_default().push(i);
            }
            let mut work: Vec<(Option<String>, Vec<usize>)> = by_code
                .into_iter()
                .flat_map(|(code, idx)| {
                    idx.chunks(MAX_EVENTS_PER_REQUEST)
                        .map(|c| (code.clone(), c.to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            while let Some((code, group)) = work.pop() {
                let events: Vec<ServerEvent> = group
                    .iter()
                    .filter_map(|i| items[*i].event.clone())
                    .collect();
                let body = request_body(&events, &token, app_secret.as_deref(), code.as_deref());
                let answer = post(&url, body).await;
                match step_for(&answer, group.len()) {
                    Step::Sent => {
                        // One line per CAPI request, not per event (measured: a console line per
                        // event was ~7 % of the consumer's CPU); each event's receipt holds it.
                        log::info(
                            "capi_sent",
                            &[
                                ("tenant", tenant_id.into()),
                                ("pixel_id", pixel_id.into()),
                                ("events", group.len().into()),
                                ("fbtrace_id", json!(answer.fbtrace_id())),
                            ],
                        );
                        for i in group {
                            if items[i].event.is_some() {
                                results[i] = Some(Delivered {
                                    outcome: Outcome::Sent,
                                    reason: None,
                                    fbtrace_id: answer.fbtrace_id(),
                                    next: Next::Done,
                                    receipt: true,
                                });
                            }
                        }
                    }
                    Step::Split => {
                        let (a, b) = group.split_at(group.len() / 2);
                        work.push((code.clone(), a.to_vec()));
                        work.push((code, b.to_vec()));
                    }
                    Step::RejectOne => {
                        for i in group {
                            if let Some(e) = &items[i].event {
                                results[i] = Some(settle(
                                    e,
                                    Outcome::Rejected,
                                    answer.reason(),
                                    answer.fbtrace_id(),
                                    items[i].attempt + 1,
                                ));
                            }
                        }
                    }
                    Step::Retry { slow } => {
                        let reason = answer.reason().unwrap_or_else(|| "transient".into());
                        if slow {
                            log::error(
                                "meta_unauthorized",
                                &[
                                    ("reason", reason.clone().into()),
                                    ("hint", "check META_ACCESS_TOKEN and the pixel's permissions; events are kept and retried slowly".into()),
                                ],
                            );
                        }
                        for i in group {
                            results[i] = Some(failed(cfg, &items[i], slow, reason.clone()));
                        }
                    }
                }
            }
        }
    }

    // 4. Receipts: one ledger call per shard.
    let results: Vec<Delivered> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| done(Outcome::Queued, None)))
        .collect();
    if let Some(l) = ledger.clone() {
        let mut by_shard: BTreeMap<u32, Vec<Receipt>> = BTreeMap::new();
        let mut coverage: BTreeMap<u32, Vec<Count>> = BTreeMap::new();
        for (q, r) in items.iter().zip(&results) {
            let Some(e) = q.event.as_ref().filter(|_| r.receipt) else {
                continue;
            };
            by_shard.entry(shard_of(q)).or_default().push(Receipt {
                event_name: e.event_name.clone(),
                event_id: e.event_id.clone(),
                outcome: r.outcome.as_str().into(),
                reason: r.reason.clone(),
                attempts: attempts_of(q, r),
                fbtrace_id: r.fbtrace_id.clone(),
                source: q.source.clone(),
            });
            if r.outcome == Outcome::Sent {
                let counts = coverage.entry(shard_of(q)).or_default();
                counts.extend(
                    coverage_of(e)
                        .into_iter()
                        .map(|key| Count::coverage(&e.event_name, key)),
                );
            }
        }
        let record = async move {
            let calls = by_shard.into_iter().map(|(shard, receipts)| {
                let counts = coverage.remove(&shard).unwrap_or_default();
                l.record(shard, receipts, counts, now_ms)
            });
            join_all(calls).await;
        };
        // The consumer records in the background: acks never wait on receipts (a receipt
        // decides nothing about sending), and the next batch is dispatched sooner.
        match background {
            Some(ctx) => ctx.wait_until(record),
            None => record.await,
        }
    }
    results
}

fn attempts_of(q: &QueuedEvent, r: &Delivered) -> u32 {
    match (&r.next, r.outcome) {
        (Next::Retry { queued, .. }, _) => queued.attempt,
        (_, Outcome::Sent | Outcome::Rejected) => q.attempt + 1,
        (Next::DeadLetter { .. }, _) => q.attempt + 1,
        _ => q.attempt,
    }
}

/// Finished without a receipt of its own.
fn done(outcome: Outcome, reason: Option<String>) -> Delivered {
    Delivered {
        outcome,
        reason,
        fbtrace_id: None,
        next: Next::Done,
        receipt: false,
    }
}

/// A final outcome for an event, logged.
fn settle(
    e: &ServerEvent,
    outcome: Outcome,
    reason: Option<String>,
    fbtrace_id: Option<String>,
    attempts: u32,
) -> Delivered {
    log_event(
        e,
        outcome,
        reason.as_deref(),
        fbtrace_id.as_deref(),
        attempts,
    );
    Delivered {
        outcome,
        reason,
        fbtrace_id,
        next: Next::Done,
        receipt: true,
    }
}

/// A failed attempt: another one after a backoff, or the dead-letter queue once the attempts
/// are used up (`capi_core::delivery::next_attempt`).
fn failed(cfg: &Config, q: &QueuedEvent, slow: bool, reason: String) -> Delivered {
    let plan = next_attempt(
        q.attempt,
        cfg.max_delivery_attempts,
        cfg.retry_base_secs,
        cfg.retry_max_secs,
        slow,
        worker::js_sys::Math::random(),
    );
    let Some(e) = &q.event else {
        return done(Outcome::Queued, None);
    };
    match plan {
        NextAttempt::Retry {
            attempt,
            delay_secs,
        } => {
            log_event(e, Outcome::Retrying, Some(&reason), None, attempt);
            Delivered {
                outcome: Outcome::Retrying,
                reason: Some(reason),
                fbtrace_id: None,
                next: Next::Retry {
                    queued: Box::new(QueuedEvent {
                        attempt,
                        ..q.clone()
                    }),
                    delay_secs,
                },
                receipt: true,
            }
        }
        NextAttempt::DeadLetter { attempts } => {
            let reason = format!("attempts_exhausted_{reason}");
            log_event(e, Outcome::DeadLettered, Some(&reason), None, attempts);
            Delivered {
                outcome: Outcome::DeadLettered,
                reason: Some(reason.clone()),
                fbtrace_id: None,
                next: Next::DeadLetter { reason },
                receipt: true,
            }
        }
    }
}

/// One POST with Meta's recommended timeout; network errors and timeouts are transient. The
/// token is in the body, never in the URL.
async fn post(url: &str, body: String) -> MetaAnswer {
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

/// The delivery log line of one event: ids, outcome, reason, Meta's trace id.
pub fn log_event(
    e: &ServerEvent,
    outcome: Outcome,
    reason: Option<&str>,
    fbtrace_id: Option<&str>,
    attempts: u32,
) {
    log::info(
        "capi_delivery",
        &[
            ("event_name", e.event_name.clone().into()),
            ("event_id", e.event_id.clone().into()),
            ("outcome", outcome.as_str().into()),
            ("reason", json!(reason)),
            ("fbtrace_id", json!(fbtrace_id)),
            ("attempts", attempts.into()),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_bodies_are_ascii_and_read_back_the_same() {
        let text =
            serde_json::json!({"content_name": "Tasse bleue, 12 €, 🍵", "ok": "plain"}).to_string();
        let ascii = ascii_json(text.clone());
        assert!(ascii.is_ascii());
        assert!(ascii.contains("\\u20ac") && ascii.contains("\\ud83c\\udf75"));
        let back: serde_json::Value = serde_json::from_str(&ascii).expect("valid JSON");
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON")
        );
    }

    #[test]
    fn a_message_holds_one_event_or_a_bundle() {
        let one = r#"{"tenant":"t","pixel_id":"1","attempt":0,"nonce":"n"}"#;
        assert_eq!(message_events(one).map(|v| v.len()), Some(1));
        let bundle = format!("[{one},{one},{one}]");
        assert_eq!(message_events(&bundle).map(|v| v.len()), Some(3));
        assert!(message_events("[{\"nope\":1}]").is_none());
        assert!(message_events("not json").is_none());
    }
}
