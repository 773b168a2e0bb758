//! The ledger: SQLite-backed Durable Objects, sharded per pixel by a stable hash of the event
//! id (`capi_core::delivery::ledger_shard`, `LEDGER_SHARDS` objects per pixel), so one pixel
//! is not bound to what one object serves, and a webhook and a beacon with the same id meet in
//! the same shard. Each shard keeps:
//! - claims of `(event_name, event_id)` for Meta's 48-hour dedup window, each with the nonce
//!   of the message that made it: a retry or a redelivery of that message is recognised as the
//!   same claim, a second copy (webhook redelivery, double-fired beacon) as a duplicate;
//! - delivery receipts per event (outcome, reason, attempts, Meta's `fbtrace_id`), 7 days; a
//!   final outcome is never replaced by a later non-final one;
//! - counters per day, outcome and reason, dropped field and reason (bounded names).
//!
//! The queue consumer claims a whole batch in one call and records all its receipts in one
//! call; webhooks claim synchronously (they must answer `duplicate`). Expiry of claims,
//! receipts and counters runs on the object's alarm, not on every call. No customer data is
//! stored here.

use capi_core::counters::{counted_field, counted_reason};
use capi_core::delivery::{ledger_shard, Outcome};
use capi_core::report;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result,
    SqlStorageValue, State,
};

/// Meta deduplicates within 48 hours of the first event with an id (D-DEDUP).
const DEDUP_WINDOW_MS: i64 = 48 * 3600 * 1000;
/// Receipts outlive the dedup window: a week, Meta's own age limit.
const RECEIPT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Counters are kept per UTC day for this many days.
const COUNTER_RETENTION_DAYS: i64 = 8;
/// Reconciliation and coverage counters are kept longer: a quarter.
const REPORT_RETENTION_DAYS: i64 = 92;
/// Housekeeping runs at most this often.
const HOUSEKEEPING_EVERY_MS: i64 = 3600 * 1000;
const DAY_MS: i64 = 86_400_000;

#[durable_object(alarm)]
pub struct Ledger {
    state: State,
    /// Whether this instance already made sure an alarm is set.
    alarm_checked: Cell<bool>,
}

/// One event's identity in the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventKey {
    pub event_name: String,
    pub event_id: String,
}

/// A claim request: the event, the nonce of the queue message carrying it, and its source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimItem {
    pub key: EventKey,
    pub nonce: String,
    /// `webhook` for a verified order, else `beacon`: the report counts orders by it.
    #[serde(default)]
    pub source: Option<String>,
}

/// Something to count (never a value): `kind` is `dropped` (name = field) or `outcome`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Count {
    pub kind: String,
    pub name: String,
    pub reason: String,
}

impl Count {
    /// An order a verified webhook reported (reconciliation).
    pub fn order_seen() -> Count {
        Count {
            kind: report::ORDER.into(),
            name: report::SEEN.into(),
            reason: String::new(),
        }
    }

    /// Match coverage: an event of this name carried this key.
    pub fn coverage(event_name: &str, key: &str) -> Count {
        Count {
            kind: report::COVERAGE.into(),
            name: report::coverage_event_name(event_name).into(),
            reason: key.into(),
        }
    }

    /// A dropped field, with its name bounded to the known set.
    pub fn dropped(field: &str, reason: &str) -> Count {
        Count {
            kind: "dropped".into(),
            name: counted_field(field).into(),
            reason: counted_reason(reason).into(),
        }
    }

    /// An outcome and its reason.
    pub fn outcome(outcome: Outcome, reason: &str) -> Count {
        Count {
            kind: "outcome".into(),
            name: outcome.as_str().into(),
            reason: if reason.is_empty() {
                String::new()
            } else {
                counted_reason(reason).into()
            },
        }
    }
}

/// A receipt update from delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub event_name: String,
    pub event_id: String,
    /// `Outcome::as_str`.
    pub outcome: String,
    pub reason: Option<String>,
    pub attempts: u32,
    pub fbtrace_id: Option<String>,
    /// Set when the receipt is the first record of the event (a webhook order settled before
    /// any claim).
    #[serde(default)]
    pub source: Option<String>,
}

/// What the ledger said about a claimed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// First time in the window, claimed now by this nonce: send it.
    New,
    /// Claimed earlier by this same nonce (a retry or redelivery) and not settled: send it.
    Mine,
    /// Another copy holds the claim: do not send.
    Duplicate,
    /// This claim already reached a final outcome: do not send again.
    Settled,
    /// The ledger could not be reached.
    Unavailable,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Claim {
        items: Vec<ClaimItem>,
        counts: Vec<Count>,
        now_ms: i64,
    },
    Release {
        key: EventKey,
        nonce: String,
    },
    Record {
        receipts: Vec<Receipt>,
        counts: Vec<Count>,
        now_ms: i64,
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
    /// Keeps a dead letter for replay.
    Park {
        key: EventKey,
        body: String,
        reason: String,
        now_ms: i64,
    },
    /// Lists dead letters (not the events, which stay in the ledger only).
    DeadLetters,
    /// Takes the parked dead letters (one event id, or all) for replay: reopens each event's
    /// `dead_lettered` claim under a fresh nonce, atomically, so two replays cannot both send.
    Replay {
        event_id: Option<String>,
        nonce: String,
        now_ms: i64,
    },
}

fn key_text(k: &EventKey) -> SqlStorageValue {
    SqlStorageValue::String(key_string(&k.event_name, &k.event_id))
}

/// The text of a key, as stored in `events.key`.
fn key_string(event_name: &str, event_id: &str) -> String {
    format!("{event_name}\n{event_id}")
}

/// The batch claim: every item of a batch in one statement, its rows passed as one JSON
/// parameter (`k` key, `n` event name, `i` event id, `o` nonce, `s` source). A row is written
/// when its key is new or its claim has expired; two items with one key in a batch cannot
/// both win (SQLite applies the rows in turn). Returns the winners' key and nonce.
const CLAIM_SQL: &str = "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, updated_ms, nonce, source)
     SELECT j.value ->> 'k', j.value ->> 'n', j.value ->> 'i', ?, 'queued', ?, j.value ->> 'o', j.value ->> 's'
       FROM json_each(?) AS j WHERE true
     ON CONFLICT (key) DO UPDATE SET first_seen_ms = excluded.first_seen_ms, outcome = 'queued', reason = NULL,
       attempts = 0, fbtrace_id = NULL, updated_ms = excluded.updated_ms, nonce = excluded.nonce, source = excluded.source
     WHERE events.first_seen_ms < ?
     RETURNING key, nonce";

/// Who holds the keys of a JSON array of keys.
const HOLDERS_SQL: &str =
    "SELECT key, outcome, nonce FROM events WHERE key IN (SELECT value FROM json_each(?))";

/// The batch receipt upsert (rows as one JSON parameter: `k`, `n`, `i`, `o` outcome, `r`
/// reason, `a` attempts, `f` fbtrace_id, `s` source): a final outcome (`Outcome::is_final`)
/// is never replaced. Returns the rows written. Built once per isolate.
fn record_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let finals = Outcome::ALL
            .iter()
            .filter(|o| o.is_final())
            .map(|o| format!("'{}'", o.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, reason, attempts, fbtrace_id, updated_ms, source)
             SELECT j.value ->> 'k', j.value ->> 'n', j.value ->> 'i', ?, j.value ->> 'o', j.value ->> 'r',
                    j.value ->> 'a', j.value ->> 'f', ?, j.value ->> 's'
               FROM json_each(?) AS j WHERE true
             ON CONFLICT (key) DO UPDATE SET outcome = excluded.outcome, reason = excluded.reason,
               attempts = excluded.attempts, fbtrace_id = COALESCE(excluded.fbtrace_id, events.fbtrace_id), updated_ms = excluded.updated_ms
             WHERE events.outcome NOT IN ({finals})
             RETURNING outcome, reason, source, first_seen_ms"
        )
    })
}

/// A row of [`CLAIM_SQL`]'s JSON parameter.
#[derive(Serialize)]
struct ClaimRow<'a> {
    k: &'a str,
    n: &'a str,
    i: &'a str,
    o: &'a str,
    s: Option<&'a str>,
}

/// A row of [`record_sql`]'s JSON parameter.
#[derive(Serialize)]
struct ReceiptRow<'a> {
    k: &'a str,
    n: &'a str,
    i: &'a str,
    o: &'a str,
    r: Option<&'a str>,
    a: u32,
    f: Option<&'a str>,
    s: Option<&'a str>,
}

/// A text column of a row (`to_array` rows are JSON objects; one row type keeps the wasm small).
fn text<'a>(row: &'a serde_json::Value, column: &str) -> Option<&'a str> {
    row.get(column).and_then(serde_json::Value::as_str)
}

impl DurableObject for Ledger {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS events (key TEXT PRIMARY KEY, event_name TEXT NOT NULL, event_id TEXT NOT NULL,
               first_seen_ms INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0,
               fbtrace_id TEXT, updated_ms INTEGER NOT NULL, nonce TEXT, source TEXT)",
            "CREATE INDEX IF NOT EXISTS events_by_id ON events (event_id)",
            "CREATE INDEX IF NOT EXISTS events_by_age ON events (first_seen_ms)",
            "CREATE TABLE IF NOT EXISTS dead_letters (key TEXT PRIMARY KEY, event_name TEXT NOT NULL, event_id TEXT NOT NULL,
               body TEXT NOT NULL, reason TEXT NOT NULL, parked_ms INTEGER NOT NULL, replayed_ms INTEGER)",
            "CREATE TABLE IF NOT EXISTS daily_counts (day INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
               reason TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (day, kind, name, reason))",
        ] {
            let _ = sql.exec(ddl, None);
        }
        // Objects created before `source` existed.
        let _ = sql.exec("ALTER TABLE events ADD COLUMN source TEXT", None);
        Ledger {
            state,
            alarm_checked: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // One string crossing, parsed in wasm (worker-rs `json()` walks the JS object instead).
        let op: Op = serde_json::from_str(&req.text().await?)?;
        self.ensure_alarm().await;
        match op {
            Op::Claim {
                items,
                mut counts,
                now_ms,
            } => {
                let statuses = self.claim_all(&items, now_ms, &mut counts)?;
                self.count(&counts, now_ms)?;
                Response::from_json(&statuses)
            }
            Op::Release { key, nonce } => {
                self.state.storage().sql().exec(
                    "DELETE FROM events WHERE key = ? AND nonce = ?",
                    vec![key_text(&key), nonce.into()],
                )?;
                Response::from_json(&serde_json::json!({ "released": true }))
            }
            Op::Record {
                receipts,
                mut counts,
                now_ms,
            } => {
                self.record_all(&receipts, now_ms, &mut counts)?;
                self.count(&counts, now_ms)?;
                Response::from_json(&serde_json::json!({ "recorded": receipts.len() }))
            }
            Op::Receipts { event_id } => {
                self.rows_response("SELECT event_name, event_id, outcome, reason, attempts, fbtrace_id, first_seen_ms, updated_ms FROM events WHERE event_id = ?",
                        vec![event_id.into()])
            }
            Op::Report { from_day, to_day } => {
                self.rows_response("SELECT day, kind, name, reason, count FROM daily_counts
                         WHERE kind IN ('order', 'coverage') AND day BETWEEN ? AND ?",
                        vec![
                            SqlStorageValue::Integer(from_day),
                            SqlStorageValue::Integer(to_day),
                        ])
            }
            Op::Park {
                key,
                body,
                reason,
                now_ms,
            } => {
                self.state.storage().sql().exec(
                    "INSERT INTO dead_letters (key, event_name, event_id, body, reason, parked_ms) VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (key) DO UPDATE SET body = excluded.body, reason = excluded.reason,
                       parked_ms = excluded.parked_ms, replayed_ms = NULL",
                    vec![
                        key_text(&key),
                        key.event_name.clone().into(),
                        key.event_id.clone().into(),
                        body.into(),
                        counted_reason(&reason).into(),
                        SqlStorageValue::Integer(now_ms),
                    ],
                )?;
                Response::from_json(&serde_json::json!({ "parked": true }))
            }
            Op::DeadLetters => {
                self.rows_response("SELECT event_name, event_id, reason, parked_ms, replayed_ms FROM dead_letters ORDER BY parked_ms",
                        None)
            }
            Op::Replay {
                event_id,
                nonce,
                now_ms,
            } => {
                let sql = self.state.storage().sql();
                let rows: Vec<serde_json::Value> = match &event_id {
                    Some(id) => sql.exec(
                        "SELECT key, body FROM dead_letters WHERE replayed_ms IS NULL AND event_id = ?",
                        vec![id.clone().into()],
                    )?,
                    None => sql.exec(
                        "SELECT key, body FROM dead_letters WHERE replayed_ms IS NULL",
                        None,
                    )?,
                }
                .to_array()?;
                let mut bodies = Vec::with_capacity(rows.len());
                for r in &rows {
                    let (Some(key), Some(body)) = (r["key"].as_str(), r["body"].as_str()) else {
                        continue;
                    };
                    // Reopen only what is still dead-lettered: a replay never resends a sent event.
                    let reopened = sql
                        .exec(
                            "UPDATE events SET outcome = 'queued', reason = 'replayed', attempts = 0, nonce = ?, updated_ms = ?
                             WHERE key = ? AND outcome = 'dead_lettered' RETURNING key",
                            vec![
                                nonce.clone().into(),
                                SqlStorageValue::Integer(now_ms),
                                key.into(),
                            ],
                        )?
                        .to_array::<serde_json::Value>()?;
                    sql.exec(
                        "UPDATE dead_letters SET replayed_ms = ? WHERE key = ?",
                        vec![SqlStorageValue::Integer(now_ms), key.into()],
                    )?;
                    if !reopened.is_empty() {
                        bodies.push(body.to_string());
                    }
                }
                Response::from_json(&bodies)
            }
            Op::Stats { now_ms } => {
                self.rows_response("SELECT kind, name, reason, SUM(count) AS count FROM daily_counts WHERE day >= ?
                         GROUP BY kind, name, reason ORDER BY kind, name, reason",
                        vec![SqlStorageValue::Integer(
                            now_ms / DAY_MS - COUNTER_RETENTION_DAYS + 1,
                        )])
            }
        }
    }

    /// Housekeeping: claims and receipts past retention, counters past their days.
    async fn alarm(&self) -> Result<Response> {
        let now_ms = worker::Date::now().as_millis() as i64;
        let sql = self.state.storage().sql();
        sql.exec(
            "DELETE FROM events WHERE first_seen_ms < ?",
            vec![SqlStorageValue::Integer(now_ms - RECEIPT_RETENTION_MS)],
        )?;
        sql.exec(
            "DELETE FROM daily_counts WHERE day < ? AND kind NOT IN ('order', 'coverage')",
            vec![SqlStorageValue::Integer(
                now_ms / DAY_MS - COUNTER_RETENTION_DAYS + 1,
            )],
        )?;
        sql.exec(
            "DELETE FROM daily_counts WHERE day < ?",
            vec![SqlStorageValue::Integer(
                now_ms / DAY_MS - REPORT_RETENTION_DAYS + 1,
            )],
        )?;
        self.state
            .storage()
            .set_alarm(now_ms + HOUSEKEEPING_EVERY_MS)
            .await?;
        Response::ok("housekeeping done")
    }
}

impl Ledger {
    /// The rows of a query, as the JSON answer of an op.
    fn rows_response(
        &self,
        query: &str,
        args: impl Into<Option<Vec<SqlStorageValue>>>,
    ) -> Result<Response> {
        let rows: Vec<serde_json::Value> =
            self.state.storage().sql().exec(query, args)?.to_array()?;
        Response::from_json(&rows)
    }

    /// Sets the housekeeping alarm if none is set (once per instance).
    async fn ensure_alarm(&self) {
        if self.alarm_checked.get() {
            return;
        }
        let storage = self.state.storage();
        if let Ok(None) = storage.get_alarm().await {
            let at = worker::Date::now().as_millis() as i64 + HOUSEKEEPING_EVERY_MS;
            let _ = storage.set_alarm(at).await;
        }
        self.alarm_checked.set(true);
    }

    fn count(&self, counts: &[Count], now_ms: i64) -> Result<()> {
        self.count_on(counts, now_ms / DAY_MS)
    }

    fn count_on(&self, counts: &[Count], day: i64) -> Result<()> {
        let sql = self.state.storage().sql();
        // One upsert per distinct row, not per count (a batch repeats the same few rows).
        let mut rows: std::collections::BTreeMap<(&str, &str, &str), i64> =
            std::collections::BTreeMap::new();
        for c in counts {
            fn reason_or_empty(r: &str) -> &str {
                if r.is_empty() {
                    ""
                } else {
                    counted_reason(r)
                }
            }
            // Bounded again here: whatever a caller sends, no new names become rows.
            let (name, reason) = match c.kind.as_str() {
                "dropped" => (counted_field(&c.name), counted_reason(&c.reason)),
                "outcome" => (
                    Outcome::parse(&c.name).map_or("other", Outcome::as_str),
                    reason_or_empty(&c.reason),
                ),
                report::ORDER => (
                    if c.name == report::SEEN {
                        report::SEEN
                    } else {
                        Outcome::parse(&c.name).map_or("other", Outcome::as_str)
                    },
                    reason_or_empty(&c.reason),
                ),
                report::COVERAGE => (
                    report::coverage_event_name(&c.name),
                    report::COVERAGE_KEYS
                        .iter()
                        .copied()
                        .find(|k| *k == c.reason)
                        .unwrap_or("other"),
                ),
                _ => continue,
            };
            *rows.entry((c.kind.as_str(), name, reason)).or_default() += 1;
        }
        for ((kind, name, reason), n) in rows {
            sql.exec(
                "INSERT INTO daily_counts (day, kind, name, reason, count) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (day, kind, name, reason) DO UPDATE SET count = count + excluded.count",
                vec![
                    SqlStorageValue::Integer(day),
                    kind.into(),
                    name.into(),
                    reason.into(),
                    SqlStorageValue::Integer(n),
                ],
            )?;
        }
        Ok(())
    }

    /// Claims a batch in two statements whatever its size: one upsert of every item with
    /// `RETURNING` (two claims racing for a key cannot both win), then one look at who holds
    /// the keys it did not win. Adds what it counts (orders seen, duplicates) to `counts`.
    fn claim_all(
        &self,
        items: &[ClaimItem],
        now_ms: i64,
        counts: &mut Vec<Count>,
    ) -> Result<Vec<ClaimStatus>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.state.storage().sql();
        let keys: Vec<String> = items
            .iter()
            .map(|i| key_string(&i.key.event_name, &i.key.event_id))
            .collect();
        let rows: Vec<ClaimRow> = items
            .iter()
            .zip(&keys)
            .map(|(i, k)| ClaimRow {
                k,
                n: &i.key.event_name,
                i: &i.key.event_id,
                o: &i.nonce,
                s: i.source.as_deref(),
            })
            .collect();
        let won: Vec<serde_json::Value> = sql
            .exec(
                CLAIM_SQL,
                vec![
                    SqlStorageValue::Integer(now_ms),
                    SqlStorageValue::Integer(now_ms),
                    serde_json::to_string(&rows)?.into(),
                    SqlStorageValue::Integer(now_ms - DEDUP_WINDOW_MS),
                ],
            )?
            .to_array()?;
        // Linear scans: a call holds a shard's share of one batch (hundreds of events at most),
        // and a hash or tree set here measured +3.8 KB / +10 KB of gzipped wasm.
        let is_winner = |key: &str, nonce: &str| {
            won.iter()
                .any(|w| text(w, "key") == Some(key) && text(w, "nonce") == Some(nonce))
        };
        let lost: Vec<&String> = items
            .iter()
            .zip(&keys)
            .filter(|(i, k)| !is_winner(k, &i.nonce))
            .map(|(_, k)| k)
            .collect();
        let holders: Vec<serde_json::Value> = if lost.is_empty() {
            Vec::new()
        } else {
            sql.exec(HOLDERS_SQL, vec![serde_json::to_string(&lost)?.into()])?
                .to_array()?
        };
        // A key appears once per batch at most as a claim to send: a second copy in the same
        // batch (the same message delivered twice) is a duplicate, whatever its nonce.
        let mut seen: Vec<&str> = Vec::with_capacity(items.len());
        Ok(items
            .iter()
            .zip(&keys)
            .map(|(item, key)| {
                if seen.contains(&key.as_str()) {
                    counts.push(Count::outcome(Outcome::Duplicate, ""));
                    return ClaimStatus::Duplicate;
                }
                seen.push(key);
                if is_winner(key, &item.nonce) {
                    if item.source.as_deref() == Some(report::WEBHOOK) {
                        counts.push(Count::order_seen());
                    }
                    return ClaimStatus::New;
                }
                let holder = holders
                    .iter()
                    .find(|h| text(h, "key") == Some(key.as_str()));
                let outcome = holder
                    .and_then(|h| text(h, "outcome"))
                    .and_then(Outcome::parse);
                let nonce = holder.and_then(|h| text(h, "nonce"));
                match (nonce == Some(item.nonce.as_str()), outcome) {
                    (true, Some(o)) if o.is_final() => ClaimStatus::Settled,
                    (true, _) => ClaimStatus::Mine,
                    (false, _) => {
                        counts.push(Count::outcome(Outcome::Duplicate, ""));
                        ClaimStatus::Duplicate
                    }
                }
            })
            .collect())
    }

    /// Records a batch of receipts in one upsert; a final outcome already recorded is never
    /// replaced by a non-final one. Adds the outcomes written to `counts`; a webhook order's
    /// final outcome also counts for reconciliation on the day it was first seen.
    fn record_all(&self, receipts: &[Receipt], now_ms: i64, counts: &mut Vec<Count>) -> Result<()> {
        let receipts: Vec<(&Receipt, Outcome)> = receipts
            .iter()
            .filter_map(|r| Outcome::parse(&r.outcome).map(|o| (r, o)))
            .collect();
        if receipts.is_empty() {
            return Ok(());
        }
        let sql = self.state.storage().sql();
        let key_of = |r: &Receipt| key_string(&r.event_name, &r.event_id);
        // A webhook order settled before any claim (consent refused, expired) is first seen here.
        let webhook_keys: Vec<String> = receipts
            .iter()
            .filter(|(r, _)| r.source.as_deref() == Some(report::WEBHOOK))
            .map(|(r, _)| key_of(r))
            .collect();
        if !webhook_keys.is_empty() {
            let known: Vec<serde_json::Value> = sql
                .exec(
                    HOLDERS_SQL,
                    vec![serde_json::to_string(&webhook_keys)?.into()],
                )?
                .to_array()?;
            for k in &webhook_keys {
                if !known.iter().any(|h| text(h, "key") == Some(k.as_str())) {
                    counts.push(Count::order_seen());
                }
            }
        }
        let keys: Vec<String> = receipts.iter().map(|(r, _)| key_of(r)).collect();
        let rows: Vec<ReceiptRow> = receipts
            .iter()
            .zip(&keys)
            .map(|((r, o), k)| ReceiptRow {
                k,
                n: &r.event_name,
                i: &r.event_id,
                o: o.as_str(),
                r: r.reason.as_deref(),
                a: r.attempts,
                f: r.fbtrace_id.as_deref(),
                s: r.source.as_deref(),
            })
            .collect();
        let written: Vec<serde_json::Value> = sql
            .exec(
                record_sql(),
                vec![
                    SqlStorageValue::Integer(now_ms),
                    SqlStorageValue::Integer(now_ms),
                    serde_json::to_string(&rows)?.into(),
                ],
            )?
            .to_array()?;
        for w in written {
            let Some(outcome) = text(&w, "outcome").and_then(Outcome::parse) else {
                continue;
            };
            let reason = text(&w, "reason").unwrap_or("");
            if outcome.is_final() || outcome == Outcome::Retrying {
                counts.push(Count::outcome(outcome, reason));
            }
            // Reconciliation: a webhook order's final outcome counts on the day it was reported.
            if outcome.is_final() && text(&w, "source") == Some(report::WEBHOOK) {
                self.count_on(
                    &[Count {
                        kind: report::ORDER.into(),
                        name: outcome.as_str().into(),
                        reason: reason.into(),
                    }],
                    w.get("first_seen_ms")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(now_ms)
                        / DAY_MS,
                )?;
            }
        }
        Ok(())
    }
}

/// A handle on the ledger shards of one tenant's pixel: claims, receipts and counters of one
/// tenant never share an object with another's.
#[derive(Clone)]
pub struct LedgerClient {
    ns: worker::ObjectNamespace,
    /// `{tenant}/{pixel}`: the objects are `{tenant}/{pixel}/{shard}`.
    name: String,
    shards: u32,
}

impl LedgerClient {
    pub fn for_pixel(env: &Env, tenant: &str, pixel_id: &str, shards: u32) -> Option<LedgerClient> {
        Some(LedgerClient {
            ns: env.durable_object("LEDGER").ok()?,
            name: format!("{tenant}/{pixel_id}"),
            shards: shards.max(1),
        })
    }

    /// The shard holding `event_id`.
    pub fn shard_of(&self, event_id: &str) -> u32 {
        ledger_shard(event_id, self.shards)
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, shard: u32, op: &Op) -> Result<T> {
        let stub = self
            .ns
            .id_from_name(&format!("{}/{shard}", self.name))?
            .get_stub()?;
        let body = serde_json::to_string(op)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.into()));
        let req = Request::new_with_init("https://ledger/", &init)?;
        let mut resp = stub.fetch_with_request(req).await?;
        resp.json::<T>().await
    }

    fn logged<T>(op: &'static str, r: Result<T>) -> Option<T> {
        r.map_err(|e| {
            crate::log::error(
                "ledger_unavailable",
                &[("op", op.into()), ("error", crate::log::kind_of(&e).into())],
            )
        })
        .ok()
    }

    /// Claims `items` (all in `shard`) in one call, counting `counts` on the way.
    pub async fn claim(
        &self,
        shard: u32,
        items: Vec<ClaimItem>,
        counts: Vec<Count>,
        now_ms: u64,
    ) -> Vec<ClaimStatus> {
        let n = items.len();
        let op = Op::Claim {
            items,
            counts,
            now_ms: now_ms as i64,
        };
        Self::logged("claim", self.call::<Vec<ClaimStatus>>(shard, &op).await)
            .filter(|s| s.len() == n)
            .unwrap_or_else(|| vec![ClaimStatus::Unavailable; n])
    }

    /// Gives a claim back after delivery failed, so a redelivery of the webhook is sent.
    pub async fn release(&self, key: &EventKey, nonce: &str) {
        let op = Op::Release {
            key: key.clone(),
            nonce: nonce.to_string(),
        };
        let shard = self.shard_of(&key.event_id);
        Self::logged("release", self.call::<serde_json::Value>(shard, &op).await);
    }

    /// Records receipts and counts (all for `shard`) in one call; false if the ledger failed.
    pub async fn record(
        &self,
        shard: u32,
        receipts: Vec<Receipt>,
        counts: Vec<Count>,
        now_ms: u64,
    ) -> bool {
        if receipts.is_empty() && counts.is_empty() {
            return true;
        }
        let op = Op::Record {
            receipts,
            counts,
            now_ms: now_ms as i64,
        };
        Self::logged("record", self.call::<serde_json::Value>(shard, &op).await).is_some()
    }

    pub async fn receipts(&self, event_id: &str) -> Result<Vec<serde_json::Value>> {
        let op = Op::Receipts {
            event_id: event_id.to_string(),
        };
        self.call(self.shard_of(event_id), &op).await
    }

    /// Reconciliation and coverage rows of every shard for `from_day..=to_day`.
    pub async fn report_rows(&self, from_day: i64, to_day: i64) -> Result<Vec<report::CountRow>> {
        let op = Op::Report { from_day, to_day };
        let mut rows = Vec::new();
        for shard in 0..self.shards {
            for r in self.call::<Vec<serde_json::Value>>(shard, &op).await? {
                let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
                rows.push(report::CountRow {
                    day: r["day"].as_i64().unwrap_or(0),
                    kind: text("kind"),
                    name: text("name"),
                    reason: text("reason"),
                    count: r["count"].as_i64().unwrap_or(0),
                });
            }
        }
        Ok(rows)
    }

    /// Parks a dead letter in its event's shard; false if the ledger failed.
    pub async fn park(
        &self,
        queued: &crate::delivery::QueuedEvent,
        reason: &str,
        now_ms: u64,
    ) -> bool {
        let Some(e) = &queued.event else { return true };
        let op = Op::Park {
            key: EventKey {
                event_name: e.event_name.clone(),
                event_id: e.event_id.clone(),
            },
            body: queued.to_json(),
            reason: reason.to_string(),
            now_ms: now_ms as i64,
        };
        Self::logged(
            "park",
            self.call::<serde_json::Value>(self.shard_of(&e.event_id), &op)
                .await,
        )
        .is_some()
    }

    /// Dead letters of every shard (ids, reasons, times).
    pub async fn dead_letters(&self) -> Result<Vec<serde_json::Value>> {
        let mut all = Vec::new();
        for shard in 0..self.shards {
            all.extend(
                self.call::<Vec<serde_json::Value>>(shard, &Op::DeadLetters)
                    .await?,
            );
        }
        Ok(all)
    }

    /// Takes the dead letters to replay (queued-event JSON bodies), each reopened under `nonce`.
    pub async fn take_for_replay(
        &self,
        event_id: Option<&str>,
        nonce: &str,
        now_ms: u64,
    ) -> Result<Vec<String>> {
        let op = Op::Replay {
            event_id: event_id.map(str::to_string),
            nonce: nonce.to_string(),
            now_ms: now_ms as i64,
        };
        match event_id {
            Some(id) => self.call(self.shard_of(id), &op).await,
            None => {
                let mut all = Vec::new();
                for shard in 0..self.shards {
                    all.extend(self.call::<Vec<String>>(shard, &op).await?);
                }
                Ok(all)
            }
        }
    }

    /// Counter rows of every shard, summed.
    pub async fn stats(&self, now_ms: u64) -> Result<Vec<serde_json::Value>> {
        let op = Op::Stats {
            now_ms: now_ms as i64,
        };
        let mut all: Vec<serde_json::Value> = Vec::new();
        for shard in 0..self.shards {
            for row in self.call::<Vec<serde_json::Value>>(shard, &op).await? {
                let same = |r: &serde_json::Value| {
                    ["kind", "name", "reason"].iter().all(|k| r[k] == row[k])
                };
                match all.iter_mut().find(|r| same(r)) {
                    Some(r) => {
                        r["count"] = (r["count"].as_i64().unwrap_or(0)
                            + row["count"].as_i64().unwrap_or(0))
                        .into()
                    }
                    None => all.push(row),
                }
            }
        }
        Ok(all)
    }
}
