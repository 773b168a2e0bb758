//! A ledger shard's SQL: the schema (numbered migrations), the claim
//! protocol applied to rows (`capi_core::claim` decides, this module reads and writes), receipts,
//! dead letters, counters and housekeeping. Written against the small [`Sql`] trait so the same
//! code runs on the Durable Object's SQLite and, in the native tests below, on an in-memory
//! SQLite with a clock the test moves. Every op runs without an `await`: a shard applies it
//! whole before the next one starts.
//!
//! Long on purpose: every statement a shard runs, in one place, beside the migrations they rely on.

use crate::protocol::{
    is_order_source, ClaimItem, ClaimStatus, Count, CountKind, Imported, Letter, PurchaseAnswer,
    Receipt, Source,
};
use capi_core::claim::{
    claim_retention_ms, decide, purchase_state, reopen_of, Ask, Decision, Holder, PurchaseState,
    Reopen, LEASE_MS, RESERVATION_MS,
};
use capi_core::counters::{counted_field, counted_reason};
use capi_core::delivery::Outcome;
use capi_core::report;
use serde::Serialize;
use serde_json::Value;

/// A statement's argument.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
    Null,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        v.map_or(Arg::Null, Arg::from)
    }
}

/// What a shard's storage must do: run one statement, rows back as JSON objects.
pub trait Sql {
    type Error;
    fn run(&self, query: &str, args: Vec<Arg>) -> Result<Vec<Value>, Self::Error>;
}

/// Dead letters hold hashed contact data, IP and user agent: kept 7 days after the first
/// parking (Meta refuses events older than that, so a replay could not deliver them anyway).
pub const DEAD_LETTER_RETENTION_MS: i64 = 7 * DAY_MS;
/// Counters (`/t/stats`) are kept per UTC day for this many days.
pub const COUNTER_RETENTION_DAYS: i64 = 8;
/// Reconciliation and coverage counters (`/t/report`): a quarter.
pub const REPORT_RETENTION_DAYS: i64 = 92;
pub const DAY_MS: i64 = 86_400_000;

/// The schema, one step per version; a shard runs the steps above its version once. The
/// version lives in a one-row table, `schema_version`: Durable Objects' SQLite refuses
/// `PRAGMA user_version` (SQLITE_AUTH).
/// A step's statements may fail only where an older object already has the column (objects
/// from before migrations were numbered): such failures are ignored.
const MIGRATIONS: &[&[&str]] = &[
    // 1: claims and receipts, dead letters, counters.
    &[
        "CREATE TABLE IF NOT EXISTS events (key TEXT PRIMARY KEY, event_name TEXT NOT NULL, event_id TEXT NOT NULL,
           first_seen_ms INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0,
           fbtrace_id TEXT, updated_ms INTEGER NOT NULL, nonce TEXT)",
        "CREATE INDEX IF NOT EXISTS events_by_id ON events (event_id)",
        "CREATE TABLE IF NOT EXISTS dead_letters (key TEXT PRIMARY KEY, event_name TEXT NOT NULL, event_id TEXT NOT NULL,
           body TEXT NOT NULL, reason TEXT NOT NULL, parked_ms INTEGER NOT NULL, replayed_ms INTEGER)",
        "CREATE TABLE IF NOT EXISTS daily_counts (day INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
           reason TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (day, kind, name, reason))",
    ],
    // 2: the source of an event (orders are reconciled).
    &["ALTER TABLE events ADD COLUMN source TEXT"],
    // 3: leases, per-claim retention, replay hand-over.
    &[
        "ALTER TABLE events ADD COLUMN lease TEXT",
        "ALTER TABLE events ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE events ADD COLUMN keep_until_ms INTEGER NOT NULL DEFAULT 0",
        "UPDATE events SET keep_until_ms = first_seen_ms + CASE source WHEN 'webhook' THEN 7776000000 ELSE 604800000 END
           WHERE keep_until_ms = 0",
        "DROP INDEX IF EXISTS events_by_age",
        "CREATE INDEX IF NOT EXISTS events_by_keep ON events (keep_until_ms)",
        "ALTER TABLE dead_letters ADD COLUMN replay_nonce TEXT",
        "CREATE INDEX IF NOT EXISTS dead_letters_by_age ON dead_letters (parked_ms)",
    ],
    // 4: an order's match keys for its refunds (`REFUNDS = event` only).
    &["ALTER TABLE events ADD COLUMN carried TEXT"],
    // 5: incidents (kept by a pixel's shard 0): delivery stopped for a cause that will not fix
    // itself.
    &["CREATE TABLE IF NOT EXISTS incidents (cause TEXT PRIMARY KEY, code INTEGER NOT NULL,
         opened_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, held INTEGER NOT NULL DEFAULT 0,
         closed_ms INTEGER)"],
    // 6: an incident's alerts, told at least once: the state last announced, and when an
    // announcement was last tried (incidents from before count as told).
    &[
        "ALTER TABLE incidents ADD COLUMN told TEXT",
        "ALTER TABLE incidents ADD COLUMN told_try_ms INTEGER NOT NULL DEFAULT 0",
        "UPDATE incidents SET told = CASE WHEN closed_ms IS NULL THEN 'open' ELSE 'resolved' END",
    ],
];

/// An incident's announcement not known to have been made is tried again after this long, by
/// the next round that raises or ends it (an alert receiver that failed or timed out).
pub const ALERT_RETRY_MS: i64 = 15_000;
/// An incident's end not announced within this long after it ended is not tried again (its
/// opening is tried for as long as it is open).
pub const ALERT_END_GIVE_UP_MS: i64 = DAY_MS;

/// Closed incidents are kept this long (`/t/health`, the report).
pub const INCIDENT_RETENTION_MS: i64 = 30 * DAY_MS;

/// Brings a shard's schema to the current version.
pub fn migrate<S: Sql>(sql: &S) -> Result<(), S::Error> {
    sql.run(
        "CREATE TABLE IF NOT EXISTS schema_version (one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL)",
        Vec::new(),
    )?;
    let version = schema_version(sql)?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        for statement in *step {
            let _ = sql.run(statement, Vec::new());
        }
        sql.run(
            "INSERT INTO schema_version (one, version) VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            vec![(i as i64 + 1).into()],
        )?;
    }
    Ok(())
}

/// The schema version a shard is at (0: none yet).
pub fn schema_version<S: Sql>(sql: &S) -> Result<i64, S::Error> {
    Ok(sql
        .run("SELECT version FROM schema_version", Vec::new())?
        .first()
        .and_then(|r| r.get("version"))
        .and_then(Value::as_i64)
        .unwrap_or(0))
}

fn text<'a>(row: &'a Value, column: &str) -> Option<&'a str> {
    row.get(column).and_then(Value::as_str)
}

fn int(row: &Value, column: &str) -> i64 {
    row.get(column).and_then(Value::as_i64).unwrap_or(0)
}

fn json_list<T: Serialize>(items: &T) -> Arg {
    Arg::Text(serde_json::to_string(items).unwrap_or_else(|_| "[]".into()))
}

/// The claims held for `keys` (`key`, `nonce`, `outcome`, `lease`, `lease_until_ms`, …).
pub fn holders<S: Sql>(sql: &S, keys: &[String]) -> Result<Vec<Value>, S::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    sql.run(
        "SELECT key, nonce, outcome, reason, lease, lease_until_ms, first_seen_ms, source FROM events
          WHERE key IN (SELECT value FROM json_each(?))",
        vec![json_list(&keys)],
    )
}

/// The claims of `keys` as another layout would import them.
pub fn exported<S: Sql>(sql: &S, keys: &[String]) -> Result<Vec<Imported>, S::Error> {
    Ok(holders(sql, keys)?
        .iter()
        .filter_map(|h| {
            Some(Imported {
                key: text(h, "key")?.to_string(),
                nonce: text(h, "nonce").map(str::to_string),
                outcome: serde_json::from_value(h.get("outcome")?.clone()).ok()?,
                first_seen_ms: int(h, "first_seen_ms"),
                source: text(h, "source").and_then(|s| serde_json::from_value(s.into()).ok()),
                reason: text(h, "reason").map(str::to_string),
            })
        })
        .collect())
}

/// A row of the claim upsert's JSON parameter.
#[derive(Serialize)]
struct TakeRow<'a> {
    k: &'a str,
    n: &'a str,
    i: &'a str,
    o: &'a str,
    s: Option<Source>,
    l: Option<&'a str>,
    u: i64,
    keep: i64,
}

const TAKE_SQL: &str = "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, updated_ms, nonce, source,
       lease, lease_until_ms, keep_until_ms)
     SELECT j.value ->> 'k', j.value ->> 'n', j.value ->> 'i', ?, 'queued', ?, j.value ->> 'o', j.value ->> 's',
       j.value ->> 'l', j.value ->> 'u', j.value ->> 'keep'
       FROM json_each(?) AS j WHERE true
     ON CONFLICT (key) DO UPDATE SET
       first_seen_ms = CASE WHEN excluded.source = 'webhook' AND COALESCE(events.source, '') <> 'webhook'
         THEN excluded.first_seen_ms ELSE events.first_seen_ms END,
       outcome = CASE WHEN events.nonce IS excluded.nonce THEN events.outcome ELSE 'queued' END,
       reason = CASE WHEN events.nonce IS excluded.nonce THEN events.reason ELSE NULL END,
       attempts = CASE WHEN events.nonce IS excluded.nonce THEN events.attempts ELSE 0 END,
       source = CASE WHEN events.nonce IS excluded.nonce THEN events.source ELSE COALESCE(excluded.source, events.source) END,
       nonce = excluded.nonce, lease = excluded.lease, lease_until_ms = excluded.lease_until_ms,
       updated_ms = excluded.updated_ms, keep_until_ms = MAX(events.keep_until_ms, excluded.keep_until_ms)";

/// New claims only: a key already held is left alone (and not returned).
const FRESH_SQL: &str = "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, updated_ms, nonce, source,
       lease, lease_until_ms, keep_until_ms)
     SELECT j.value ->> 'k', j.value ->> 'n', j.value ->> 'i', ?, 'queued', ?, j.value ->> 'o', j.value ->> 's',
       j.value ->> 'l', j.value ->> 'u', j.value ->> 'keep'
       FROM json_each(?) AS j WHERE true
     ON CONFLICT (key) DO NOTHING
     RETURNING key";

/// One holder as decided on in this call.
struct Held {
    key: String,
    nonce: String,
    outcome: Outcome,
    lease: Option<String>,
    lease_until_ms: i64,
    /// Which other copies may take it although it is final (claim rules 8 and 9).
    reopen: Reopen,
    /// The reconciliation count a webhook order's final outcome added: `(day, outcome, reason)`.
    counted: Option<Counted>,
    first_seen_ms: i64,
    /// Held by an order's webhook copy (counted as a seen order when it was taken).
    order: bool,
    /// Held by a verified webhook's copy (an order's or its update's: claim rule 10).
    signed: bool,
}

/// Whether a claim row's `source` names a verified webhook (an import writes `""` for none).
fn signed_source(row: &Value) -> bool {
    text(row, "source").is_some_and(|s| !s.is_empty())
}

/// A webhook order's final outcome as reconciliation counted it: the day it was first seen,
/// the outcome and its counted reason.
type Counted = (i64, Outcome, String);

/// What reconciliation counted for the claim in `row` (`outcome`, `reason`, `source`,
/// `first_seen_ms`), if anything: a webhook order's final outcome.
fn counted(row: &Value, outcome: Outcome) -> Option<Counted> {
    (outcome.is_final() && text(row, "source") == Some(report::WEBHOOK)).then(|| {
        (
            int(row, "first_seen_ms") / DAY_MS,
            outcome,
            reason_or_empty(text(row, "reason").unwrap_or("")).to_string(),
        )
    })
}

/// Takes back the reconciliation count of an order's final outcome when a claim settled without
/// Meta getting the event (claim rules 8 and 9) reaches another outcome after all: an order
/// counts once, by its final outcome.
fn uncount<S: Sql>(sql: &S, counted: &Counted) -> Result<(), S::Error> {
    let (day, outcome, reason) = counted;
    uncount_order(sql, *day, outcome.as_str(), reason)
}

/// Takes one off reconciliation's `name` / `reason` row of `day` (never below zero).
fn uncount_order<S: Sql>(sql: &S, day: i64, name: &str, reason: &str) -> Result<(), S::Error> {
    sql.run(
        "UPDATE daily_counts SET count = count - 1
          WHERE day = ? AND kind = ? AND name = ? AND reason = ? AND count > 0",
        vec![
            day.into(),
            CountKind::Order.as_str().into(),
            name.into(),
            reason.into(),
        ],
    )?;
    Ok(())
}

/// The lease an open claim copied from an earlier layout is held under for its first minute.
const IMPORTED_LEASE: &str = "imported";

/// Copies the claims an earlier layout holds (`LEDGER_PREVIOUS_SHARDS`) into this shard, where
/// this shard has none of its own.
fn import<S: Sql>(sql: &S, imported: &[Imported], now_ms: i64) -> Result<(), S::Error> {
    for im in imported {
        let Some((name, id)) = im.key.split_once('\n') else {
            continue;
        };
        let order = is_order_source(im.source);
        // An open claim comes without its lease: it is held under a lease of its own for a
        // minute (an attempt of the earlier layout may still be sending it), and is never taken
        // as an abandoned reservation (rule 7).
        let (lease, held_until) = if im.outcome.is_final() {
            (None, 0)
        } else {
            (Some(IMPORTED_LEASE), now_ms + RESERVATION_MS)
        };
        sql.run(
            "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, updated_ms, nonce, source, keep_until_ms,
                reason, lease, lease_until_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            vec![
                im.key.clone().into(),
                name.into(),
                id.into(),
                im.first_seen_ms.into(),
                im.outcome.as_str().into(),
                now_ms.into(),
                im.nonce.clone().unwrap_or_default().into(),
                im.source
                    .and_then(|s| serde_json::to_value(s).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
                    .into(),
                (im.first_seen_ms + claim_retention_ms(order)).into(),
                im.reason.as_deref().into(),
                lease.into(),
                held_until.into(),
            ],
        )?;
    }
    Ok(())
}

/// Claims copies of events for one attempt (or reserves them when `attempt` is `None`):
/// imports what an earlier layout holds, decides each copy in order against the holder as it
/// stands after the copies before it, writes every taken claim in one statement and hands
/// replayed letters over. Adds what it counts (ingest's counts of first takes, orders seen,
/// duplicates) to `counts`.
pub fn claim<S: Sql>(
    sql: &S,
    items: &[ClaimItem],
    attempt: Option<&str>,
    imported: &[Imported],
    now_ms: i64,
    counts: &mut Vec<Count>,
) -> Result<Vec<ClaimStatus>, S::Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    import(sql, imported, now_ms)?;
    let keys: Vec<String> = items.iter().map(|i| i.key.text()).collect();
    // A reservation holds without a lease until it is taken or abandoned (claim rule 7).
    let lease_until_ms = if attempt.is_some() {
        now_ms + LEASE_MS
    } else {
        now_ms + RESERVATION_MS
    };
    let take_row = |n: usize| {
        let item = &items[n];
        TakeRow {
            k: &keys[n],
            n: &item.key.event_name,
            i: &item.key.event_id,
            o: &item.nonce,
            s: item.source,
            l: attempt,
            u: lease_until_ms,
            keep: now_ms + claim_retention_ms(is_order_source(item.source)),
        }
    };
    // The common case first, in one statement: keys the shard has never seen are taken as they
    // are inserted (the first copy of each key in this call; replays go the long way, their
    // letters must be handed over).
    // Sorted vectors, not hash or tree sets: a shard's share of a batch can be a thousand
    // events, and the sets measured +3.8 KB / +10 KB of gzipped wasm.
    let mut seen: Vec<&str> = Vec::with_capacity(items.len());
    let mut first = vec![false; items.len()];
    for (n, key) in keys.iter().enumerate() {
        if let Err(at) = seen.binary_search(&key.as_str()) {
            seen.insert(at, key);
            first[n] = !items[n].replay;
        }
    }
    let firsts: Vec<usize> = (0..items.len()).filter(|n| first[*n]).collect();
    let mut fresh: Vec<String> = if firsts.is_empty() {
        Vec::new()
    } else {
        let rows: Vec<TakeRow> = firsts.iter().map(|n| take_row(*n)).collect();
        sql.run(
            FRESH_SQL,
            vec![now_ms.into(), now_ms.into(), json_list(&rows)],
        )?
        .iter()
        .filter_map(|r| text(r, "key").map(str::to_string))
        .collect()
    };
    fresh.sort_unstable();
    let is_fresh = |n: usize| first[n] && fresh.binary_search(&keys[n]).is_ok();
    let others: Vec<String> = (0..items.len())
        .filter(|n| !is_fresh(*n))
        .map(|n| keys[n].clone())
        .collect();
    let mut held: Vec<Held> = holders(sql, &others)?
        .iter()
        .filter_map(|h| {
            let outcome = serde_json::from_value(h.get("outcome")?.clone()).ok()?;
            Some(Held {
                key: text(h, "key")?.to_string(),
                nonce: text(h, "nonce").unwrap_or("").to_string(),
                outcome,
                lease: text(h, "lease").map(str::to_string),
                lease_until_ms: int(h, "lease_until_ms"),
                reopen: reopen_of(outcome, text(h, "reason")),
                counted: counted(h, outcome),
                first_seen_ms: int(h, "first_seen_ms"),
                order: text(h, "source") == Some(report::WEBHOOK),
                signed: signed_source(h),
            })
        })
        .collect();
    let replay_keys: Vec<&String> = items
        .iter()
        .zip(&keys)
        .filter(|(i, _)| i.replay)
        .map(|(_, k)| k)
        .collect();
    let waiting: Vec<String> = if replay_keys.is_empty() {
        Vec::new()
    } else {
        sql.run(
            "SELECT key FROM dead_letters WHERE replayed_ms IS NULL AND key IN (SELECT value FROM json_each(?))",
            vec![json_list(&replay_keys)],
        )?
        .iter()
        .filter_map(|r| text(r, "key").map(str::to_string))
        .collect()
    };
    let mut statuses = Vec::with_capacity(items.len());
    let mut taken: Vec<usize> = Vec::new();
    let mut taken_keys: Vec<&str> = Vec::new();
    let mut letters_done: Vec<&str> = Vec::new();
    // What reconciliation counted for orders settled without being sent that another copy now
    // takes over (claim rules 8 and 9): the order's final outcome is that copy's.
    let mut reopened: Vec<Counted> = Vec::new();
    for (n, (item, key)) in items.iter().zip(&keys).enumerate() {
        // A second copy of a key already taken in this call (one message delivered twice into
        // the same batch): the first copy sends it.
        if taken_keys.binary_search(&key.as_str()).is_ok() {
            counts.push(Count::outcome(Outcome::Duplicate, "redelivered"));
            statuses.push(ClaimStatus::Duplicate);
            continue;
        }
        if is_fresh(n) {
            counts.extend(item.counts.iter().cloned());
            if item.source == Some(Source::Webhook) {
                counts.push(Count::order_seen());
            }
            taken.push(n);
            if let Err(at) = taken_keys.binary_search(&key.as_str()) {
                taken_keys.insert(at, key);
            }
            statuses.push(ClaimStatus::Send { lease_until_ms });
            continue;
        }
        let current = held.iter().position(|h| h.key == *key);
        let holder = current.map(|p| {
            let h = &held[p];
            Holder {
                nonce: &h.nonce,
                outcome: h.outcome,
                lease: h.lease.as_deref(),
                lease_until_ms: h.lease_until_ms,
                reopen: h.reopen,
                signed: h.signed,
            }
        });
        let ask = Ask {
            nonce: &item.nonce,
            attempt,
            replay: item.replay.then(|| waiting.contains(key)),
            paid: item.paid,
            signed: item.source.is_some(),
            now_ms,
        };
        let status = match decide(holder.as_ref(), &ask) {
            Decision::Take => {
                let first_take = holder.is_none_or(|h| h.nonce != item.nonce);
                // Another copy takes a settled claim (a replay of a dead letter, rules 6, 8, 9
                // and 10): the order counts by the outcome it reaches now, not also the old one.
                if first_take {
                    reopened.extend(current.and_then(|p| held[p].counted.clone()));
                }
                if first_take {
                    counts.extend(item.counts.iter().cloned());
                    // An order is seen once: when its webhook first holds its claim (a beacon's
                    // copy may have held it before, claim rule 10).
                    let seen = current.is_some_and(|p| held[p].order);
                    if !seen && item.source == Some(Source::Webhook) {
                        counts.push(Count::order_seen());
                    }
                }
                // A signed copy that takes a dead-lettered claim (rule 10) replays its letter.
                if item.replay
                    || (first_take && holder.is_some_and(|h| h.outcome == Outcome::DeadLettered))
                {
                    letters_done.push(key);
                }
                let row = Held {
                    key: key.clone(),
                    nonce: item.nonce.clone(),
                    outcome: if first_take {
                        Outcome::Queued
                    } else {
                        holder.map_or(Outcome::Queued, |h| h.outcome)
                    },
                    lease: attempt.map(str::to_string),
                    lease_until_ms,
                    reopen: Reopen::Never,
                    counted: None,
                    first_seen_ms: current.map_or(now_ms, |p| held[p].first_seen_ms),
                    order: item.source == Some(Source::Webhook)
                        || current.is_some_and(|p| held[p].order),
                    signed: item.source.is_some() || current.is_some_and(|p| held[p].signed),
                };
                match current {
                    Some(p) => held[p] = row,
                    None => held.push(row),
                }
                taken.push(n);
                if let Err(at) = taken_keys.binary_search(&key.as_str()) {
                    taken_keys.insert(at, key);
                }
                ClaimStatus::Send { lease_until_ms }
            }
            Decision::Duplicate => {
                counts.push(Count::outcome(Outcome::Duplicate, ""));
                ClaimStatus::Duplicate
            }
            Decision::Settled => {
                if item.replay {
                    letters_done.push(key);
                }
                counts.push(Count::outcome(Outcome::Duplicate, "redelivered"));
                ClaimStatus::Settled
            }
            Decision::Busy { retry_secs } => ClaimStatus::Busy { retry_secs },
        };
        statuses.push(status);
    }
    let rewritten: Vec<TakeRow> = taken
        .iter()
        .filter(|t| !is_fresh(**t))
        .map(|t| take_row(*t))
        .collect();
    if !rewritten.is_empty() {
        let rows = rewritten;
        sql.run(
            TAKE_SQL,
            vec![now_ms.into(), now_ms.into(), json_list(&rows)],
        )?;
    }
    for &t in &taken {
        if let Some(carried) = &items[t].carried {
            sql.run(
                "UPDATE events SET carried = ? WHERE key = ? AND nonce = ?",
                vec![
                    carried.as_str().into(),
                    keys[t].as_str().into(),
                    items[t].nonce.as_str().into(),
                ],
            )?;
        }
    }
    for c in &reopened {
        uncount(sql, c)?;
    }
    if !letters_done.is_empty() {
        // The letter is taken by this replay copy: a second replay of the same parking finds
        // it taken; a new parking (the replay failed too) makes it wait again.
        let nonces: Vec<(&str, &str)> = items
            .iter()
            .zip(&keys)
            .filter(|(_, k)| letters_done.contains(&k.as_str()))
            .map(|(i, k)| (k.as_str(), i.nonce.as_str()))
            .collect();
        for (key, nonce) in nonces {
            sql.run(
                "UPDATE dead_letters SET replayed_ms = ?, replay_nonce = ? WHERE key = ? AND replayed_ms IS NULL",
                vec![now_ms.into(), nonce.into(), key.into()],
            )?;
        }
    }
    Ok(statuses)
}

/// The state of an order's Purchase (`key`); with `cancel`, settles it `ignored / cancelled`
/// when it may be (claim rule 8), counting the order's outcome for reconciliation.
#[allow(clippy::too_many_arguments)]
pub fn purchase<S: Sql>(
    sql: &S,
    key: &crate::protocol::EventKey,
    cancel: Option<&str>,
    create: bool,
    imported: &[Imported],
    now_ms: i64,
    counts: &mut Vec<Count>,
) -> Result<PurchaseAnswer, S::Error> {
    import(sql, imported, now_ms)?;
    let text_key = key.text();
    let rows = sql.run(
        "SELECT nonce, outcome, reason, lease, lease_until_ms, carried, first_seen_ms, source FROM events WHERE key = ?",
        vec![text_key.as_str().into()],
    )?;
    let row = rows.first();
    let outcome = row
        .and_then(|r| r.get("outcome"))
        .and_then(|o| serde_json::from_value::<Outcome>(o.clone()).ok());
    let holder = row.zip(outcome).map(|(r, outcome)| Holder {
        nonce: text(r, "nonce").unwrap_or(""),
        outcome,
        lease: text(r, "lease"),
        lease_until_ms: int(r, "lease_until_ms"),
        reopen: reopen_of(outcome, text(r, "reason")),
        signed: signed_source(r),
    });
    let state = purchase_state(holder.as_ref(), now_ms);
    let carried = row.and_then(|r| text(r, "carried")).map(str::to_string);
    // A Purchase settled without being sent that another copy may still take (a failed payment,
    // a copy refused for what it lacked: claim rules 8 and 9) is still open to a cancellation, or
    // to another failed payment: either settles it again, and the order is counted by that
    // outcome alone.
    let held_back = holder.is_some_and(|h| h.reopen != Reopen::Never);
    let cancel = cancel.map(counted_reason).filter(|_| {
        (state.cancellable() || held_back) && (create || state != PurchaseState::Unknown)
    });
    if let Some(reason) = cancel {
        // The order counts by its cancellation alone (a held-back or dead-lettered Purchase
        // was counted by that outcome).
        if let Some(c) = row.zip(outcome).and_then(|(r, o)| counted(r, o)) {
            uncount(sql, &c)?;
        }
        if state == PurchaseState::Unknown {
            // The cancellation came first: the order's Purchase, if it comes, is a duplicate.
            counts.push(Count::order_seen());
        }
        sql.run(
            "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, reason, updated_ms, nonce, source,
                keep_until_ms)
             VALUES (?, ?, ?, ?, 'ignored', ?, ?, 'cancellation', 'webhook', ?)
             ON CONFLICT (key) DO UPDATE SET outcome = 'ignored', reason = excluded.reason, lease = NULL,
               lease_until_ms = 0, updated_ms = excluded.updated_ms, carried = NULL",
            vec![
                text_key.as_str().into(),
                key.event_name.as_str().into(),
                key.event_id.as_str().into(),
                now_ms.into(),
                reason.into(),
                now_ms.into(),
                (now_ms + claim_retention_ms(true)).into(),
            ],
        )?;
        counts.push(Count::outcome(Outcome::Ignored, reason));
        let first_seen = sql
            .run(
                "SELECT first_seen_ms FROM events WHERE key = ?",
                vec![text_key.as_str().into()],
            )?
            .first()
            .map_or(now_ms, |r| int(r, "first_seen_ms"));
        add_counts(
            sql,
            &[Count {
                kind: CountKind::Order,
                name: Outcome::Ignored.as_str().into(),
                reason: reason.into(),
                n: 1,
            }],
            first_seen / DAY_MS,
        )?;
    }
    Ok(match state {
        // Held back, and settled again now: answered as the waiting Purchase it was.
        PurchaseState::NotSent if held_back && cancel.is_some() => {
            PurchaseAnswer::Pending { carried }
        }
        PurchaseState::Unknown => PurchaseAnswer::Unknown,
        PurchaseState::Pending => PurchaseAnswer::Pending { carried },
        PurchaseState::InFlight { retry_secs } => PurchaseAnswer::InFlight { retry_secs },
        PurchaseState::Delivered => PurchaseAnswer::Delivered { carried },
        PurchaseState::NotSent => PurchaseAnswer::NotSent,
    })
}

/// Raises (or adds to) an incident; the incident when its opening is to be announced now (it
/// opened now, or its announcement failed before and is due again).
pub fn incident_open<S: Sql>(
    sql: &S,
    cause: &str,
    code: i64,
    held: i64,
    now_ms: i64,
) -> Result<Option<Value>, S::Error> {
    sql.run(
        "INSERT INTO incidents (cause, code, opened_ms, last_ms, held) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (cause) DO UPDATE SET code = excluded.code, last_ms = excluded.last_ms,
           held = CASE WHEN incidents.closed_ms IS NULL THEN incidents.held + excluded.held ELSE excluded.held END,
           opened_ms = CASE WHEN incidents.closed_ms IS NULL THEN incidents.opened_ms ELSE excluded.opened_ms END,
           told = CASE WHEN incidents.closed_ms IS NULL THEN incidents.told END,
           told_try_ms = CASE WHEN incidents.closed_ms IS NULL THEN incidents.told_try_ms ELSE 0 END,
           closed_ms = NULL",
        vec![cause.into(), code.into(), now_ms.into(), now_ms.into(), held.into()],
    )?;
    Ok(to_tell(
        sql,
        "closed_ms IS NULL AND told IS NOT 'open' AND cause = ?",
        vec![cause.into()],
        now_ms,
    )?
    .pop())
}

/// The incidents matching `which` whose announcement is due (never made, or its last try
/// longer ago than [`ALERT_RETRY_MS`]), each marked as tried now: concurrent rounds do not
/// both announce it. `args` are `which`'s.
fn to_tell<S: Sql>(
    sql: &S,
    which: &str,
    args: Vec<Arg>,
    now_ms: i64,
) -> Result<Vec<Value>, S::Error> {
    let mut all: Vec<Arg> = vec![now_ms.into()];
    all.extend(args);
    all.push((now_ms - ALERT_RETRY_MS).into());
    sql.run(
        &format!(
            "UPDATE incidents SET told_try_ms = ? WHERE {which} AND told_try_ms <= ?
             RETURNING cause, code, opened_ms, last_ms, held, closed_ms"
        ),
        all,
    )
}

/// Ends the open incidents (Meta took events again); returns the ended ones whose end is still
/// to be announced (now, or an announcement that failed before).
pub fn incident_close<S: Sql>(sql: &S, now_ms: i64) -> Result<Vec<Value>, S::Error> {
    sql.run(
        "UPDATE incidents SET closed_ms = ? WHERE closed_ms IS NULL",
        vec![now_ms.into()],
    )?;
    to_tell(
        sql,
        "closed_ms IS NOT NULL AND told IS NOT 'resolved' AND closed_ms > ?",
        vec![(now_ms - ALERT_END_GIVE_UP_MS).into()],
        now_ms,
    )
}

/// Notes that `state` of the incident `cause` opened at `opened_ms` was announced (or that
/// there is no one to tell): its next state is announced as soon as it comes. An incident
/// opened again since is not affected.
pub fn incident_told<S: Sql>(
    sql: &S,
    cause: &str,
    opened_ms: i64,
    state: &str,
) -> Result<(), S::Error> {
    sql.run(
        "UPDATE incidents SET told = ?, told_try_ms = 0 WHERE cause = ? AND opened_ms = ?",
        vec![state.into(), cause.into(), opened_ms.into()],
    )?;
    Ok(())
}

/// The incidents, open first.
pub fn incidents<S: Sql>(sql: &S) -> Result<Vec<Value>, S::Error> {
    sql.run(
        "SELECT cause, code, opened_ms, last_ms, held, closed_ms FROM incidents
          ORDER BY closed_ms IS NOT NULL, opened_ms DESC",
        Vec::new(),
    )
}

/// Gives back `key`'s claim if `nonce` still holds it and it is not final.
pub fn release<S: Sql>(
    sql: &S,
    key: &str,
    nonce: &str,
    attempt: Option<&str>,
    now_ms: i64,
) -> Result<(), S::Error> {
    // Never a claim another attempt is sending under: its lease must have ended. The caller's
    // own attempt (`attempt`) has: a lease it still holds (its receipt was not written, or its
    // claim answered after it stopped waiting) goes with the claim.
    let gone = sql.run(
        "DELETE FROM events WHERE key = ? AND nonce = ? AND outcome IN ('queued', 'retrying')
           AND (lease IS NULL OR lease_until_ms <= ? OR lease = ?)
         RETURNING source, first_seen_ms",
        vec![
            key.into(),
            nonce.into(),
            now_ms.into(),
            attempt.into(),
        ],
    )?;
    // A dead letter the released copy took over (claim rule 10) waits for its replay again.
    if !gone.is_empty() {
        sql.run(
            "UPDATE dead_letters SET replayed_ms = NULL, replay_nonce = NULL WHERE key = ? AND replay_nonce = ?",
            vec![key.into(), nonce.into()],
        )?;
    }
    // The claim counted its order as seen when it was taken fresh: the copy that takes it next
    // counts it again, so the order is seen once.
    for row in gone
        .iter()
        .filter(|r| text(r, "source") == Some(report::WEBHOOK))
    {
        uncount_order(sql, int(row, "first_seen_ms") / DAY_MS, report::SEEN, "")?;
    }
    Ok(())
}

/// A row of the receipt upsert's JSON parameter.
#[derive(Serialize)]
struct ReceiptRow<'a> {
    k: String,
    n: &'a str,
    i: &'a str,
    o: Outcome,
    r: Option<&'a str>,
    a: u32,
    f: Option<&'a str>,
    s: Option<Source>,
    h: Option<&'a str>,
    keep: i64,
}

/// The receipt upsert: a final outcome is never replaced, another copy's claim never
/// overwritten; any receipt ends the lease (a `retrying` event's retry takes a new one).
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
            "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, reason, attempts, fbtrace_id, updated_ms,
                source, nonce, keep_until_ms)
             SELECT j.value ->> 'k', j.value ->> 'n', j.value ->> 'i', ?, j.value ->> 'o', j.value ->> 'r',
                    j.value ->> 'a', j.value ->> 'f', ?, j.value ->> 's', j.value ->> 'h', j.value ->> 'keep'
               FROM json_each(?) AS j WHERE true
             ON CONFLICT (key) DO UPDATE SET outcome = excluded.outcome, reason = excluded.reason,
               attempts = excluded.attempts, fbtrace_id = COALESCE(excluded.fbtrace_id, events.fbtrace_id),
               updated_ms = excluded.updated_ms, lease = NULL, lease_until_ms = 0
             WHERE events.outcome NOT IN ({finals}) AND (excluded.nonce IS NULL OR events.nonce IS excluded.nonce)
             RETURNING event_name, outcome, reason, source, first_seen_ms"
        )
    })
}

/// Records receipts in one upsert. Adds the outcomes written to `counts`; returns the
/// reconciliation counts of webhook orders' final outcomes, each with the day it was first seen.
pub fn record<S: Sql>(
    sql: &S,
    receipts: &[Receipt],
    now_ms: i64,
    counts: &mut Vec<Count>,
) -> Result<(), S::Error> {
    if receipts.is_empty() {
        return Ok(());
    }
    // A webhook order settled before any claim (consent refused, expired) is first seen here.
    let webhook_keys: Vec<String> = receipts
        .iter()
        .filter(|r| r.source == Some(Source::Webhook))
        .map(|r| r.key.text())
        .collect();
    if !webhook_keys.is_empty() {
        let known = holders(sql, &webhook_keys)?;
        for k in &webhook_keys {
            if !known.iter().any(|h| text(h, "key") == Some(k.as_str())) {
                counts.push(Count::order_seen());
            }
        }
    }
    let rows: Vec<ReceiptRow> = receipts
        .iter()
        .map(|r| ReceiptRow {
            k: r.key.text(),
            n: &r.key.event_name,
            i: &r.key.event_id,
            o: r.outcome,
            r: r.reason.as_deref(),
            a: r.attempts,
            f: r.fbtrace_id.as_deref(),
            s: r.source,
            h: r.nonce.as_deref(),
            keep: now_ms + claim_retention_ms(is_order_source(r.source)),
        })
        .collect();
    let written = sql.run(
        record_sql(),
        vec![now_ms.into(), now_ms.into(), json_list(&rows)],
    )?;
    for w in written {
        let Some(outcome) = w
            .get("outcome")
            .and_then(|o| serde_json::from_value::<Outcome>(o.clone()).ok())
        else {
            continue;
        };
        let reason = text(&w, "reason").unwrap_or("");
        // A webhook's mark is no event: never counted.
        if text(&w, "event_name") == Some(capi_core::webhook::lifecycle::MARK_EVENT) {
            continue;
        }
        if outcome.is_final() || outcome == Outcome::Retrying {
            counts.push(Count::outcome(outcome, reason));
        }
        // Reconciliation: a webhook order's final outcome counts on the day it was reported.
        if outcome.is_final() && text(&w, "source") == Some(report::WEBHOOK) {
            let day = w
                .get("first_seen_ms")
                .and_then(Value::as_i64)
                .unwrap_or(now_ms)
                / DAY_MS;
            add_counts(
                sql,
                &[Count {
                    kind: CountKind::Order,
                    name: outcome.as_str().into(),
                    reason: reason.into(),
                    n: 1,
                }],
                day,
            )?;
        }
    }
    Ok(())
}

/// Parks dead letters (a new parking waits for replay again). A letter parked again keeps the
/// time it was first parked: its retention runs from then, however often a replay fails.
pub fn park<S: Sql>(
    sql: &S,
    letters: &[Letter],
    now_ms: i64,
    counts: &mut Vec<Count>,
) -> Result<(), S::Error> {
    // A parked copy's receipt settles its claim unless an attempt is sending it now (the queue
    // stored the batch it refused, and the consumer holds the lease): that attempt's receipt
    // stands, and the letter is only a spare.
    let mut receipts: Vec<Receipt> = letters.iter().filter_map(|l| l.receipt.clone()).collect();
    if !receipts.is_empty() {
        let keys: Vec<String> = receipts.iter().map(|r| r.key.text()).collect();
        let leased: Vec<String> = holders(sql, &keys)?
            .iter()
            .filter(|h| text(h, "lease").is_some() && int(h, "lease_until_ms") > now_ms)
            .filter_map(|h| text(h, "key").map(str::to_string))
            .collect();
        receipts.retain(|r| !leased.contains(&r.key.text()));
        record(sql, &receipts, now_ms, counts)?;
    }
    for l in letters {
        sql.run(
            "INSERT INTO dead_letters (key, event_name, event_id, body, reason, parked_ms) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (key) DO UPDATE SET body = excluded.body, reason = excluded.reason,
               replayed_ms = NULL, replay_nonce = NULL",
            vec![
                l.key.text().into(),
                l.key.event_name.as_str().into(),
                l.key.event_id.as_str().into(),
                l.body.as_str().into(),
                counted_reason(&l.reason).into(),
                now_ms.into(),
            ],
        )?;
    }
    Ok(())
}

/// The letters waiting for replay (one event's, or all), `{rowid, body}` with the body
/// unchanged: at most `limit`, in rowid order after `after`, and no more once their bodies reach
/// `bytes` (a page of a replay: [`crate::protocol::REPLAY_PAGE_BYTES`] over every shard).
pub fn waiting<S: Sql>(
    sql: &S,
    event_id: Option<&str>,
    (after, limit): (i64, u32),
    bytes: u64,
) -> Result<Vec<Value>, S::Error> {
    // The page also ends once its bodies reach `bytes` (always one letter at least): a body
    // may be up to a queue message long.
    sql.run(
        "SELECT rowid, body FROM (SELECT rowid, body, SUM(length(body)) OVER (ORDER BY rowid) - length(body) AS before
           FROM (SELECT rowid, body FROM dead_letters WHERE replayed_ms IS NULL AND rowid > ?
                   AND (? IS NULL OR event_id = ?) ORDER BY rowid LIMIT ?))
         WHERE before < ? ORDER BY rowid",
        vec![
            after.into(),
            event_id.into(),
            event_id.into(),
            i64::from(limit).into(),
            (bytes.min(i64::MAX as u64) as i64).into(),
        ],
    )
}

/// Housekeeping: every stored copy of an event past its retention goes.
pub fn housekeep<S: Sql>(sql: &S, now_ms: i64) -> Result<(), S::Error> {
    sql.run(
        "DELETE FROM events WHERE keep_until_ms < ?",
        vec![now_ms.into()],
    )?;
    sql.run(
        "DELETE FROM dead_letters WHERE parked_ms < ?",
        vec![(now_ms - DEAD_LETTER_RETENTION_MS).into()],
    )?;
    sql.run(
        "DELETE FROM daily_counts WHERE day < ? AND kind NOT IN ('order', 'coverage')",
        vec![(now_ms / DAY_MS - COUNTER_RETENTION_DAYS + 1).into()],
    )?;
    sql.run(
        "DELETE FROM daily_counts WHERE day < ?",
        vec![(now_ms / DAY_MS - REPORT_RETENTION_DAYS + 1).into()],
    )?;
    sql.run(
        "DELETE FROM incidents WHERE closed_ms < ?",
        vec![(now_ms - INCIDENT_RETENTION_MS).into()],
    )?;
    Ok(())
}

fn reason_or_empty(r: &str) -> &str {
    if r.is_empty() {
        ""
    } else {
        counted_reason(r)
    }
}

/// Adds counts to `day`'s rows: one upsert per distinct row. Names and reasons are bounded
/// again here: whatever a caller sends, no new names become rows.
pub fn add_counts<S: Sql>(sql: &S, counts: &[Count], day: i64) -> Result<(), S::Error> {
    let mut rows: std::collections::BTreeMap<(CountKind, &str, &str), i64> =
        std::collections::BTreeMap::new();
    for c in counts {
        let outcome_name =
            |n: &str| serde_json::from_value::<Outcome>(n.into()).map_or("other", Outcome::as_str);
        let (name, reason) = match c.kind {
            CountKind::Dropped => (counted_field(&c.name), counted_reason(&c.reason)),
            CountKind::Outcome => (outcome_name(&c.name), reason_or_empty(&c.reason)),
            CountKind::Order if c.name == report::SEEN => {
                (report::SEEN, reason_or_empty(&c.reason))
            }
            CountKind::Order => (outcome_name(&c.name), reason_or_empty(&c.reason)),
            CountKind::Coverage => (
                report::coverage_event_name(&c.name),
                report::COVERAGE_KEYS
                    .iter()
                    .copied()
                    .find(|k| *k == c.reason)
                    .unwrap_or("other"),
            ),
        };
        *rows.entry((c.kind, name, reason)).or_default() += i64::from(c.n);
    }
    for ((kind, name, reason), n) in rows {
        sql.run(
            "INSERT INTO daily_counts (day, kind, name, reason, count) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (day, kind, name, reason) DO UPDATE SET count = count + excluded.count",
            vec![
                day.into(),
                kind.as_str().into(),
                name.into(),
                reason.into(),
                n.into(),
            ],
        )?;
    }
    Ok(())
}

/// The receipts of one event id (every name it was sent under); the webhooks' marks are no
/// events.
pub fn receipts<S: Sql>(sql: &S, event_id: &str) -> Result<Vec<Value>, S::Error> {
    sql.run(
        "SELECT event_name, event_id, outcome, reason, attempts, fbtrace_id, first_seen_ms, updated_ms FROM events WHERE event_id = ? AND event_name <> ?",
        vec![
            event_id.into(),
            capi_core::webhook::lifecycle::MARK_EVENT.into(),
        ],
    )
}

/// Reconciliation and coverage rows for `from_day..=to_day`.
pub fn report_rows<S: Sql>(sql: &S, from_day: i64, to_day: i64) -> Result<Vec<Value>, S::Error> {
    sql.run(
        "SELECT day, kind, name, reason, count FROM daily_counts WHERE kind IN ('order', 'coverage') AND day BETWEEN ? AND ?",
        vec![from_day.into(), to_day.into()],
    )
}

/// Counter rows of the retained days, summed.
pub fn stats<S: Sql>(sql: &S, now_ms: i64) -> Result<Vec<Value>, S::Error> {
    sql.run(
        "SELECT kind, name, reason, SUM(count) AS count FROM daily_counts WHERE day >= ?
          GROUP BY kind, name, reason ORDER BY kind, name, reason",
        vec![(now_ms / DAY_MS - COUNTER_RETENTION_DAYS + 1).into()],
    )
}

/// Dead letters (ids, reasons, times; not the events): at most `limit`, in rowid order after
/// `after` (a page of the list).
pub fn dead_letters<S: Sql>(sql: &S, after: i64, limit: u32) -> Result<Vec<Value>, S::Error> {
    sql.run(
        "SELECT rowid, event_name, event_id, reason, parked_ms, replayed_ms FROM dead_letters
           WHERE rowid > ? ORDER BY rowid LIMIT ?",
        vec![after.into(), i64::from(limit).into()],
    )
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
