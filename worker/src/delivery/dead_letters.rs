//! The dead-letter queue: where an event goes when its shard cannot park it directly, and
//! where the platform puts messages whose retries it used up. Its consumer parks each event
//! in its ledger shard, where `POST /t/replay` finds it; while a shard cannot take it the
//! message is retried (wrangler.toml gives it the platform's maximum retries, a minute apart).

use super::{message_events, QueuedEvent};
use crate::config::Config;
use crate::ledger::LedgerClient;
use crate::log;
use crate::protocol::{Letter, Receipt};
use capi_core::delivery::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use worker::{Date, Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

/// How long the dead-letter consumer waits before trying a shard again.
const PARK_RETRY_SECS: u32 = 60;

/// A dead letter on the queue: the event and why it could not be delivered.
#[derive(Serialize)]
struct DeadLetterOut<'a> {
    queued: &'a QueuedEvent,
    reason: &'a str,
}

/// A dead letter as read back from the dead-letter queue.
#[derive(Deserialize)]
struct DeadLetterIn {
    queued: QueuedEvent,
    reason: String,
}

/// Puts a body on the dead-letter queue; false if it refused it or is not bound.
pub async fn to_queue_raw(env: &Env, body: String) -> bool {
    let Ok(dlq) = env.queue("DEAD_LETTERS") else {
        return false;
    };
    // Bounded like every other send: a hanging queue counts as a refusal.
    let bytes = body.len();
    let sent = matches!(
        crate::deadline::within(super::QUEUE_SEND_TIMEOUT, dlq.send(body)).await,
        Some(Ok(()))
    );
    if sent {
        crate::stats::queue_written(bytes);
    }
    sent
}

/// Puts events on the dead-letter queue, one message each; false if any was refused.
pub async fn to_queue(env: &Env, events: &[(&QueuedEvent, &str)]) -> bool {
    for (queued, reason) in events {
        let body = serde_json::to_string(&DeadLetterOut { queued, reason }).unwrap_or_default();
        // The first refusal ends it: the rest would wait on the same failing queue.
        if !to_queue_raw(env, body).await {
            return false;
        }
    }
    true
}

/// A queued copy parked for `reason` by a fallback, with its `dead_lettered` receipt.
pub fn parked_copy(q: &QueuedEvent, reason: &str) -> Option<Letter> {
    let key = q.key()?;
    Some(Letter {
        receipt: Some(Receipt {
            key: key.clone(),
            outcome: Outcome::DeadLettered,
            reason: Some(reason.into()),
            attempts: q.attempt,
            fbtrace_id: None,
            source: q.source,
            nonce: Some(q.nonce.clone()),
        }),
        key,
        body: q.to_json(),
        reason: reason.into(),
    })
}

/// The dead-letter queue's consumer: parks every event of each message in its shard (a
/// message is a dead letter of ours, or a plain queued event or bundle the platform gave up
/// on); acks a message once all its events are parked.
pub async fn park_dead_letters(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let cfg = Config::from_env(&env);
    let now_ms = Date::now().as_millis();
    let messages = batch.messages()?;
    crate::stats::add(crate::stats::Stat::QueueMessagesRead, messages.len());
    for m in messages {
        // A dead letter of ours is a copy nothing else carries: parked with its `dead_lettered`
        // receipt. A message the platform gave up on may be a bundle whose events went on as
        // retry messages of their own: their claims are left as they are.
        let parsed = match serde_json::from_str::<DeadLetterIn>(m.body()) {
            Ok(d) => Some(vec![(d.queued, d.reason, true)]),
            Err(_) => message_events(m.body()).map(|events| {
                events
                    .into_iter()
                    .map(|q| (q, "platform_retries_exhausted".to_string(), false))
                    .collect()
            }),
        };
        let Some(letters) = parsed else {
            log::error("unreadable_dead_letter", &[]);
            m.ack();
            continue;
        };
        let mut by_pixel: BTreeMap<(String, String), Vec<Letter>> = BTreeMap::new();
        for (queued, reason, settles) in letters {
            let Some(mut letter) = parked_copy(&queued, &reason) else {
                continue;
            };
            if !settles {
                letter.receipt = None;
            }
            by_pixel
                .entry((queued.tenant.clone(), queued.pixel_id.clone()))
                .or_default()
                .push(letter);
        }
        let mut parked = true;
        for ((tenant, pixel_id), letters) in by_pixel {
            parked &= match LedgerClient::for_pixel(&env, &cfg, &tenant, &pixel_id) {
                Some(l) => l.park(letters, now_ms).await,
                None => false,
            };
        }
        if parked {
            m.ack();
        } else {
            crate::stats::add(crate::stats::Stat::QueueRetries, 1);
            m.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(PARK_RETRY_SECS)
                    .build(),
            );
        }
    }
    Ok(())
}
