//! What this isolate has done since its wasm instance started: the inputs of the cost model
//! (BENCHMARKS.md, "Cost per million events on Cloudflare"), counted where the work happens and
//! shown to the operator by `GET /t/health` as `isolate`. Counting is an add to a static: no
//! allocation, no I/O. A Cloudflare deployment runs many isolates, each with its own counts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use wasm_bindgen::prelude::wasm_bindgen;

/// One counter; its name in `/t/health` is in [`NAMES`], in the same order.
#[derive(Clone, Copy)]
pub enum Stat {
    /// `POST /t/e` requests (refused ones too): billed Worker requests.
    Beacons,
    /// Every other HTTP request (webhooks, the shim, admin routes).
    OtherRequests,
    /// Queue handler calls (events and dead letters): billed Worker requests.
    ConsumerInvocations,
    /// Messages of the sends a queue acknowledged (the entry module's `sendBatch`, Rust's
    /// sends); a send that stored its messages and still failed is not counted, its retry is.
    QueueMessagesWritten,
    /// Their write operations: one per started 64 KB of each message.
    QueueWriteOps,
    /// Messages handed to the consumers (a redelivery is read again).
    QueueMessagesRead,
    /// Messages the consumers gave back to their queue (`retry`).
    QueueRetries,
    /// Calls to a ledger Durable Object stub (billed Durable Object requests).
    LedgerCalls,
    /// Graph API requests started.
    MetaRequests,
}

const NAMES: [&str; 9] = [
    "beacons",
    "other_requests",
    "consumer_invocations",
    "queue_messages_written",
    "queue_write_ops",
    "queue_messages_read",
    "queue_retries",
    "ledger_calls",
    "meta_requests",
];

static COUNTS: [AtomicU64; NAMES.len()] = [const { AtomicU64::new(0) }; NAMES.len()];
/// When the first request or queue batch reached this instance (ms since the epoch).
static SINCE_MS: AtomicU64 = AtomicU64::new(0);

/// Adds `n` to a counter.
pub fn add(stat: Stat, n: usize) {
    COUNTS[stat as usize].fetch_add(n as u64, Relaxed);
}

/// Counts an entry into the Worker (a request or a queue batch); the first one starts the clock.
pub fn enter(stat: Stat) {
    if SINCE_MS.load(Relaxed) == 0 {
        SINCE_MS.store(now_ms(), Relaxed);
    }
    add(stat, 1);
}

/// Counts messages a queue took, `bytes` each: one write operation per started 64 KB.
pub fn queue_written(bytes: usize) {
    add(Stat::QueueMessagesWritten, 1);
    add(Stat::QueueWriteOps, bytes.div_ceil(65_536).max(1));
}

/// The counts as `/t/health` shows them.
pub fn json() -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("since_ms".into(), SINCE_MS.load(Relaxed).into());
    for (name, count) in NAMES.iter().zip(&COUNTS) {
        out.insert((*name).into(), count.load(Relaxed).into());
    }
    serde_json::Value::Object(out)
}

#[cfg(target_arch = "wasm32")]
fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> u64 {
    1
}

/// The entry module's count of one message of a `sendBatch` the queue took, `bytes` long (its
/// bodies are ASCII, so their length is their size).
#[wasm_bindgen(js_name = countQueueWrite)]
pub fn count_queue_write(bytes: usize) {
    queue_written(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_by_name_and_queue_writes_count_per_64_kb() {
        let before = json();
        enter(Stat::Beacons);
        queue_written(10);
        queue_written(65_537);
        count_queue_write(200_000);
        let after = json();
        let moved = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
        assert_eq!(moved("beacons"), 1);
        assert_eq!(moved("queue_messages_written"), 3);
        assert_eq!(moved("queue_write_ops"), 1 + 2 + 4);
        assert!(after["since_ms"].as_u64().unwrap_or(0) > 0);
        assert_eq!(after.as_object().map(|o| o.len()), Some(NAMES.len() + 1));
    }
}
