//! The per-pixel ledger, a SQLite-backed Durable Object:
//! - claims of `(event_name, event_id)` for Meta's 48-hour dedup window, so webhook
//!   redeliveries, `orders/create` + `orders/paid`, and double-fired beacons are sent once;
//! - delivery receipts per event (outcome, reason, attempts, Meta's `fbtrace_id`), kept 7 days;
//! - counters per outcome and reason, and per dropped field and reason.
//!
//! A claim is one SQLite upsert with `RETURNING`, executed synchronously inside the object: two
//! claims racing for the same key cannot both win. No customer data is stored here.

use serde::{Deserialize, Serialize};
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result,
    SqlStorageValue, State,
};

/// Meta deduplicates within 48 hours of the first event with an id (D-DEDUP).
const DEDUP_WINDOW_MS: i64 = 48 * 3600 * 1000;
/// Receipts outlive the dedup window: a week, Meta's own age limit.
const RECEIPT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

#[durable_object(fetch)]
pub struct Ledger {
    state: State,
}

/// One event's identity in the ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventKey {
    pub event_name: String,
    pub event_id: String,
}

/// A dropped field to count (never its value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DropCount {
    pub field: String,
    pub reason: String,
}

/// A receipt update from delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub event_name: String,
    pub event_id: String,
    /// `queued`, `retrying`, `sent`, `expired`, `rejected`, `dead_lettered`, `duplicate`.
    pub outcome: String,
    pub reason: Option<String>,
    pub attempts: u32,
    pub fbtrace_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Claim {
        key: EventKey,
        now_ms: i64,
        dropped: Vec<DropCount>,
    },
    Release {
        key: EventKey,
    },
    Outcomes {
        keys: Vec<EventKey>,
    },
    Record {
        receipts: Vec<Receipt>,
        now_ms: i64,
    },
    Receipts {
        event_id: String,
    },
    Stats,
}

/// Outcomes that end an event's delivery.
pub const FINAL_OUTCOMES: &[&str] = &["sent", "expired", "rejected", "dead_lettered"];

fn key_text(k: &EventKey) -> SqlStorageValue {
    SqlStorageValue::String(format!("{}\n{}", k.event_name, k.event_id))
}

impl DurableObject for Ledger {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS events (key TEXT PRIMARY KEY, event_name TEXT NOT NULL, event_id TEXT NOT NULL,
               first_seen_ms INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0,
               fbtrace_id TEXT, updated_ms INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS events_by_id ON events (event_id)",
            "CREATE INDEX IF NOT EXISTS events_by_age ON events (first_seen_ms)",
            "CREATE TABLE IF NOT EXISTS counters (kind TEXT NOT NULL, name TEXT NOT NULL, reason TEXT NOT NULL,
               count INTEGER NOT NULL, PRIMARY KEY (kind, name, reason))",
        ] {
            let _ = sql.exec(ddl, None);
        }
        Ledger { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let op: Op = req.json().await?;
        let sql = self.state.storage().sql();
        let count = |kind: &str, name: &str, reason: &str| {
            sql.exec(
                "INSERT INTO counters (kind, name, reason, count) VALUES (?, ?, ?, 1)
                 ON CONFLICT (kind, name, reason) DO UPDATE SET count = count + 1",
                vec![kind.into(), name.into(), reason.into()],
            )
        };
        match op {
            Op::Claim {
                key,
                now_ms,
                dropped,
            } => {
                for d in &dropped {
                    count("dropped", &d.field, &d.reason)?;
                }
                sql.exec(
                    "DELETE FROM events WHERE first_seen_ms < ?",
                    vec![SqlStorageValue::Integer(now_ms - RECEIPT_RETENTION_MS)],
                )?;
                // New, or last claimed before the dedup window: (re)claim it. RETURNING yields the
                // row only when it was written (rows_written also counts index writes).
                let cursor = sql.exec(
                    "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, updated_ms) VALUES (?, ?, ?, ?, 'queued', ?)
                     ON CONFLICT (key) DO UPDATE SET first_seen_ms = excluded.first_seen_ms, outcome = 'queued', reason = NULL,
                       attempts = 0, fbtrace_id = NULL, updated_ms = excluded.updated_ms
                     WHERE events.first_seen_ms < ?
                     RETURNING key",
                    vec![
                        key_text(&key),
                        key.event_name.clone().into(),
                        key.event_id.clone().into(),
                        SqlStorageValue::Integer(now_ms),
                        SqlStorageValue::Integer(now_ms),
                        SqlStorageValue::Integer(now_ms - DEDUP_WINDOW_MS),
                    ],
                )?;
                let claimed = !cursor.to_array::<serde_json::Value>()?.is_empty();
                if !claimed {
                    count("outcome", "duplicate", "")?;
                }
                Response::from_json(&serde_json::json!({ "claimed": claimed }))
            }
            Op::Release { key } => {
                sql.exec("DELETE FROM events WHERE key = ?", vec![key_text(&key)])?;
                Response::from_json(&serde_json::json!({ "released": true }))
            }
            Op::Outcomes { keys } => {
                let mut outcomes = Vec::with_capacity(keys.len());
                for k in &keys {
                    let rows: Vec<serde_json::Value> = sql
                        .exec(
                            "SELECT outcome FROM events WHERE key = ?",
                            vec![key_text(k)],
                        )?
                        .to_array()?;
                    outcomes.push(
                        rows.first()
                            .and_then(|r| r.get("outcome"))
                            .and_then(|o| o.as_str())
                            .unwrap_or("")
                            .to_string(),
                    );
                }
                Response::from_json(&outcomes)
            }
            Op::Record { receipts, now_ms } => {
                for r in &receipts {
                    let key = EventKey {
                        event_name: r.event_name.clone(),
                        event_id: r.event_id.clone(),
                    };
                    sql.exec(
                        "INSERT INTO events (key, event_name, event_id, first_seen_ms, outcome, reason, attempts, fbtrace_id, updated_ms)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                         ON CONFLICT (key) DO UPDATE SET outcome = excluded.outcome, reason = excluded.reason,
                           attempts = excluded.attempts, fbtrace_id = COALESCE(excluded.fbtrace_id, events.fbtrace_id), updated_ms = excluded.updated_ms",
                        vec![
                            key_text(&key),
                            r.event_name.clone().into(),
                            r.event_id.clone().into(),
                            SqlStorageValue::Integer(now_ms),
                            r.outcome.clone().into(),
                            r.reason.clone().map_or(SqlStorageValue::Null, SqlStorageValue::String),
                            SqlStorageValue::Integer(i64::from(r.attempts)),
                            r.fbtrace_id.clone().map_or(SqlStorageValue::Null, SqlStorageValue::String),
                            SqlStorageValue::Integer(now_ms),
                        ],
                    )?;
                    if FINAL_OUTCOMES.contains(&r.outcome.as_str()) || r.outcome == "retrying" {
                        count("outcome", &r.outcome, r.reason.as_deref().unwrap_or(""))?;
                    }
                }
                Response::from_json(&serde_json::json!({ "recorded": receipts.len() }))
            }
            Op::Receipts { event_id } => {
                let rows: Vec<serde_json::Value> = sql
                    .exec(
                        "SELECT event_name, event_id, outcome, reason, attempts, fbtrace_id, first_seen_ms, updated_ms FROM events WHERE event_id = ?",
                        vec![event_id.into()],
                    )?
                    .to_array()?;
                Response::from_json(&rows)
            }
            Op::Stats => {
                let rows: Vec<serde_json::Value> = sql.exec("SELECT kind, name, reason, count FROM counters ORDER BY kind, name, reason", None)?.to_array()?;
                Response::from_json(&rows)
            }
        }
    }
}

/// A handle on the ledger of one pixel.
pub struct LedgerClient {
    stub: worker::Stub,
}

/// What the ledger said about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time in the window: send it.
    New,
    /// Already accepted within 48 hours: do not send again.
    Duplicate,
    /// The ledger could not be reached: send anyway (a duplicate beats a lost event; Meta
    /// also deduplicates browser/server pairs by event_id).
    Unavailable,
}

impl LedgerClient {
    pub fn for_pixel(env: &Env, pixel_id: &str) -> Option<LedgerClient> {
        let ns = env.durable_object("LEDGER").ok()?;
        let stub = ns.id_from_name(pixel_id).ok()?.get_stub().ok()?;
        Some(LedgerClient { stub })
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, op: &Op) -> Result<T> {
        let body = serde_json::to_string(op)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.into()));
        let req = Request::new_with_init("https://ledger/", &init)?;
        let mut resp = self.stub.fetch_with_request(req).await?;
        resp.json::<T>().await
    }

    fn logged<T>(what: &str, r: Result<T>) -> Option<T> {
        r.map_err(|e| worker::console_error!("{}", serde_json::json!({"msg": "ledger_unavailable", "op": what, "detail": e.to_string()}))).ok()
    }

    /// Claims `(event_name, event_id)` for delivery, counting what ingest dropped on the way.
    pub async fn claim(&self, key: &EventKey, now_ms: u64, dropped: Vec<DropCount>) -> Claim {
        let op = Op::Claim {
            key: key.clone(),
            now_ms: now_ms as i64,
            dropped,
        };
        match Self::logged("claim", self.call::<serde_json::Value>(&op).await) {
            Some(v) if v["claimed"] == true => Claim::New,
            Some(_) => Claim::Duplicate,
            None => Claim::Unavailable,
        }
    }

    /// Gives a claim back after delivery failed, so a redelivery of the webhook is sent.
    pub async fn release(&self, key: &EventKey) {
        Self::logged(
            "release",
            self.call::<serde_json::Value>(&Op::Release { key: key.clone() })
                .await,
        );
    }

    /// The recorded outcome of each key (empty when unknown).
    pub async fn outcomes(&self, keys: Vec<EventKey>) -> Vec<String> {
        let n = keys.len();
        Self::logged(
            "outcomes",
            self.call::<Vec<String>>(&Op::Outcomes { keys }).await,
        )
        .unwrap_or_else(|| vec![String::new(); n])
    }

    /// Records receipts (and counts final outcomes).
    pub async fn record(&self, receipts: Vec<Receipt>, now_ms: u64) {
        if !receipts.is_empty() {
            Self::logged(
                "record",
                self.call::<serde_json::Value>(&Op::Record {
                    receipts,
                    now_ms: now_ms as i64,
                })
                .await,
            );
        }
    }

    pub async fn receipts(&self, event_id: &str) -> Result<Vec<serde_json::Value>> {
        self.call(&Op::Receipts {
            event_id: event_id.to_string(),
        })
        .await
    }

    pub async fn stats(&self) -> Result<Vec<serde_json::Value>> {
        self.call(&Op::Stats).await
    }
}
