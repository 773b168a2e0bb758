//! The one delivery path for a pixel's events (queue consumer, queue-less fallback, a webhook
//! the queue refused): claims them for one attempt (one ledger call per shard), settles what
//! must not be sent, sends the rest while the lease lasts in requests of at most 1,000
//! (splitting a rejected request to isolate the bad event), parks what used up its attempts,
//! and records every receipt before returning — so a caller acks only what the ledger knows.
//!
//! Long on purpose: the one delivery path, read top to bottom in its five numbered steps.

use super::{log_event, new_nonce, Delivered, Next, QueuedEvent};
use crate::config::Config;
use crate::ledger::LedgerClient;
use crate::log;
use crate::protocol::{ClaimItem, ClaimStatus, Count, Letter, Receipt};
use capi_core::claim::may_start_send;
use capi_core::delivery::{next_attempt, presend_check, step_for, NextAttempt, Outcome, Step};
use capi_core::event::{events_url, request_body, ServerEvent};
use capi_core::meta_answer::{Incident, MetaAnswer};
use capi_core::privacy;
use capi_core::report::{coverage_event_name, coverage_of};
use capi_core::website::{is_signed_source_only, SIGNED_SOURCE_ONLY};
use capi_core::MAX_EVENTS_PER_REQUEST;
use futures_util::future::join_all;
use serde_json::json;
use std::collections::BTreeMap;
use worker::{Date, Env};

/// Distinct browser-session test codes one delivery round sends requests for (each code needs
/// a request of its own); events with further codes wait for a later round, so a visitor
/// inventing codes cannot multiply the Conversions API requests.
pub const MAX_TEST_CODES_PER_ROUND: usize = 3;

/// The reason of a copy not sent because its event was already settled (by another copy, a
/// cancellation or an earlier attempt of its own).
pub const ALREADY_SETTLED: &str = "already_settled";

/// How soon a message is looked at again when the ledger could not be reached.
const LEDGER_RETRY_SECS: u32 = 5;

/// One attempt at delivery: the token its leases carry, and the time after which it starts
/// no request (the direct fallback runs inside a request's 30-second `waitUntil`).
pub struct Attempt {
    pub token: String,
    pub deadline_ms: Option<i64>,
}

impl Attempt {
    /// A consumer round's attempt: its messages retry what it does not finish.
    pub fn new(deadline_ms: Option<i64>) -> Attempt {
        Attempt {
            token: new_nonce(),
            deadline_ms,
        }
    }

    /// An attempt no queue message carries (a direct delivery): its lease says so, and a
    /// webhook's redelivery waits for it rather than trusting it (claim rule 10).
    pub fn direct(deadline_ms: Option<i64>) -> Attempt {
        Attempt {
            token: format!("{}{}", capi_core::claim::DIRECT_LEASE, new_nonce()),
            deadline_ms,
        }
    }
}

/// Delivers a pixel's events; one result per input, in order.
pub async fn deliver_pixel(
    cfg: &Config,
    env: &Env,
    tenant_id: &str,
    pixel_id: &str,
    items: &[QueuedEvent],
    attempt: &Attempt,
) -> Vec<Delivered> {
    let now_ms = Date::now().as_millis();
    let now = (now_ms / 1000) as i64;
    let ledger = LedgerClient::for_pixel(env, cfg, tenant_id, pixel_id);
    // The pixel's credentials and test code, from its tenant's configuration as it is now.
    let tenant = cfg.tenant(tenant_id).filter(|t| t.errors.is_empty());
    let pixel = tenant.and_then(|t| t.pixel(pixel_id));
    let token = pixel.and_then(|p| p.access_token.clone());
    let app_secret = pixel.and_then(|p| p.app_secret.clone());
    let tenant_test_code = tenant.and_then(|t| t.test_event_code.clone());
    // Today's privacy settings, whatever they were when an event was accepted (a retry, a
    // replay): the safe defaults if a setting cannot be read.
    let modes = tenant
        .and_then(|t| t.privacy().ok())
        .unwrap_or_default();
    // Only events accepted under other settings are copied (and then checked, sent, retried and
    // parked as they are now); the rest go as they are.
    let current: Vec<QueuedEvent>;
    let items = if items
        .iter()
        .any(|q| q.event.as_ref().is_some_and(|e| privacy::is_stale(&modes, e)))
    {
        current = items
            .iter()
            .cloned()
            .map(|mut q| {
                if let Some(e) = &mut q.event {
                    privacy::as_of_now(&modes, e);
                }
                q
            })
            .collect();
        &current[..]
    } else {
        items
    };
    // Signed sources win (`is_signed_source_only`, core): while the tenant's order webhooks are
    // configured, no beacon Purchase is relayed, nor takes the claim its order's signed
    // Purchase needs. Ingest holds such a beacon back where it can read the webhook secrets;
    // the beacon Worker of the split deployment holds none, so its beacons are settled here,
    // before any claim, and counted as ingest counts them. (Read from the tenant as configured,
    // errors or not: a webhook secret that is set counts.) A replay is left alone: a parked
    // copy holds its claim already, and only its replay settles it.
    let signed_orders = cfg
        .tenant(tenant_id)
        .is_some_and(|t| t.has_signed_orders());
    let unsigned: Vec<bool> = items
        .iter()
        .map(|q| {
            q.source.is_none()
                && !q.replay
                && q.event.as_ref().is_some_and(|e| {
                    is_signed_source_only(&e.event_name, &e.event_id, signed_orders)
                })
        })
        .collect();
    // A copy that took its claim before the webhooks were configured (then retried, or
    // redelivered) keeps it until the order's webhook takes it (claim rule 10: a claim no one is
    // working on); settled here, it is never sent.

    // 1. Claims: one ledger call per shard, concurrently (the shards are independent objects).
    let mut statuses = vec![ClaimStatus::Unavailable; items.len()];
    if let Some(l) = &ledger {
        let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, q) in items.iter().enumerate() {
            if let (Some(e), false) = (&q.event, unsigned[i]) {
                by_shard.entry(l.shard_of(&e.event_id)).or_default().push(i);
            }
        }
        let calls = by_shard.into_iter().map(|(shard, idx)| {
            let claim_items = idx
                .iter()
                .filter_map(|i| {
                    let q = &items[*i];
                    Some(ClaimItem {
                        key: q.key()?,
                        nonce: q.nonce.clone(),
                        source: q.source,
                        replay: q.replay,
                        counts: q.counts.clone(),
                        carried: None,
                        paid: false,
                    })
                })
                .collect();
            async move {
                (
                    idx,
                    l.claim(shard, claim_items, Some(attempt.token.clone()), now_ms)
                        .await,
                )
            }
        });
        for (idx, got) in join_all(calls).await {
            for (i, s) in idx.iter().zip(got) {
                statuses[*i] = s;
            }
        }
    }

    // 2. What must not be sent now is settled here, before any request.
    let mut results: Vec<Option<Delivered>> = vec![None; items.len()];
    let mut receipt = vec![false; items.len()];
    let mut lease_until = vec![i64::MAX; items.len()];
    let mut pending: Vec<usize> = Vec::new();
    for (i, q) in items.iter().enumerate() {
        let Some(event) = &q.event else {
            results[i] = Some(done(Outcome::Queued, None));
            continue;
        };
        if unsigned[i] {
            log_event(
                event,
                Outcome::Ignored,
                Some(SIGNED_SOURCE_ONLY),
                None,
                q.attempt,
            );
            results[i] = Some(done(Outcome::Ignored, Some(SIGNED_SOURCE_ONLY.into())));
            continue;
        }
        match (statuses[i], &ledger) {
            (ClaimStatus::Send { lease_until_ms }, _) => lease_until[i] = lease_until_ms,
            (ClaimStatus::Duplicate, _) => {
                log_event(event, Outcome::Duplicate, None, None, q.attempt);
                results[i] = Some(done(Outcome::Duplicate, None));
            }
            // A redelivery of an event already settled (the consumer stopped after its
            // receipt but before its ack): acked without sending again.
            (ClaimStatus::Settled, _) => {
                results[i] = Some(done(Outcome::Sent, Some(ALREADY_SETTLED.into())))
            }
            (ClaimStatus::Busy { retry_secs }, _) => {
                results[i] = Some(later(retry_secs, "claim_busy"))
            }
            // Without a ledger binding at all, deliver (nothing to claim against).
            (ClaimStatus::Unavailable, None) => {}
            (ClaimStatus::Unavailable, Some(_)) => {
                results[i] = Some(later(LEDGER_RETRY_SECS, "ledger_unavailable"))
            }
        }
        if results[i].is_some() {
            continue;
        }
        match presend_check(event, now) {
            Ok(()) => pending.push(i),
            Err(settled) => {
                receipt[i] = true;
                results[i] = Some(settle(
                    event,
                    settled.outcome,
                    Some(settled.reason.into()),
                    None,
                    q.attempt,
                ));
            }
        }
    }

    let mut held: Option<(Incident, i64)> = None;
    let mut accepted = false;
    // 3. Send: requests of at most 1,000 per test code; a rejected request is split until the
    //    bad event stands alone; no request starts once the lease (or the deadline) is too near.
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
                receipt[i] = true;
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
            let mut session_codes = 0;
            let mut work: Vec<(Option<String>, Vec<usize>)> = Vec::new();
            for (code, idx) in by_code {
                let session = code.is_some() && code != tenant_test_code;
                if session {
                    session_codes += 1;
                    if session_codes > MAX_TEST_CODES_PER_ROUND {
                        for i in idx {
                            receipt[i] = true;
                            results[i] = Some(postponed(&items[i], "test_codes_capped"));
                        }
                        continue;
                    }
                }
                for chunk in idx.chunks(MAX_EVENTS_PER_REQUEST) {
                    work.push((code.clone(), chunk.to_vec()));
                }
            }
            while let Some((code, group)) = work.pop() {
                let now_ms = Date::now().as_millis() as i64;
                let until = group
                    .iter()
                    .map(|i| lease_until[*i])
                    .min()
                    .unwrap_or(i64::MAX);
                let past_deadline = attempt.deadline_ms.is_some_and(|d| now_ms >= d);
                if past_deadline || !may_start_send(until, now_ms) {
                    for i in group {
                        receipt[i] = true;
                        results[i] = Some(postponed(&items[i], "lease_ended"));
                    }
                    continue;
                }
                let events: Vec<ServerEvent> = group
                    .iter()
                    .filter_map(|i| items[*i].event.clone())
                    .collect();
                let body = request_body(&events, &token, app_secret.as_deref(), code.as_deref());
                let answer = super::meta::post(&url, body).await;
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
                            receipt[i] = true;
                            results[i] = Some(Delivered {
                                outcome: Outcome::Sent,
                                reason: None,
                                fbtrace_id: answer.fbtrace_id(),
                                next: Next::Done,
                            });
                        }
                    }
                    // `events` holds one event per member of `group`, in its order.
                    Step::SplitAt(at) if events.len() == group.len() => {
                        let mut rest = group;
                        let blamed = rest.remove(at);
                        work.push((code.clone(), rest));
                        work.push((code, vec![blamed]));
                    }
                    Step::Split | Step::SplitAt(_) => {
                        let (a, b) = group.split_at(group.len() / 2);
                        work.push((code.clone(), a.to_vec()));
                        work.push((code, b.to_vec()));
                    }
                    Step::RejectOne => {
                        for i in group {
                            if let Some(e) = &items[i].event {
                                receipt[i] = true;
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
                    Step::Retry => {
                        let reason = answer.reason().unwrap_or_else(|| "transient".into());
                        for i in group {
                            receipt[i] = true;
                            results[i] = Some(failed(cfg, &items[i], false, reason.clone()));
                        }
                    }
                    // Held for replay (parked below), never dropped; the incident is raised
                    // once the letters are kept.
                    Step::Hold(cause) => {
                        for i in group {
                            if let Some(e) = &items[i].event {
                                receipt[i] = true;
                                results[i] = Some(settle(
                                    e,
                                    Outcome::DeadLettered,
                                    Some(cause.as_str().into()),
                                    answer.fbtrace_id(),
                                    items[i].attempt + 1,
                                ));
                            }
                        }
                        let code = match &answer {
                            MetaAnswer::Blocked { code, .. } => *code,
                            _ => 0,
                        };
                        held = Some((cause, code));
                    }
                }
                if matches!(answer, MetaAnswer::Accepted { .. }) {
                    accepted = true;
                }
            }
        }
    }
    let mut results: Vec<Delivered> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| done(Outcome::Queued, None)))
        .collect();

    // 4. Dead letters are parked in their shards before their receipts say so; one that
    //    cannot be parked stays open and its message is tried again.
    let parked: Vec<usize> = (0..items.len())
        .filter(|i| results[*i].outcome == Outcome::DeadLettered)
        .collect();
    if !parked.is_empty() {
        let letters: Vec<Letter> = parked
            .iter()
            .filter_map(|i| {
                Some(Letter {
                    key: items[*i].key()?,
                    body: items[*i].to_json(),
                    reason: results[*i].reason.clone().unwrap_or_default(),
                    receipt: None,
                })
            })
            .collect();
        let kept = match &ledger {
            Some(l) => l.park(letters, now_ms).await,
            None => false,
        } || super::dead_letters::to_queue(
            env,
            &parked
                .iter()
                .map(|i| (&items[*i], results[*i].reason.as_deref().unwrap_or("")))
                .collect::<Vec<_>>(),
        )
        .await;
        if !kept {
            log::error("dead_letter_not_parked", &[("events", parked.len().into())]);
            for i in parked {
                results[i] = Delivered {
                    outcome: Outcome::Retrying,
                    reason: Some("dead_letter_not_parked".into()),
                    fbtrace_id: None,
                    next: Next::Later {
                        delay_secs: LEDGER_RETRY_SECS,
                    },
                };
            }
        }
    }

    // 5. Receipts (and what ingest counted for messages without an event), before any ack.
    if let Some(l) = &ledger {
        let mut receipts = Vec::new();
        let mut counts: BTreeMap<u32, Vec<Count>> = BTreeMap::new();
        let mut coverage: Vec<(&'static str, &'static str, u32)> = Vec::new();
        let mut coverage_shard: Option<u32> = None;
        for (i, (q, r)) in items.iter().zip(&results).enumerate() {
            // What ingest counted, for a message without an event or one settled as unsigned.
            let (Some(e), Some(key), false) = (&q.event, q.key(), unsigned[i]) else {
                let row = counts.entry(0).or_default();
                row.extend(q.counts.iter().cloned());
                if unsigned[i] {
                    row.push(Count::outcome(Outcome::Ignored, SIGNED_SOURCE_ONLY));
                }
                continue;
            };
            if !receipt[i] {
                continue;
            }
            receipts.push(Receipt {
                key,
                outcome: r.outcome,
                reason: r.reason.clone(),
                attempts: attempts_of(q, r),
                fbtrace_id: r.fbtrace_id.clone(),
                source: q.source,
                nonce: Some(q.nonce.clone()),
            });
            if r.outcome == Outcome::Sent {
                coverage_shard.get_or_insert_with(|| l.shard_of(&e.event_id));
                let name = coverage_event_name(&e.event_name);
                for key in coverage_of(e) {
                    match coverage
                        .iter_mut()
                        .find(|(n, k, _)| *n == name && *k == key)
                    {
                        Some(c) => c.2 += 1,
                        None => coverage.push((name, key, 1)),
                    }
                }
            }
        }
        // Coverage is counted per day, not per shard: one merged row per event name and key,
        // with the receipts of one shard this round already writes to.
        if let Some(shard) = coverage_shard {
            counts
                .entry(shard)
                .or_default()
                .extend(coverage.into_iter().map(|(name, key, n)| Count {
                    n,
                    ..Count::coverage(name, key)
                }));
        }
        if !l.record_all(receipts, counts, now_ms).await {
            // Sent events stay sent (acking them is what keeps them from a second send); the
            // receipts that are missing say `queued` until the claim expires.
            log::error("receipts_not_recorded", &[("pixel_id", pixel_id.into())]);
        }
    }
    // After the receipts (they must fit in the lease): an incident is raised once its events
    // are held, and looked at again once Meta takes events from this pixel (`incident.rs`).
    if let Some(l) = &ledger {
        // Held for the incident's cause in this round; a replay's copy was held (and counted)
        // when it was parked first.
        let cause = held.map(|(c, _)| c.as_str());
        let n = results
            .iter()
            .zip(items)
            .filter(|(r, q)| {
                r.outcome == Outcome::DeadLettered && !q.replay && r.reason.as_deref() == cause
            })
            .count();
        crate::incident::after_round(cfg, l, tenant_id, pixel_id, held, n, accepted).await;
    }

    results
}

fn attempts_of(q: &QueuedEvent, r: &Delivered) -> u32 {
    match (&r.next, r.outcome) {
        (Next::Retry { queued, .. }, _) => queued.attempt,
        (_, Outcome::Sent | Outcome::Rejected | Outcome::DeadLettered) => q.attempt + 1,
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
    }
}

/// The message is looked at again later, unchanged.
fn later(delay_secs: u32, reason: &str) -> Delivered {
    Delivered {
        outcome: Outcome::Queued,
        reason: Some(reason.into()),
        fbtrace_id: None,
        next: Next::Later { delay_secs },
    }
}

/// Not sent this round, for a reason that costs no attempt: a new message shortly.
fn postponed(q: &QueuedEvent, reason: &str) -> Delivered {
    Delivered {
        outcome: Outcome::Retrying,
        reason: Some(reason.into()),
        fbtrace_id: None,
        next: Next::Retry {
            queued: Box::new(q.clone()),
            delay_secs: 2,
        },
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
    }
}

/// A failed attempt: another one after a backoff, or a dead letter once the attempts are used
/// up (`capi_core::delivery::next_attempt`).
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
            }
        }
        NextAttempt::DeadLetter { attempts } => {
            let reason = format!("attempts_exhausted_{reason}");
            log_event(e, Outcome::DeadLettered, Some(&reason), None, attempts);
            Delivered {
                outcome: Outcome::DeadLettered,
                reason: Some(reason),
                fbtrace_id: None,
                next: Next::Done,
            }
        }
    }
}
