//! Delivery to Meta: I/O only; the policy is `capi_core::delivery` (pre-send check, the step
//! after Meta's answer, the retry plan) and the claim protocol `capi_core::claim`.
//!
//! - `mod.rs`: queue messages ([`QueuedEvent`], bundles), [`enqueue`], what happens next;
//! - `pixel.rs`: the one path for a pixel's events: claims, Meta, receipts, dead letters;
//! - `consumer.rs`: the queue consumer (acks only after receipts);
//! - `direct.rs`: the queue-less fallback when the queue refuses a pooled batch;
//! - `meta.rs`: the Graph POST; `dead_letters.rs`: the dead-letter queue's consumer.

backend! {
    mod consumer;
    mod dead_letters;
    mod direct;
    mod meta;
    mod pixel;
    pub use consumer::consume;
    pub use dead_letters::park_dead_letters;
    pub use direct::deliver_texts;
    pub use pixel::{deliver_pixel, Attempt, ALREADY_SETTLED};
}

use crate::log;
use crate::protocol::{Count, EventKey, Source};
use capi_core::delivery::Outcome;
use capi_core::event::ServerEvent;
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{Date, Env, MessageBuilder, QueueContentType};

/// Queues refuse messages over 128 KB; a queue message of ours stays under this, escaped.
/// An event that cannot fit is refused where it arrives (beacon or webhook: 413), before any
/// answer that says it was taken.
pub const MAX_MESSAGE_BYTES: usize = 120_000;

/// The longest a queue send may take before it counts as refused.
pub const QUEUE_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(2000);

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
    /// The identity of this accepted copy in the ledger, kept by its retries and redeliveries.
    #[serde(default)]
    pub nonce: String,
    /// What ingest dropped or decided, counted once: when this copy first takes its claim.
    #[serde(default)]
    pub counts: Vec<Count>,
    /// `webhook` for a verified order (reconciliation counts those), else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The browser session's Events Manager test code: sent in requests of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<String>,
    /// A replay of a parked dead letter (takes the claim from any unsent holder, once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

fn default_tenant() -> String {
    crate::config::DEFAULT_TENANT.to_string()
}

impl QueuedEvent {
    /// Queue bodies are JSON text: an exact round trip (a JS-object body would turn
    /// `user_data`'s flattened map into a JS `Map` and lose it). ASCII only (serde_json's
    /// formatter escapes the rest), so the entry module sizes its bundles by length, which is
    /// then the size in bytes.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
        if self.serialize(&mut ser).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn key(&self) -> Option<EventKey> {
        self.event.as_ref().map(|e| EventKey {
            event_name: e.event_name.clone(),
            event_id: e.event_id.clone(),
        })
    }
}

/// serde_json's compact formatter, with every non-ASCII character written as `\uXXXX`.
struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// A fresh claim nonce (or attempt token): unique per accepted copy of an event.
pub fn new_nonce() -> String {
    let r = |bits: f64| (worker::js_sys::Math::random() * bits) as u64;
    format!(
        "{:x}-{:08x}{:08x}",
        Date::now().as_millis(),
        r(4_294_967_296.0),
        r(4_294_967_296.0)
    )
}

/// A queue message's events: one event (`{…}`, webhooks and retries) or a bundle (`[{…}, …]`,
/// the beacons ingest pooled into one message); None if it is not ours to read.
pub fn message_events(body: &str) -> Option<Vec<QueuedEvent>> {
    if body.trim_start().starts_with('[') {
        serde_json::from_str(body).ok()
    } else {
        serde_json::from_str(body).ok().map(|q| vec![q])
    }
}

/// How an event's delivery round ended, and what to do with its message.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub fbtrace_id: Option<String>,
    pub next: Next,
}

/// What happens to the event's message after a delivery round.
#[derive(Debug, Clone)]
pub enum Next {
    /// Finished: sent, settled, a duplicate, parked as a dead letter, or count-only.
    Done,
    /// Another attempt after `delay_secs`, as a new message (its claim was released).
    Retry {
        queued: Box<QueuedEvent>,
        delay_secs: u32,
    },
    /// The message itself is tried again after `delay_secs`, unchanged: the ledger could not
    /// be reached, another attempt holds the event, or it could not be parked.
    Later { delay_secs: u32 },
}

/// Puts one message on the `EVENTS` queue; false if the queue refused it or is not bound.
#[cfg(feature = "backend")]
pub async fn enqueue(env: &Env, queued: &QueuedEvent, delay_secs: u32) -> bool {
    send_text(env, queued.to_json(), delay_secs).await
}

/// Puts one message of ours (an event's JSON, or a bundle of them) on the `EVENTS` queue;
/// false if the queue refused it or is not bound.
#[cfg(feature = "backend")]
pub async fn send_text(env: &Env, body: String, delay_secs: u32) -> bool {
    let Ok(q) = env.queue("EVENTS") else {
        log::warn("queue_not_bound", &[("binding", "EVENTS".into())]);
        return false;
    };
    // Text: the body is already JSON; workerd need not serialise it again.
    let bytes = body.len();
    let mut msg = MessageBuilder::new(body).content_type(QueueContentType::Text);
    if delay_secs > 0 {
        msg = msg.delay_seconds(delay_secs);
    }
    // Bounded: a send that hangs counts as refused (if it stored the message after all, the
    // copies share one claim).
    match crate::deadline::within(QUEUE_SEND_TIMEOUT, q.send(msg.build())).await {
        Some(Ok(())) => {
            crate::stats::queue_written(bytes);
            true
        }
        Some(Err(e)) => {
            log::error("queue_send_failed", &[("error", log::kind_of(&e).into())]);
            false
        }
        None => {
            log::error("queue_send_failed", &[("error", "timeout".into())]);
            false
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
        let q: QueuedEvent = serde_json::from_value(serde_json::json!({
            "tenant": "t", "pixel_id": "1", "nonce": "Tasse bleue, 12 €, 🍵"
        }))
        .expect("a queued event");
        let text = q.to_json();
        assert!(text.is_ascii());
        assert!(text.contains("\\u20ac") && text.contains("\\ud83c\\udf75"));
        let back: QueuedEvent = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back.nonce, q.nonce);
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

    #[test]
    fn messages_in_flight_from_before_typed_sources_still_read() {
        let old = r#"{"tenant":"t","pixel_id":"1","nonce":"n","source":"webhook","counts":[{"kind":"dropped","name":"em","reason":"consent"}]}"#;
        let q = &message_events(old).expect("readable")[0];
        assert_eq!(q.source, Some(Source::Webhook));
        assert_eq!(q.counts.len(), 1);
    }
}
