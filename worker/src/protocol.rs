//! The ledger's wire: what the Worker (delivery, webhooks, admin routes) asks a ledger shard and
//! what the shard answers, as one set of types both sides share (serde-tagged enums: a
//! misspelled op or outcome does not compile). The protocol's rules are in `capi_core::claim`.

use capi_core::delivery::Outcome;
use serde::{Deserialize, Serialize};

/// One event's identity in the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventKey {
    pub event_name: String,
    pub event_id: String,
}

impl EventKey {
    /// The text of a key, as a shard stores it.
    pub fn text(&self) -> String {
        key_text(&self.event_name, &self.event_id)
    }
}

/// The text of a key from its parts.
pub fn key_text(event_name: &str, event_id: &str) -> String {
    format!("{event_name}\n{event_id}")
}

/// Where an event came from: the report counts orders by it, and orders are claimed longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A verified order webhook: the order's Purchase (counted by reconciliation).
    Webhook,
    /// A verified webhook's later event of an order (a refund, a renewal, a trial start): kept
    /// as long as orders, not counted as an order.
    OrderUpdate,
}

/// Whether a claim of this source is an order's (kept [`capi_core::claim::ORDER_CLAIM_DAYS`]).
pub fn is_order_source(source: Option<Source>) -> bool {
    source.is_some()
}

/// What a count row counts (never a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountKind {
    /// A field ingest dropped (`name` = field, `reason` why).
    Dropped,
    /// A delivery outcome (`name` = outcome, `reason` why).
    Outcome,
    /// Reconciliation: an order seen (`name` = `seen`) or its final outcome.
    Order,
    /// Match coverage: an event of `name` carried key `reason`.
    Coverage,
}

impl CountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CountKind::Dropped => "dropped",
            CountKind::Outcome => "outcome",
            CountKind::Order => capi_core::report::ORDER,
            CountKind::Coverage => capi_core::report::COVERAGE,
        }
    }
}

/// Something to count, `n` times.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Count {
    pub kind: CountKind,
    pub name: String,
    pub reason: String,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub n: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Counts with the same row merged (a beacon with 2,000 unknown fields carries one count of
/// 2,000, not 2,000 counts, in its queue message).
pub fn merged(counts: Vec<Count>) -> Vec<Count> {
    let mut out: Vec<Count> = Vec::with_capacity(counts.len().min(16));
    for c in counts {
        match out
            .iter_mut()
            .find(|o| o.kind == c.kind && o.name == c.name && o.reason == c.reason)
        {
            Some(o) => o.n = o.n.saturating_add(c.n),
            None => out.push(c),
        }
    }
    out
}

impl Count {
    /// An order a verified webhook reported (reconciliation).
    pub fn order_seen() -> Count {
        Count {
            kind: CountKind::Order,
            name: capi_core::report::SEEN.into(),
            reason: String::new(),
            n: 1,
        }
    }

    /// Match coverage: an event of this name carried this key.
    pub fn coverage(event_name: &str, key: &str) -> Count {
        Count {
            kind: CountKind::Coverage,
            name: capi_core::report::coverage_event_name(event_name).into(),
            reason: key.into(),
            n: 1,
        }
    }

    /// A dropped field, with its name bounded to the known set.
    pub fn dropped(field: &str, reason: &str) -> Count {
        Count {
            kind: CountKind::Dropped,
            name: capi_core::counters::counted_field(field).into(),
            reason: capi_core::counters::counted_reason(reason).into(),
            n: 1,
        }
    }

    /// An outcome and its reason.
    pub fn outcome(outcome: Outcome, reason: &str) -> Count {
        Count {
            kind: CountKind::Outcome,
            name: outcome.as_str().into(),
            reason: if reason.is_empty() {
                String::new()
            } else {
                capi_core::counters::counted_reason(reason).into()
            },
            n: 1,
        }
    }
}

/// One copy of an event asking for its claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimItem {
    pub key: EventKey,
    pub nonce: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// A replay of a parked dead letter (`capi_core::claim`, rule 6).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// What ingest counted for this copy: added once, when this nonce first takes the claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<Count>,
    /// An order's match keys, kept with its Purchase's claim for its refunds
    /// (`capi_core::webhook::lifecycle::Carried`, JSON; only with `REFUNDS = event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<String>,
    /// A copy of a paid order: it takes the claim of a Purchase a failed payment held back
    /// (`capi_core::claim` rule 8).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paid: bool,
}

/// What an order's cancellation or refund finds of its Purchase (`capi_core::claim` rule 8).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseAnswer {
    /// No claim (with `cancel`: now settled `ignored / cancelled`).
    Unknown,
    /// Claimed, not delivered, nobody sending it (with `cancel`: now settled).
    Pending { carried: Option<String> },
    /// An attempt is sending it: ask again after `retry_secs`.
    InFlight { retry_secs: u32 },
    /// Sent.
    Delivered { carried: Option<String> },
    /// Settled without being sent.
    NotSent,
}

/// The claim's holder as an earlier shard layout has it (`LEDGER_PREVIOUS_SHARDS`): imported
/// into the current shard before deciding, so changing the layout sends nothing twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Imported {
    pub key: String,
    pub nonce: Option<String>,
    pub outcome: Outcome,
    pub first_seen_ms: i64,
    pub source: Option<Source>,
    /// Why a final outcome was reached (a claim another copy may take stays so in the new
    /// layout: claim rules 8 and 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A shard's answer for one copy (externally tagged, `"duplicate"` or `{"send": {…}}`: an
/// internally tagged enum would buffer every answer through serde's `Content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// This copy holds the claim (and, unless it reserved, the lease until `lease_until_ms`).
    Send { lease_until_ms: i64 },
    /// Another copy holds the event: do not send.
    Duplicate,
    /// The event reached a final outcome: do not send again.
    Settled,
    /// Another attempt is sending it: look again after `retry_secs`.
    Busy { retry_secs: u32 },
    /// The ledger could not be reached (never answered by a shard).
    Unavailable,
}

/// A receipt update from delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub key: EventKey,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub attempts: u32,
    pub fbtrace_id: Option<String>,
    /// Set when the receipt may be the first record of the event (a webhook order settled
    /// before any claim).
    #[serde(default)]
    pub source: Option<Source>,
    /// The nonce whose claim this settles: a receipt never overwrites another copy's claim.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// A dead letter to park: the queued event's JSON and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Letter {
    pub key: EventKey,
    pub body: String,
    pub reason: String,
    /// The `dead_lettered` receipt of the copy parked, written with the letter (the fallbacks
    /// park copies no delivery round recorded as dead: a queue that refused them, the platform
    /// giving up on a message); `None` when the round records it itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// The ops of a shard (externally tagged, `{"claim": {…}}`: see [`ClaimStatus`]).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Claims copies (one attempt: `attempt`, or a reservation when `None`).
    Claim {
        items: Vec<ClaimItem>,
        attempt: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        imported: Vec<Imported>,
        now_ms: i64,
    },
    /// Gives back a claim that nothing will send (a webhook the queue and Meta refused, so
    /// the platform's redelivery is sent). `attempt`: the caller's own attempt, whose lease it
    /// may give back too, since that attempt has ended.
    Release {
        key: EventKey,
        nonce: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<String>,
    },
    /// The state of an order's Purchase; with `cancel`, settles it `ignored` (with that reason)
    /// when it was not delivered and nobody is sending it (`capi_core::claim` rule 8).
    Purchase {
        key: EventKey,
        /// Settle it unsent with this reason (`cancelled`, `consent_refused`, …) if it may be.
        cancel: Option<String>,
        /// With `cancel`: also when it was never claimed (then no later copy is sent).
        create: bool,
        /// The claim as the previous layout holds it (`LEDGER_PREVIOUS_SHARDS`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        imported: Vec<Imported>,
        now_ms: i64,
    },
    /// Raises an incident (or adds `held` events to the open one): the incident when its
    /// opening is to be announced now, else null.
    IncidentOpen {
        cause: capi_core::meta_answer::Incident,
        code: i64,
        held: i64,
        now_ms: i64,
    },
    /// Ends the open incidents: the ended ones whose end is to be announced now.
    IncidentClose {
        now_ms: i64,
    },
    /// Notes that an incident's `state` was announced.
    IncidentTold {
        cause: String,
        opened_ms: i64,
        state: String,
    },
    /// The incidents, open first.
    Incidents {},
    /// Records receipts and counts.
    Record {
        receipts: Vec<Receipt>,
        counts: Vec<Count>,
        now_ms: i64,
    },
    /// Claims of these keys, as held (for a layout change: `Imported` rows).
    Holders {
        keys: Vec<String>,
    },
    Receipts {
        event_id: String,
    },
    Stats {
        now_ms: i64,
    },
    Report {
        from_day: i64,
        to_day: i64,
    },
    /// Keeps dead letters for replay.
    Park {
        letters: Vec<Letter>,
        now_ms: i64,
    },
    /// Lists dead letters (ids, reasons, times), a page at a time: at most `limit` in rowid
    /// order after the rowid `after`, each with its `rowid`.
    DeadLetters {
        #[serde(default)]
        after: i64,
        #[serde(default = "page_all")]
        limit: u32,
    },
    /// The letters waiting for replay (one event id, or all), `{rowid, body}` with the body
    /// unchanged (the replay copy takes each when it is claimed); paged as `DeadLetters`.
    Waiting {
        event_id: Option<String>,
        #[serde(default)]
        after: i64,
        #[serde(default = "page_all")]
        limit: u32,
        /// The page's bodies stop once they reach this many bytes (what is left of
        /// [`REPLAY_PAGE_BYTES`] when the page began in an earlier shard).
        #[serde(default = "replay_page_bytes")]
        bytes: u64,
    },
    /// Housekeeping now, as the hourly alarm runs it: deletes what is past its retention at
    /// `now_ms` (the alarm's clock; a test moves it forward). Never sent by the Worker.
    Housekeep {
        now_ms: i64,
    },
}

/// A page of waiting letters ends once their bodies reach this many bytes (at least one
/// letter): what one replay call holds in memory stays bounded whatever the events weigh.
pub const REPLAY_PAGE_BYTES: usize = 4_000_000;

/// A page of a list op without a limit: everything (an op from a Worker of before paging).
fn page_all() -> u32 {
    u32::MAX
}

fn replay_page_bytes() -> u64 {
    REPLAY_PAGE_BYTES as u64
}
