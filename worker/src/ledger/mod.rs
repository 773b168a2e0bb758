//! The ledger: SQLite-backed Durable Objects, `LEDGER_SHARDS` per tenant and pixel (named
//! `{tenant}/{pixel}/{shard}`, the shard a stable hash of the event id, so a webhook and a
//! beacon with the same id meet in one object). Each shard keeps the claims that decide who may
//! send an event (`capi_core::claim` has the protocol), delivery receipts, dead letters for
//! replay and daily counters — ids, outcomes, reasons and counts; dead letters also hold the
//! queued event (hashed contact data, IP, user agent) for 7 days. Housekeeping runs on the
//! object's alarm.
//!
//! - `mod.rs`: the object (ops in, JSON out) and its alarm;
//! - `sql.rs`: schema migrations and every statement;
//! - `client.rs`: the Worker's side (shard routing, timeouts, the previous layout).

mod client;
mod sql;

pub use client::{Cursor, LedgerClient};

use crate::protocol::Op;
use serde_json::{json, Value};
use sql::{Arg, Sql, DAY_MS};
use std::cell::Cell;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

/// Housekeeping runs at most this often.
const HOUSEKEEPING_EVERY_MS: i64 = 3600 * 1000;

#[durable_object(alarm)]
pub struct Ledger {
    state: State,
    /// Whether this instance already made sure an alarm is set.
    alarm_checked: Cell<bool>,
}

/// The Durable Object's SQLite behind [`Sql`].
struct Storage(SqlStorage);

impl Sql for Storage {
    type Error = worker::Error;
    fn run(&self, query: &str, args: Vec<Arg>) -> Result<Vec<Value>> {
        let args: Vec<SqlStorageValue> = args
            .into_iter()
            .map(|a| match a {
                Arg::Int(i) => SqlStorageValue::Integer(i),
                Arg::Text(t) => SqlStorageValue::String(t),
                Arg::Null => SqlStorageValue::Null,
            })
            .collect();
        self.0.exec(query, args)?.to_array()
    }
}

impl Ledger {
    fn sql(&self) -> Storage {
        Storage(self.state.storage().sql())
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

    /// One op, applied whole (no `await` inside).
    fn apply(&self, op: Op) -> Result<Value> {
        let sql = self.sql();
        Ok(match op {
            Op::Claim {
                items,
                attempt,
                imported,
                now_ms,
            } => {
                let mut counts = Vec::new();
                let statuses = sql::claim(
                    &sql,
                    &items,
                    attempt.as_deref(),
                    &imported,
                    now_ms,
                    &mut counts,
                )?;
                sql::add_counts(&sql, &counts, now_ms / DAY_MS)?;
                serde_json::to_value(statuses)?
            }
            Op::Release {
                key,
                nonce,
                attempt,
            } => {
                sql::release(
                    &sql,
                    &key.text(),
                    &nonce,
                    attempt.as_deref(),
                    worker::Date::now().as_millis() as i64,
                )?;
                json!({ "released": true })
            }
            Op::Purchase {
                key,
                cancel,
                create,
                imported,
                now_ms,
            } => {
                let mut counts = Vec::new();
                let answer = sql::purchase(
                    &sql,
                    &key,
                    cancel.as_deref(),
                    create,
                    &imported,
                    now_ms,
                    &mut counts,
                )?;
                sql::add_counts(&sql, &counts, now_ms / DAY_MS)?;
                serde_json::to_value(answer)?
            }
            Op::IncidentOpen {
                cause,
                code,
                held,
                now_ms,
            } => {
                sql::incident_open(&sql, cause.as_str(), code, held, now_ms)?.unwrap_or_default()
            }
            Op::IncidentClose { now_ms } => Value::Array(sql::incident_close(&sql, now_ms)?),
            Op::IncidentTold {
                cause,
                opened_ms,
                state,
            } => {
                sql::incident_told(&sql, &cause, opened_ms, &state)?;
                Value::Null
            }
            Op::Incidents {} => Value::Array(sql::incidents(&sql)?),
            Op::Record {
                receipts,
                mut counts,
                now_ms,
            } => {
                sql::record(&sql, &receipts, now_ms, &mut counts)?;
                sql::add_counts(&sql, &counts, now_ms / DAY_MS)?;
                json!({ "recorded": receipts.len() })
            }
            Op::Holders { keys } => serde_json::to_value(sql::exported(&sql, &keys)?)?,
            Op::Receipts { event_id } => Value::Array(sql::receipts(&sql, &event_id)?),
            Op::Stats { now_ms } => Value::Array(sql::stats(&sql, now_ms)?),
            Op::Report { from_day, to_day } => {
                Value::Array(sql::report_rows(&sql, from_day, to_day)?)
            }
            Op::Park { letters, now_ms } => {
                let mut counts = Vec::new();
                sql::park(&sql, &letters, now_ms, &mut counts)?;
                sql::add_counts(&sql, &counts, now_ms / DAY_MS)?;
                json!({ "parked": letters.len() })
            }
            Op::DeadLetters { after, limit } => {
                Value::Array(sql::dead_letters(&sql, after, limit)?)
            }
            Op::Housekeep { now_ms } => {
                sql::housekeep(&sql, now_ms)?;
                json!({ "housekept": true })
            }
            Op::Waiting {
                event_id,
                after,
                limit,
                bytes,
            } => Value::Array(sql::waiting(
                &sql,
                event_id.as_deref(),
                (after, limit),
                bytes,
            )?),
        })
    }
}

impl DurableObject for Ledger {
    fn new(state: State, _env: Env) -> Self {
        // A failed migration leaves `user_version` where it was: the next instance tries again.
        let _ = sql::migrate(&Storage(state.storage().sql()));
        Ledger {
            state,
            alarm_checked: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // One string crossing, parsed in wasm (worker-rs `json()` walks the JS object instead).
        let op: Op = serde_json::from_str(&req.text().await?)?;
        self.ensure_alarm().await;
        Response::from_json(&self.apply(op)?)
    }

    /// Housekeeping: claims, receipts, dead letters and counters past their retention.
    async fn alarm(&self) -> Result<Response> {
        let now_ms = worker::Date::now().as_millis() as i64;
        sql::housekeep(&self.sql(), now_ms)?;
        self.state
            .storage()
            .set_alarm(now_ms + HOUSEKEEPING_EVERY_MS)
            .await?;
        Response::ok("housekeeping done")
    }
}
