//! The queue-less fallback: the entry module calls it when the queue refused a pooled batch
//! (or is not bound). The beacons were already answered 204, so every event ends somewhere:
//! sent or settled here, or — for anything that needs another try — on the queue if it takes
//! it now, else parked in the ledger as a dead letter for `POST /t/replay`, else on the
//! dead-letter queue; an event none of those take is logged as lost (and counted).
//!
//! Copies keep their message's nonce: if the refused batch was in fact stored, the consumer's
//! copy and this one share one claim, and its lease lets one of them send.

use super::{Attempt, Next, QueuedEvent};
use crate::config::Config;
use crate::log;
use crate::protocol::Letter;
use std::collections::BTreeMap;
use worker::{Date, Env};

/// No request to Meta starts later than this after the fallback began: the whole fallback
/// (claims, requests, receipts, parking — each ledger call bounded) fits in the 30 s a
/// request's `waitUntil` may run, with the entry module's queue tries before it.
const DIRECT_SEND_WINDOW_MS: i64 = 6_000;

pub async fn deliver_texts(env: &Env, bodies: &[String]) {
    let cfg = Config::from_env(env);
    let attempt = Attempt::direct(Some(Date::now().as_millis() as i64 + DIRECT_SEND_WINDOW_MS));
    let mut by_pixel: BTreeMap<(String, String), Vec<QueuedEvent>> = BTreeMap::new();
    for body in bodies {
        match super::message_events(body) {
            Some(events) => {
                for q in events {
                    // Only what ingest builds from a beacon comes this way (the entry module's
                    // pool, or the beacon Worker's over its binding): a message that claims a
                    // signed source or a replay is not a beacon's, and is not taken here.
                    if q.source.is_some() || q.replay {
                        log::error("not_a_beacon_message", &[]);
                        continue;
                    }
                    by_pixel
                        .entry((q.tenant.clone(), q.pixel_id.clone()))
                        .or_default()
                        .push(q);
                }
            }
            None => log::error("unreadable_queue_message", &[]),
        }
    }
    // The pixels' groups at once, not one after another: each group's ledger calls, requests
    // and parking are bounded, and the sum of several would not fit in `waitUntil`'s 30 s.
    let (cfg, attempt) = (&cfg, &attempt);
    let groups = by_pixel.into_iter().map(|((tenant, pixel_id), queued)| async move {
        let results = super::deliver_pixel(cfg, env, &tenant, &pixel_id, &queued, attempt).await;
        let mut unkept: Vec<(QueuedEvent, u32)> = Vec::new();
        for (q, d) in queued.into_iter().zip(results) {
            match d.next {
                Next::Done => {}
                Next::Retry { queued, delay_secs } => unkept.push((*queued, delay_secs)),
                Next::Later { delay_secs } => unkept.push((q, delay_secs)),
            }
        }
        keep(env, cfg, &tenant, &pixel_id, unkept).await;
    });
    futures_util::future::join_all(groups).await;
}

/// Puts events that need another try where something will try them.
async fn keep(
    env: &Env,
    cfg: &Config,
    tenant: &str,
    pixel_id: &str,
    events: Vec<(QueuedEvent, u32)>,
) {
    // One refusal is enough: the queue is what failed (each try may wait 2 s), the rest are
    // parked at once.
    let mut refused: Vec<QueuedEvent> = Vec::new();
    for (q, delay) in events {
        if !refused.is_empty() || !super::enqueue(env, &q, delay).await {
            refused.push(q);
        }
    }
    if refused.is_empty() {
        return;
    }
    let letters: Vec<Letter> = refused
        .iter()
        .filter_map(|q| super::dead_letters::parked_copy(q, "queue_unavailable"))
        .collect();
    let now_ms = Date::now().as_millis();
    let parked = match crate::ledger::LedgerClient::for_pixel(env, cfg, tenant, pixel_id) {
        Some(l) => l.park(letters, now_ms).await,
        None => false,
    };
    if parked {
        log::warn(
            "parked_for_replay",
            &[
                ("events", refused.len().into()),
                ("reason", "queue_unavailable".into()),
            ],
        );
        return;
    }
    let pairs: Vec<(&QueuedEvent, &str)> =
        refused.iter().map(|q| (q, "queue_unavailable")).collect();
    if !super::dead_letters::to_queue(env, &pairs).await {
        log::error(
            "events_lost",
            &[
                ("events", refused.len().into()),
                ("reason", "queue_and_ledger_unavailable".into()),
            ],
        );
    }
}
