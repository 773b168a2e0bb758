//! The claim protocol: who may send an event. Pure decisions; the ledger (one Durable Object
//! per tenant, pixel and shard) applies them to its rows atomically (no `await` between reading
//! a shard's holders and writing its decisions, so two calls never interleave).
//!
//! A shard keeps one claim per `(event_name, event_id)`:
//! - the **holder nonce**: the identity of the one accepted copy of the event. A queue message
//!   and the retries made from it share it; a second copy (a webhook redelivered, a beacon
//!   fired twice, the direct fallback's copy of a batch the queue did store) has another one;
//! - its **state**: `queued` or `retrying` (open), or a final outcome (`sent`, `rejected`,
//!   `expired`, `ignored`, `dead_lettered`);
//! - a **lease**: the attempt (one round of a consumer invocation, one direct delivery) that may send it
//!   now, until `lease_until_ms`.
//!
//! Rules:
//! 1. Only the lease holder sends, and only while its lease leaves room for Meta's timeout and
//!    the receipt ([`may_start_send`]); past that it stops and the message is retried.
//! 2. A copy with another nonce is a `Duplicate`: never sent.
//! 3. The holder's copy finds a final state `Settled`: acked, nothing sent. A final state is
//!    never reopened, except by a replay of a parked dead letter (rule 6), for a Purchase a
//!    failed payment held back by a copy of the paid order (rule 8), for a copy refused
//!    before any request for what it lacked by any other copy (rule 9), and for a beacon's
//!    parked copy by a verified webhook (rule 10).
//! 4. The holder's copy finds the lease taken by another attempt (the same message delivered
//!    twice, also at the same time): `Busy`. It is retried after a short delay, never sent
//!    meanwhile; when the other attempt ends it finds `Settled` or an open claim to take.
//! 5. A `retrying` receipt ends the lease, so the retry message (same nonce) takes it. A lease
//!    whose holder vanished (isolate evicted, wasm reset) ends by itself at `lease_until_ms`.
//! 6. A replay copy (fresh nonce, `replay`) takes an unsent claim from any holder — once per
//!    parking of its dead letter: the ledger marks the letter taken in the same step.
//! 7. A reservation (a webhook's synchronous claim, which only enqueues) takes the claim
//!    without a lease, for [`RESERVATION_MS`]; its message's consumer then takes the lease. A
//!    reservation nobody leased by then is abandoned: another copy may take the event.
//! 8. An order's cancellation (or refund in full) settles its Purchase `ignored / cancelled` when
//!    the Purchase was not delivered and no attempt is sending it: unclaimed (the cancellation
//!    came first), reserved, waiting, retrying or dead-lettered. Every copy after that finds a
//!    final state. While an attempt holds the lease the cancellation waits ([`purchase_state`]:
//!    `InFlight`, the platform redelivers it); once the Purchase was sent it is a refund.
//!    A failed payment holds back a waiting Purchase the same way (`ignored / payment_failed`)
//!    but blocks nothing: a copy of the order paid after all takes the claim (the one final
//!    state a copy other than a replay reopens); a copy from before the payment finds a
//!    `Duplicate`, and a cancellation still settles it `ignored / cancelled` for good.
//! 9. A copy refused before any request for what that copy lacked — no consent decision
//!    (`ignored / no_consent`), contact data, a time within Meta's window, a field Meta requires
//!    (`expired`, or `rejected` by the pre-send check, never by Meta) — or for being a test order
//!    (a staging backend's order of the same number) settles its claim without Meta getting the
//!    event, and blocks nothing: another copy of the event (an order's next webhook, which may
//!    carry the consent or the customer; the live order) takes the claim ([`reopen_of`]). A
//!    cancellation settles it `ignored / cancelled` for good, as in rule 8. The order then counts
//!    once, by its final outcome.
//!
//! 10. A verified webhook as the platform delivers it (its reservation) takes a claim no one is
//!     working on from any other copy:
//!     one `retrying`, or `queued` under a lease that ended, held by another copy (a beacon's
//!     copy of the order, or a copy of its own whose attempt vanished before it gave the claim
//!     back, so that no message carries it), or a beacon's copy parked as a dead letter (a
//!     webhook's own parked copy waits for its replay). A claim a direct attempt
//!     ([`DIRECT_LEASE`]) or a beacon's copy holds the lease of is `Busy` for it (the platform
//!     redelivers it later), as is a claim an earlier layout held that is not yet a minute in
//!     this one; a live reservation (rule 7), or a webhook copy the consumer is sending, a
//!     `Duplicate`: that copy's message is on its way.
//!
//! Claims are kept, and never re-claimable but by rules 6, 8, 9 and 10, for [`BEACON_CLAIM_DAYS`] or [`ORDER_CLAIM_DAYS`].

use crate::delivery::Outcome;

/// How long an attempt holds an event: long enough for a consumer round's sends and
/// receipts, short enough that an event whose attempt vanished is retried within minutes.
pub const LEASE_MS: i64 = 60_000;

/// The time a sender keeps for the receipt after Meta's answer: no request starts later than
/// `lease_until − META_CLIENT_TIMEOUT_MS − RECEIPT_MARGIN_MS`.
pub const RECEIPT_MARGIN_MS: i64 = 10_000;

/// How long a webhook's reservation holds an event without a lease: its queue message is
/// normally claimed within seconds. A reservation nobody took by then is abandoned (the answer
/// that made it may never have reached the platform): another copy may take the event, and the
/// reservation's own message, if it comes, finds a `Duplicate`.
pub const RESERVATION_MS: i64 = 60_000;

/// The longest a `Busy` copy waits before it looks again while the lease is young.
pub const BUSY_RETRY_MAX_SECS: u32 = 5;

/// Browser events: Meta deduplicates within 48 hours; their claims (and receipts) are kept a
/// week, Meta's age limit, so no copy can be sent again while Meta would still take it.
pub const BEACON_CLAIM_DAYS: i64 = 7;

/// Orders: platforms send updates for weeks (`orders/paid`, `orders/updated`, refunds), each
/// derived to the same event id; the claim outlives them.
pub const ORDER_CLAIM_DAYS: i64 = 90;

/// Why a failed payment settled a waiting Purchase (rule 8).
pub const PAYMENT_FAILED: &str = "payment_failed";

/// Which other copies may take a claim settled without Meta getting its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reopen {
    /// None: Meta has the event, must never get it, or the claim is still open.
    #[default]
    Never,
    /// A copy of the paid order: a Purchase a failed payment held back (rule 8).
    PaidCopy,
    /// Any other copy: this one was refused before any request for what it lacked (rule 9).
    AnyCopy,
}

/// Which copies may take a claim settled `outcome` for `reason` (rules 8 and 9).
pub fn reopen_of(outcome: Outcome, reason: Option<&str>) -> Reopen {
    match (outcome, reason) {
        (Outcome::Ignored, Some(PAYMENT_FAILED)) => Reopen::PaidCopy,
        (
            Outcome::Ignored,
            Some(crate::privacy::NO_CONSENT | crate::webhook::lifecycle::TEST_ORDER),
        )
        | (Outcome::Expired, _) => Reopen::AnyCopy,
        (Outcome::Rejected, Some(r)) if !crate::meta_answer::is_metas_rejection(r) => {
            Reopen::AnyCopy
        }
        _ => Reopen::Never,
    }
}

/// The current holder of a claim, as the shard has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder<'a> {
    pub nonce: &'a str,
    pub outcome: Outcome,
    pub lease: Option<&'a str>,
    pub lease_until_ms: i64,
    /// Which other copies may take it although it is final (rules 8 and 9).
    pub reopen: Reopen,
    /// Held by a verified webhook's copy of an order (rule 10).
    pub signed: bool,
}

/// How the lease token of an attempt no queue message carries begins: a webhook or a pooled
/// batch delivered directly because the queue refused it. If that attempt vanishes, nothing
/// retries it (rule 10).
pub const DIRECT_LEASE: &str = "direct:";

/// What a copy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask<'a> {
    pub nonce: &'a str,
    /// The attempt asking: `None` for a reservation (rule 7).
    pub attempt: Option<&'a str>,
    /// A replay of a parked dead letter, and whether that letter is still waiting (not taken by
    /// another replay since it was parked).
    pub replay: Option<bool>,
    /// A copy of a paid order: it takes a Purchase a failed payment held back (rule 8).
    pub paid: bool,
    /// A verified webhook's copy: as the platform delivers it (its reservation, `attempt`
    /// `None`) it takes a claim no one is working on (rule 10); a copy the consumer delivers has
    /// its own message, which retries it.
    pub signed: bool,
    pub now_ms: i64,
}

/// The shard's answer for one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The copy holds the claim now (with a lease unless it is a reservation): send it.
    Take,
    /// Another copy holds the event: do not send.
    Duplicate,
    /// The event reached a final outcome: do not send again.
    Settled,
    /// Another attempt holds the lease: look again after `retry_secs`.
    Busy { retry_secs: u32 },
}

/// Whether `outcome` means Meta has the event or must never get it: a replay cannot reopen it.
fn is_done(outcome: Outcome) -> bool {
    outcome.is_final() && outcome != Outcome::DeadLettered
}

/// The decision for one copy against the claim's current holder (`None`: no claim yet).
pub fn decide(holder: Option<&Holder>, ask: &Ask) -> Decision {
    let Some(h) = holder else {
        return Decision::Take;
    };
    let leased_to_other =
        h.lease_until_ms > ask.now_ms && h.lease.is_some() && h.lease != ask.attempt;
    if let Some(waiting) = ask.replay {
        if h.nonce != ask.nonce {
            return if is_done(h.outcome) {
                Decision::Settled
            } else if !waiting {
                Decision::Duplicate
            } else if leased_to_other {
                busy(h, ask.now_ms)
            } else {
                Decision::Take
            };
        }
    }
    if h.nonce != ask.nonce {
        let abandoned = h.lease.is_none()
            && h.outcome == Outcome::Queued
            && h.lease_until_ms > 0
            && ask.now_ms >= h.lease_until_ms;
        let reopened = match h.reopen {
            Reopen::Never => false,
            Reopen::PaidCopy => ask.paid,
            Reopen::AnyCopy => true,
        };
        if abandoned || reopened {
            return Decision::Take;
        }
        // Rule 10: a signed copy and a claim no one is working on. A webhook copy the consumer
        // is sending has its message behind it, which retries it if this attempt fails: the
        // signed copy is a duplicate of it. Any other attempt it waits for (`Busy`).
        // A webhook's own parked copy waits for its replay (the cause may still be there); a
        // reservation is a webhook's (rule 7), or a claim an earlier layout held (its lease
        // unknown): only the former's message is surely on its way.
        let reserved = h.lease.is_none() && h.lease_until_ms > ask.now_ms;
        let carried = h.signed && !h.lease.is_some_and(|l| l.starts_with(DIRECT_LEASE));
        let open = matches!(h.outcome, Outcome::Queued | Outcome::Retrying)
            || (h.outcome == Outcome::DeadLettered && !h.signed);
        // A webhook's copy under a consumer's lease, live or ended, has its message behind it:
        // that attempt may have been sent before it could record its receipt, and the message
        // (same nonce) is what retries it — never another copy.
        let consumer_leased = h.signed && h.lease.is_some() && carried;
        let reservation = ask.signed && ask.attempt.is_none();
        return if !(reservation && open) || consumer_leased {
            Decision::Duplicate
        } else if leased_to_other {
            if carried {
                Decision::Duplicate
            } else {
                busy(h, ask.now_ms)
            }
        } else if reserved {
            if h.signed && h.outcome == Outcome::Queued {
                Decision::Duplicate
            } else {
                busy(h, ask.now_ms)
            }
        } else {
            Decision::Take
        };
    }
    if h.outcome.is_final() {
        return Decision::Settled;
    }
    if leased_to_other {
        return busy(h, ask.now_ms);
    }
    Decision::Take
}

/// How long a `Busy` copy waits: briefly while the lease is young (the other attempt is most
/// likely about to finish), else until the lease ends (that attempt is slow or gone), so a few
/// looks cover a whole lease well inside the platform's retries.
fn busy(h: &Holder, now_ms: i64) -> Decision {
    let remaining_ms = h.lease_until_ms - now_ms;
    let held_for_ms = LEASE_MS - remaining_ms;
    let wait_ms = if held_for_ms < i64::from(BUSY_RETRY_MAX_SECS) * 1000 {
        remaining_ms.min(i64::from(BUSY_RETRY_MAX_SECS) * 1000)
    } else {
        remaining_ms + 1000
    };
    Decision::Busy {
        retry_secs: ((wait_ms + 999) / 1000).max(1) as u32,
    }
}

/// What an order's cancellation or refund finds of its Purchase (rule 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseState {
    /// No claim: the order was never reported (or its cancellation came first).
    Unknown,
    /// Claimed and not final, and no attempt is sending it: it can still be held back.
    Pending,
    /// An attempt holds the lease: look again after `retry_secs`.
    InFlight { retry_secs: u32 },
    /// Sent: Meta has it.
    Delivered,
    /// Final without being sent (ignored, cancelled, rejected, expired).
    NotSent,
}

impl PurchaseState {
    /// Whether a cancellation may settle the Purchase now.
    pub fn cancellable(self) -> bool {
        matches!(self, PurchaseState::Unknown | PurchaseState::Pending)
    }
}

/// The state of an order's Purchase against its claim's holder.
pub fn purchase_state(holder: Option<&Holder>, now_ms: i64) -> PurchaseState {
    let Some(h) = holder else {
        return PurchaseState::Unknown;
    };
    match h.outcome {
        Outcome::Sent => PurchaseState::Delivered,
        o if is_done(o) => PurchaseState::NotSent,
        _ if h.lease.is_some() && h.lease_until_ms > now_ms => match busy(h, now_ms) {
            Decision::Busy { retry_secs } => PurchaseState::InFlight { retry_secs },
            _ => PurchaseState::InFlight { retry_secs: 1 },
        },
        _ => PurchaseState::Pending,
    }
}

/// Whether a lease holder may start a request to Meta at `now_ms` (rule 1).
pub fn may_start_send(lease_until_ms: i64, now_ms: i64) -> bool {
    now_ms + crate::delivery::META_CLIENT_TIMEOUT_MS as i64 + RECEIPT_MARGIN_MS < lease_until_ms
}

/// How long a claim is kept (and not re-claimable), by whether it is an order's.
pub fn claim_retention_ms(order: bool) -> i64 {
    let days = if order {
        ORDER_CLAIM_DAYS
    } else {
        BEACON_CLAIM_DAYS
    };
    days * 86_400_000
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn holder(
        nonce: &'static str,
        outcome: Outcome,
        lease: Option<&'static str>,
        until: i64,
    ) -> Holder<'static> {
        Holder {
            nonce,
            outcome,
            lease,
            lease_until_ms: until,
            reopen: Reopen::Never,
            signed: false,
        }
    }

    fn ask(nonce: &'static str, attempt: Option<&'static str>) -> Ask<'static> {
        Ask {
            nonce,
            attempt,
            replay: None,
            paid: false,
            signed: false,
            now_ms: NOW,
        }
    }

    #[test]
    fn a_signed_copy_takes_a_claim_no_one_is_working_on() {
        let reserve = |nonce| Ask {
            signed: true,
            ..ask(nonce, None)
        };
        // A beacon's copy of the order waiting for its retry, or parked; a webhook copy whose
        // direct attempt vanished (its lease ended, no message carries it).
        for open in [
            holder("b1", Outcome::Retrying, None, 0),
            holder("b1", Outcome::DeadLettered, None, 0),
            Holder {
                signed: true,
                ..holder("w1", Outcome::Queued, Some("direct:a1"), NOW - 1)
            },
        ] {
            assert_eq!(decide(Some(&open), &reserve("w2")), Decision::Take);
            let consumed = Ask {
                signed: true,
                ..ask("w2", Some("a9"))
            };
            assert_eq!(
                decide(Some(&open), &consumed),
                Decision::Duplicate,
                "a copy the consumer delivers has its own message"
            );
            assert_eq!(
                decide(Some(&open), &ask("b2", Some("a9"))),
                Decision::Duplicate,
                "an unsigned copy does not"
            );
        }
        // Being sent by another attempt: looked at again later, never sent meanwhile…
        let sending = holder("b1", Outcome::Queued, Some("a1"), NOW + 50_000);
        assert!(matches!(
            decide(Some(&sending), &reserve("w2")),
            Decision::Busy { .. }
        ));
        let direct = Holder {
            signed: true,
            ..holder("w1", Outcome::Queued, Some("direct:a1"), NOW + 50_000)
        };
        assert!(matches!(
            decide(Some(&direct), &reserve("w2")),
            Decision::Busy { .. }
        ));
        // …but a webhook's copy the consumer sends has its own message: a duplicate.
        let consumed = Holder {
            signed: true,
            ..holder("w1", Outcome::Queued, Some("a1"), NOW + 50_000)
        };
        assert_eq!(decide(Some(&consumed), &reserve("w2")), Decision::Duplicate);
        // Even once that lease ended: the attempt may have sent it without its receipt, and its
        // message retries it.
        let ended = Holder {
            signed: true,
            ..holder("w1", Outcome::Queued, Some("a1"), NOW - 1)
        };
        assert_eq!(decide(Some(&ended), &reserve("w2")), Decision::Duplicate);
        // A live reservation: its own message is on the way.
        let reserved = Holder {
            signed: true,
            ..holder("w1", Outcome::Queued, None, NOW + 30_000)
        };
        assert_eq!(decide(Some(&reserved), &reserve("w2")), Decision::Duplicate);
        // An earlier layout's claim, its lease unknown for a minute: looked at again later.
        let imported = holder("b1", Outcome::Retrying, None, NOW + 30_000);
        assert!(matches!(
            decide(Some(&imported), &reserve("w2")),
            Decision::Busy { .. }
        ));
        // A webhook's own parked copy waits for its replay.
        let parked = Holder {
            signed: true,
            ..holder("w1", Outcome::DeadLettered, None, 0)
        };
        assert_eq!(decide(Some(&parked), &reserve("w2")), Decision::Duplicate);
        // Final outcomes stay final for it too (but rules 8 and 9).
        for done in [Outcome::Sent, Outcome::Rejected, Outcome::Ignored] {
            let h = holder("b1", done, None, 0);
            assert_eq!(decide(Some(&h), &reserve("w2")), Decision::Duplicate);
        }
    }

    #[test]
    fn a_cancellation_holds_back_a_purchase_nobody_is_sending() {
        assert_eq!(purchase_state(None, NOW), PurchaseState::Unknown);
        for (h, want) in [
            // Reserved by the webhook, waiting on the queue, retrying: held back.
            (
                holder("n1", Outcome::Queued, None, NOW + RESERVATION_MS),
                PurchaseState::Pending,
            ),
            (
                holder("n1", Outcome::Retrying, None, 0),
                PurchaseState::Pending,
            ),
            (
                holder("n1", Outcome::DeadLettered, None, 0),
                PurchaseState::Pending,
            ),
            // A lease that ended with its attempt.
            (
                holder("n1", Outcome::Queued, Some("a1"), NOW - 1),
                PurchaseState::Pending,
            ),
            (
                holder("n1", Outcome::Queued, Some("a1"), NOW + LEASE_MS),
                PurchaseState::InFlight { retry_secs: 5 },
            ),
            (
                holder("n1", Outcome::Sent, None, 0),
                PurchaseState::Delivered,
            ),
            (
                holder("n1", Outcome::Ignored, None, 0),
                PurchaseState::NotSent,
            ),
            (
                holder("n1", Outcome::Rejected, None, 0),
                PurchaseState::NotSent,
            ),
        ] {
            assert_eq!(purchase_state(Some(&h), NOW), want, "{h:?}");
        }
        assert!(PurchaseState::Unknown.cancellable() && PurchaseState::Pending.cancellable());
        assert!(!PurchaseState::Delivered.cancellable());
    }

    #[test]
    fn the_first_copy_takes_a_new_claim() {
        assert_eq!(decide(None, &ask("n1", Some("a1"))), Decision::Take);
    }

    #[test]
    fn a_message_delivered_twice_at_once_is_sent_by_one_attempt() {
        let h = holder("n1", Outcome::Queued, Some("a1"), NOW + LEASE_MS);
        assert_eq!(
            decide(Some(&h), &ask("n1", Some("a2"))),
            Decision::Busy { retry_secs: 5 }
        );
        // The holder's own attempt (a second event of the same batch) keeps it.
        assert_eq!(decide(Some(&h), &ask("n1", Some("a1"))), Decision::Take);
    }

    #[test]
    fn a_copy_waits_briefly_on_a_young_lease_and_for_the_rest_of_an_old_one() {
        let young = holder("n1", Outcome::Queued, Some("a1"), NOW + LEASE_MS - 1000);
        assert_eq!(
            decide(Some(&young), &ask("n1", Some("a2"))),
            Decision::Busy { retry_secs: 5 }
        );
        let old = holder("n1", Outcome::Queued, Some("a1"), NOW + 20_000);
        assert_eq!(
            decide(Some(&old), &ask("n1", Some("a2"))),
            Decision::Busy { retry_secs: 21 }
        );
    }

    #[test]
    fn a_vanished_attempt_lease_ends_by_itself() {
        let h = holder("n1", Outcome::Queued, Some("a1"), NOW - 1);
        assert_eq!(decide(Some(&h), &ask("n1", Some("a2"))), Decision::Take);
    }

    #[test]
    fn a_purchase_a_failed_payment_held_back_is_taken_by_the_orders_next_copy() {
        let held_back = Holder {
            reopen: reopen_of(Outcome::Ignored, Some(PAYMENT_FAILED)),
            ..holder("n1", Outcome::Ignored, None, 0)
        };
        let paid = |nonce| Ask {
            paid: true,
            ..ask(nonce, None)
        };
        assert_eq!(decide(Some(&held_back), &paid("n2")), Decision::Take);
        assert_eq!(
            decide(Some(&held_back), &ask("n2", None)),
            Decision::Duplicate,
            "a copy from before the payment (a redelivery of the placed order) does not"
        );
        assert_eq!(
            decide(Some(&held_back), &ask("n1", Some("a1"))),
            Decision::Settled,
            "the held-back copy itself is not sent"
        );
        let cancelled = holder("n1", Outcome::Ignored, None, 0);
        assert_eq!(decide(Some(&cancelled), &paid("n2")), Decision::Duplicate);
    }

    #[test]
    fn a_copy_refused_for_what_it_lacked_blocks_no_other_copy() {
        // Refused before any request: no consent decision, contact data missing, too old.
        for (outcome, reason) in [
            (Outcome::Ignored, crate::privacy::NO_CONSENT),
            (Outcome::Rejected, "user_data_missing"),
            (Outcome::Expired, "older_than_7_days"),
            // A staging backend's test order of the live order's number.
            (Outcome::Ignored, crate::webhook::lifecycle::TEST_ORDER),
        ] {
            let refused = Holder {
                reopen: reopen_of(outcome, Some(reason)),
                ..holder("n1", outcome, None, 0)
            };
            assert_eq!(
                decide(Some(&refused), &ask("n2", None)),
                Decision::Take,
                "{reason}: the next copy takes it"
            );
            assert_eq!(
                decide(Some(&refused), &ask("n1", Some("a1"))),
                Decision::Settled,
                "{reason}: the refused copy itself stays settled"
            );
            assert_eq!(purchase_state(Some(&refused), NOW), PurchaseState::NotSent);
        }
        // Final for good: Meta has it, Meta refused it, or it must never be sent.
        let metas = crate::meta_answer::MetaAnswer::Rejected {
            code: 100,
            subcode: None,
            fbtrace_id: None,
            blamed: None,
        }
        .reason();
        for (outcome, reason) in [
            (Outcome::Sent, None),
            (Outcome::Rejected, metas.as_deref()),
            (Outcome::Ignored, Some("cancelled")),
            (Outcome::Ignored, Some(crate::privacy::CONSENT_REFUSED)),
            (Outcome::Ignored, Some(PAYMENT_FAILED)),
        ] {
            let h = Holder {
                reopen: reopen_of(outcome, reason),
                ..holder("n1", outcome, None, 0)
            };
            assert_eq!(
                decide(Some(&h), &ask("n2", None)),
                Decision::Duplicate,
                "{outcome:?} {reason:?}"
            );
        }
    }

    #[test]
    fn another_copy_is_a_duplicate_whatever_the_state() {
        for o in Outcome::ALL {
            let h = holder("n1", o, None, 0);
            assert_eq!(
                decide(Some(&h), &ask("n2", Some("a2"))),
                Decision::Duplicate,
                "{o:?}"
            );
        }
    }

    #[test]
    fn a_final_outcome_is_not_sent_again_by_its_own_copy() {
        for o in Outcome::ALL.into_iter().filter(|o| o.is_final()) {
            let h = holder("n1", o, None, 0);
            assert_eq!(
                decide(Some(&h), &ask("n1", Some("a2"))),
                Decision::Settled,
                "{o:?}"
            );
        }
    }

    #[test]
    fn a_reservation_takes_no_lease_and_the_consumer_then_takes_it() {
        assert_eq!(decide(None, &ask("n1", None)), Decision::Take);
        let reserved = holder("n1", Outcome::Queued, None, 0);
        assert_eq!(
            decide(Some(&reserved), &ask("n1", Some("a1"))),
            Decision::Take
        );
    }

    #[test]
    fn a_reservation_nobody_leased_is_abandoned_after_a_while() {
        let reserved = holder("n1", Outcome::Queued, None, NOW + 1);
        assert_eq!(
            decide(Some(&reserved), &ask("n2", None)),
            Decision::Duplicate
        );
        let abandoned = holder("n1", Outcome::Queued, None, NOW);
        assert_eq!(decide(Some(&abandoned), &ask("n2", None)), Decision::Take);
        // Leased by its consumer, or settled: never abandoned.
        let leased = holder("n1", Outcome::Queued, Some("a1"), NOW - 1);
        assert_eq!(decide(Some(&leased), &ask("n2", None)), Decision::Duplicate);
        let sent = holder("n1", Outcome::Sent, None, NOW - 1);
        assert_eq!(decide(Some(&sent), &ask("n2", None)), Decision::Duplicate);
    }

    #[test]
    fn replay_takes_an_unsent_claim_once_per_parking() {
        let mut r = ask("r1", Some("a9"));
        r.replay = Some(true);
        for o in [Outcome::DeadLettered, Outcome::Retrying, Outcome::Queued] {
            let h = holder("n1", o, None, 0);
            assert_eq!(decide(Some(&h), &r), Decision::Take, "{o:?}");
        }
        assert_eq!(decide(None, &r), Decision::Take);
        // Already sent (the platform dead-lettered a copy after delivery): nothing to send.
        let sent = holder("n1", Outcome::Sent, None, 0);
        assert_eq!(decide(Some(&sent), &r), Decision::Settled);
        // A second replay of the same parking: the letter was taken.
        r.replay = Some(false);
        let dl = holder("n1", Outcome::DeadLettered, None, 0);
        assert_eq!(decide(Some(&dl), &r), Decision::Duplicate);
        // An attempt is sending the original right now: wait for it.
        r.replay = Some(true);
        let busy = holder("n1", Outcome::Retrying, Some("a1"), NOW + 3000);
        assert_eq!(decide(Some(&busy), &r), Decision::Busy { retry_secs: 4 });
    }

    #[test]
    fn a_replay_copy_retried_keeps_its_claim() {
        let mut r = ask("r1", Some("a2"));
        r.replay = Some(false);
        let h = holder("r1", Outcome::Retrying, None, 0);
        assert_eq!(decide(Some(&h), &r), Decision::Take);
    }

    #[test]
    fn sends_stop_while_the_receipt_still_fits_in_the_lease() {
        assert!(may_start_send(NOW + LEASE_MS, NOW));
        assert!(!may_start_send(NOW + RECEIPT_MARGIN_MS + 1500, NOW));
    }

    #[test]
    fn orders_are_claimed_for_weeks() {
        assert!(claim_retention_ms(true) >= 60 * 86_400_000);
        assert_eq!(claim_retention_ms(false), 7 * 86_400_000);
    }
}
