//! Delivery policy: what to do with a batch after Meta answers, when to retry and how long to
//! wait, and when an event is too old to send (meta-capi.md §7).

use crate::meta_answer::MetaAnswer;
use crate::MAX_EVENT_AGE_SECS;

/// What the consumer does with a batch after Meta's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Meta took every event: record `sent` receipts.
    Sent,
    /// Meta rejected the batch (it rejects all for one bad event): split it to isolate the event.
    Split,
    /// Meta rejected a batch of one: that event is `rejected`.
    RejectOne,
    /// Transient failure: retry later. `slow` for token/permission errors, which need a human
    /// and must not hammer Meta.
    Retry { slow: bool },
}

pub fn step_for(answer: &MetaAnswer, batch_len: usize) -> Step {
    match answer {
        MetaAnswer::Accepted { .. } => Step::Sent,
        MetaAnswer::Rejected { .. } if batch_len > 1 => Step::Split,
        MetaAnswer::Rejected { .. } => Step::RejectOne,
        MetaAnswer::Transient { .. } => Step::Retry { slow: false },
        MetaAnswer::Unauthorized { .. } => Step::Retry { slow: true },
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

/// Meta rejects (the whole request) an event older than 7 days: such an event gets an
/// `expired` receipt instead of being sent.
pub fn is_expired(event_time: i64, now_secs: i64) -> bool {
    event_time < now_secs - MAX_EVENT_AGE_SECS
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
        };
        assert_eq!(step_for(&rejected, 10), Step::Split);
        assert_eq!(step_for(&rejected, 1), Step::RejectOne);
        assert_eq!(
            step_for(
                &MetaAnswer::Transient {
                    code: Some(613),
                    fbtrace_id: None
                },
                5
            ),
            Step::Retry { slow: false }
        );
        assert_eq!(
            step_for(
                &MetaAnswer::Unauthorized {
                    code: 190,
                    fbtrace_id: None
                },
                5
            ),
            Step::Retry { slow: true }
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
    fn events_older_than_seven_days_expire() {
        let now = 1_800_000_000;
        assert!(!is_expired(now - MAX_EVENT_AGE_SECS, now));
        assert!(is_expired(now - MAX_EVENT_AGE_SECS - 1, now));
    }
}
