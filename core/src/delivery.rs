//! Delivery policy: what to do with a batch after Meta answers, when to retry and how long to
//! wait, and when an event is too old to send (meta-capi.md §7).

use crate::event::ServerEvent;
use crate::meta_answer::MetaAnswer;

/// Where an event's delivery stands, as its receipt says (on the ledger's wire by
/// `as_str`'s names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Claimed and on its way.
    Queued,
    /// A transient failure; another attempt is scheduled.
    Retrying,
    /// Meta accepted it.
    Sent,
    /// Older than Meta's 7 days: never sent.
    Expired,
    /// Meta (or its rules, checked before sending) refused it; resending cannot help.
    Rejected,
    /// Attempts used up: on the dead-letter queue for an operator.
    DeadLettered,
    /// Another copy with the same name and id was already accepted.
    Duplicate,
    /// Privacy rules or the signed-source rule kept it from being sent (reason on the receipt).
    Ignored,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Queued,
        Outcome::Retrying,
        Outcome::Sent,
        Outcome::Expired,
        Outcome::Rejected,
        Outcome::DeadLettered,
        Outcome::Duplicate,
        Outcome::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Retrying => "retrying",
            Outcome::Sent => "sent",
            Outcome::Expired => "expired",
            Outcome::Rejected => "rejected",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// A final outcome ends the event's delivery: no later, non-final update (a stale
    /// `retrying` from a redelivered message) may replace it, and nothing is sent again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Outcome::Sent
                | Outcome::Expired
                | Outcome::Rejected
                | Outcome::DeadLettered
                | Outcome::Ignored
        )
    }
}

/// Why an event is settled without being sent, found before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub outcome: Outcome,
    pub reason: &'static str,
}

/// The pre-send check, in one place: an event older than Meta takes events of its
/// `action_source` (7 days; 62 for `physical_store`) is `expired`; one that breaks Meta's
/// documented rules is `rejected` with the rule's name; anything else is sent.
pub fn presend_check(event: &ServerEvent, now_secs: i64) -> Result<(), Settled> {
    if !crate::meta_rules::is_within_window(&event.action_source, event.event_time, now_secs) {
        return Err(Settled {
            outcome: Outcome::Expired,
            reason: if event.action_source == "physical_store" {
                "older_than_62_days"
            } else {
                "older_than_7_days"
            },
        });
    }
    let value = serde_json::to_value(event).map_err(|_| Settled {
        outcome: Outcome::Rejected,
        reason: "unserializable",
    })?;
    crate::meta_rules::check_event(&value, now_secs).map_err(|v| Settled {
        outcome: Outcome::Rejected,
        reason: v.rule,
    })
}

/// After a failed attempt: try again after a delay, or give up to the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// Reschedule attempt `attempt` after `delay_secs`.
    Retry { attempt: u32, delay_secs: u32 },
    /// `max_attempts` are used up.
    DeadLetter { attempts: u32 },
}

/// The retry plan for an event that failed its `attempt`-th try (0-based).
pub fn next_attempt(
    attempt: u32,
    max_attempts: u32,
    base_secs: u32,
    max_secs: u32,
    slow: bool,
    jitter: f64,
) -> NextAttempt {
    let attempts = attempt + 1;
    if attempts >= max_attempts {
        NextAttempt::DeadLetter { attempts }
    } else {
        NextAttempt::Retry {
            attempt: attempts,
            delay_secs: retry_delay_secs(attempt, base_secs, max_secs, slow, jitter),
        }
    }
}

/// The ledger shard of an event: a stable [`fnv1a`] hash of its id, so a webhook and a beacon
/// with the same id meet in the same shard, and one pixel spreads over `shards` objects.
pub fn ledger_shard(event_id: &str, shards: u32) -> u32 {
    fnv1a(event_id.as_bytes()) % shards.max(1)
}

/// FNV-1a, 32 bits: the project's one fast non-cryptographic hash (the ledger's shards, the
/// shim's ETag, the CLI's hash maps of its own input). It must never change: stored claims
/// are found in the shard it picks.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h = Fnv1a::default();
    std::hash::Hasher::write(&mut h, bytes);
    h.0
}

/// [`fnv1a`] as a `Hasher`, for hash maps keyed by our own data (no flood to resist, so no
/// SipHash): `HashMap<K, V, BuildHasherDefault<Fnv1a>>`.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u32);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0x811c_9dc5)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }

    /// The 32 bits in both halves: hashbrown takes its 7-bit tag from the top of the hash.
    fn finish(&self) -> u64 {
        u64::from(self.0) * 0x1_0000_0001
    }
}

/// What the consumer does with a batch after Meta's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Meta took every event: record `sent` receipts.
    Sent,
    /// Meta rejected the batch (it rejects all for one bad event): split it to isolate the event.
    Split,
    /// The same, and Meta's answer names the event (its index in the batch): that event is sent
    /// alone, the rest together, so a batch of 1,000 costs two more requests instead of twenty.
    /// It is rejected only once Meta rejects it alone.
    SplitAt(usize),
    /// Meta rejected a batch of one: that event is `rejected`.
    RejectOne,
    /// Transient failure: retry later.
    Retry,
    /// A cause that will not fix itself: hold the events (parked for replay, never dropped) and
    /// raise the incident.
    Hold(crate::meta_answer::Incident),
}

pub fn step_for(answer: &MetaAnswer, batch_len: usize) -> Step {
    match answer {
        MetaAnswer::Accepted { .. } => Step::Sent,
        MetaAnswer::Rejected {
            blamed: Some(at), ..
        } if batch_len > 1 && *at < batch_len => Step::SplitAt(*at),
        MetaAnswer::Rejected { .. } if batch_len > 1 => Step::Split,
        MetaAnswer::Rejected { .. } => Step::RejectOne,
        MetaAnswer::Transient { .. } => Step::Retry,
        MetaAnswer::Blocked { cause, .. } => Step::Hold(*cause),
    }
}

/// Meta's troubleshooting guide: set the client timeout to about 1.5 s (most answers < 600 ms).
pub const META_CLIENT_TIMEOUT_MS: u64 = 1500;

/// Longest wait between two attempts unless configured otherwise.
pub const MAX_RETRY_DELAY_SECS: u32 = 3600;

/// Delay before attempt `attempt + 1`: exponential from `base_secs`, capped at `max_secs`, with
/// "equal jitter" (half fixed, half random; `jitter` in 0..1) so retries of many events spread
/// out. Token errors wait 60× longer (still capped).
pub fn retry_delay_secs(
    attempt: u32,
    base_secs: u32,
    max_secs: u32,
    slow: bool,
    jitter: f64,
) -> u32 {
    let base = u64::from(base_secs.max(1)) * if slow { 60 } else { 1 };
    let exp = base
        .saturating_mul(1u64 << attempt.min(20))
        .min(u64::from(max_secs.max(1)));
    let half = exp / 2;
    let jittered = half + (half as f64 * jitter.clamp(0.0, 1.0)).round() as u64;
    jittered.max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_answers_decide_the_step() {
        let rejected = MetaAnswer::Rejected {
            code: 100,
            subcode: None,
            fbtrace_id: None,
            blamed: None,
        };
        assert_eq!(step_for(&rejected, 10), Step::Split);
        assert_eq!(step_for(&rejected, 1), Step::RejectOne);
        // Meta names the bad event: sent alone, the rest together; an index the batch does not
        // have is a plain split.
        let named = |at| MetaAnswer::Rejected {
            code: 100,
            subcode: None,
            fbtrace_id: None,
            blamed: Some(at),
        };
        assert_eq!(step_for(&named(3), 10), Step::SplitAt(3));
        assert_eq!(step_for(&named(10), 10), Step::Split);
        assert_eq!(step_for(&named(0), 1), Step::RejectOne);
        assert_eq!(
            step_for(
                &MetaAnswer::Transient {
                    code: Some(613),
                    fbtrace_id: None
                },
                5
            ),
            Step::Retry
        );
        assert_eq!(
            step_for(
                &MetaAnswer::Blocked {
                    cause: crate::meta_answer::Incident::TokenInvalid,
                    code: 190,
                    fbtrace_id: None
                },
                5
            ),
            Step::Hold(crate::meta_answer::Incident::TokenInvalid)
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let max = MAX_RETRY_DELAY_SECS;
        assert_eq!(retry_delay_secs(0, 10, max, false, 0.0), 5);
        assert_eq!(retry_delay_secs(0, 10, max, false, 1.0), 10);
        assert_eq!(retry_delay_secs(3, 10, max, false, 1.0), 80);
        assert_eq!(retry_delay_secs(30, 10, max, false, 1.0), max);
        assert_eq!(
            retry_delay_secs(30, 1, 4, false, 1.0),
            4,
            "a configured cap holds"
        );
        assert!(
            retry_delay_secs(0, 10, max, true, 0.0) >= 300,
            "token errors back off slowly"
        );
        assert!(retry_delay_secs(0, 0, max, false, 0.0) >= 1);
    }

    #[test]
    fn outcomes_round_trip_through_their_names() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
    }

    #[test]
    fn failed_attempts_retry_until_the_limit_then_dead_letter() {
        assert_eq!(
            next_attempt(0, 3, 10, 3600, false, 1.0),
            NextAttempt::Retry {
                attempt: 1,
                delay_secs: 10
            }
        );
        assert_eq!(
            next_attempt(2, 3, 10, 3600, false, 1.0),
            NextAttempt::DeadLetter { attempts: 3 }
        );
    }

    #[test]
    fn fnv1a_gives_the_published_values() {
        // FNV's reference test vectors (draft-eastlake-fnv, FNV-1a 32-bit).
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
        let mut h = Fnv1a::default();
        std::hash::Hasher::write(&mut h, b"foo");
        std::hash::Hasher::write(&mut h, b"bar");
        assert_eq!(std::hash::Hasher::finish(&h), 0xbf9c_f968_bf9c_f968);
    }

    #[test]
    fn shards_are_stable_and_spread() {
        // Stored claims are looked up by shard: these must never change.
        assert_eq!(fnv1a(b"purchase:1001"), 0xab33_65a6);
        assert_eq!(ledger_shard("purchase:1001", 8), 6);
        assert_eq!(ledger_shard("purchase:1001", 5), 4);
        assert_eq!(ledger_shard("anything", 1), 0);
        let used: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| ledger_shard(&format!("e{i}"), 8))
            .collect();
        assert_eq!(used.len(), 8);
    }

    #[test]
    fn events_expire_after_metas_window_for_their_source() {
        let now = 1_800_000_000;
        let day = 24 * 3600;
        let event = |source: &str, age: i64| -> ServerEvent {
            serde_json::from_value(serde_json::json!({
                "event_name": "Purchase", "event_time": now - age, "event_id": "purchase:1",
                "action_source": source, "event_source_url": "https://shop.test/thanks",
                "user_data": {"fbp": "fb.1.1700000000000.42", "client_ip_address": "198.51.100.4",
                    "client_user_agent": "Mozilla/5.0"},
                "custom_data": {"value": 5.0, "currency": "EUR"}
            }))
            .expect("event")
        };
        let reason = |e: &ServerEvent| presend_check(e, now).err().map(|s| s.reason);
        assert_eq!(reason(&event("website", crate::MAX_EVENT_AGE_SECS)), None);
        assert_eq!(
            reason(&event("website", crate::MAX_EVENT_AGE_SECS + 1)),
            Some("older_than_7_days")
        );
        // A store sale (a POS order's webhook, retried or replayed) has 62 days.
        assert_eq!(reason(&event("physical_store", 30 * day)), None);
        assert_eq!(
            reason(&event("physical_store", 62 * day + 1)),
            Some("older_than_62_days")
        );
    }
}
