//! The queue consumer: one attempt per invocation. Groups the batch's events per tenant and
//! pixel, delivers each group (`pixel.rs` records every receipt first), then settles each
//! message from its events: retries become new messages, and a message is acked only when
//! every event's next step is safely somewhere — else the platform delivers it again, and the
//! claims make that redelivery send nothing twice.

use super::{message_events, Attempt, Next, QueuedEvent};
use crate::config::Config;
use crate::log;
use std::collections::BTreeMap;
use std::time::Duration;
use worker::{Context, Delay, Env, Message, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

/// The consumer lets other work (beacons) run after parsing this many events.
const YIELD_EVERY_EVENTS: usize = 250;
/// A pixel's events are delivered in rounds of at most this many, with a yield between rounds:
/// the isolate that runs the consumer also answers beacons, and one round's synchronous work
/// (the ledger's SQL, the request bodies) holds their answers. Smaller rounds cost ledger calls
/// (two per shard and round): measured with `make bench`, rounds of 250 cut the p99 at c=8 from
/// about 100 to 45 ms and the throughput by about 10 %; 1,000 is between (BENCHMARKS.md).
const ROUND_EVENTS: usize = 1000;

/// `(tenant, pixel id)`: what a group of messages is delivered for.
type PixelKey = (String, String);

pub async fn consume(batch: MessageBatch<String>, env: Env, _ctx: &Context) -> worker::Result<()> {
    let cfg = Config::from_env(&env);
    let messages = batch.messages()?;
    crate::stats::add(crate::stats::Stat::QueueMessagesRead, messages.len());
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
            if super::dead_letters::to_queue_raw(&env, m.body().clone()).await {
                m.ack();
            } else {
                crate::stats::add(crate::stats::Stat::QueueRetries, 1);
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
    let mut outcomes: Vec<Vec<Next>> = (0..messages.len()).map(|_| Vec::new()).collect();
    let mut first = true;
    for ((tenant, pixel_id), group) in by_pixel {
        let (owners, queued): (Vec<usize>, Vec<QueuedEvent>) = group.into_iter().unzip();
        for (owners, queued) in owners.chunks(ROUND_EVENTS).zip(queued.chunks(ROUND_EVENTS)) {
            if !first {
                Delay::from(Duration::ZERO).await;
            }
            first = false;
            // An attempt (a lease token) per round: a message the platform put twice into one
            // batch may land in two rounds, and the second must find the first's lease, not its
            // own.
            let attempt = Attempt::new(None);
            let results =
                super::deliver_pixel(&cfg, &env, &tenant, &pixel_id, queued, &attempt).await;
            for (mi, d) in owners.iter().zip(results) {
                outcomes[*mi].push(d.next);
            }
        }
    }
    for ((m, nexts), ok) in messages.iter().zip(outcomes).zip(readable) {
        if ok {
            finish(&env, m, nexts).await;
        }
    }
    Ok(())
}

/// Acks or retries one message from the next steps of its events.
async fn finish(env: &Env, m: &Message<String>, nexts: Vec<Next>) {
    let mut again: Option<u32> = None;
    for next in nexts {
        match next {
            Next::Done => {}
            Next::Retry { queued, delay_secs } => {
                if !super::enqueue(env, &queued, delay_secs).await {
                    // The retry is this message again (the event's claim is open).
                    again = Some(again.unwrap_or(0).max(delay_secs.min(60)));
                }
            }
            Next::Later { delay_secs } => again = Some(again.unwrap_or(0).max(delay_secs)),
        }
    }
    match again {
        None => m.ack(),
        Some(delay) => {
            crate::stats::add(crate::stats::Stat::QueueRetries, 1);
            m.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(delay.max(1))
                    .build(),
            )
        }
    }
}
