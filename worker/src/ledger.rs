//! The `(pixel, event_name, event_id)` ledger: a Durable Object per pixel that remembers what
//! was accepted for delivery during Meta's 48-hour dedup window, so webhook redeliveries,
//! `orders/create` + `orders/paid` for one order, and double-fired beacons are sent once.
//!
//! A claim is one SQLite `INSERT OR IGNORE … RETURNING`, executed synchronously inside the
//! object: two claims racing for the same key cannot both win.

use serde::{Deserialize, Serialize};
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result,
    SqlStorageValue, State,
};

/// Meta deduplicates within 48 hours of the first event with an id (D-DEDUP).
const WINDOW_MS: i64 = 48 * 3600 * 1000;

#[durable_object(fetch)]
pub struct Ledger {
    state: State,
}

#[derive(Serialize, Deserialize)]
struct ClaimRequest {
    key: String,
    now_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct ClaimAnswer {
    claimed: bool,
}

impl DurableObject for Ledger {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        let _ = sql.exec("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, first_seen_ms INTEGER NOT NULL)", None);
        let _ = sql.exec(
            "CREATE INDEX IF NOT EXISTS claims_by_age ON claims (first_seen_ms)",
            None,
        );
        Ledger { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let r: ClaimRequest = req.json().await?;
        let sql = self.state.storage().sql();
        let key = SqlStorageValue::String(r.key);
        match path.as_str() {
            "/claim" => {
                sql.exec(
                    "DELETE FROM claims WHERE first_seen_ms < ?",
                    vec![SqlStorageValue::Integer(r.now_ms - WINDOW_MS)],
                )?;
                // RETURNING yields the row only when it was inserted (rows_written also counts index writes).
                let cursor = sql.exec(
                    "INSERT OR IGNORE INTO claims (key, first_seen_ms) VALUES (?, ?) RETURNING key",
                    vec![key, SqlStorageValue::Integer(r.now_ms)],
                )?;
                let inserted: Vec<serde_json::Value> = cursor.to_array()?;
                Response::from_json(&ClaimAnswer {
                    claimed: inserted.len() == 1,
                })
            }
            "/release" => {
                sql.exec("DELETE FROM claims WHERE key = ?", vec![key])?;
                Response::from_json(&ClaimAnswer { claimed: false })
            }
            _ => Response::error("no such ledger route", 404),
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

    async fn call(
        &self,
        route: &str,
        event_name: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool> {
        let body = serde_json::to_string(&ClaimRequest {
            key: format!("{event_name}\n{event_id}"),
            now_ms: now_ms as i64,
        })?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.into()));
        let req = Request::new_with_init(&format!("https://ledger{route}"), &init)?;
        let mut resp = self.stub.fetch_with_request(req).await?;
        Ok(resp.json::<ClaimAnswer>().await?.claimed)
    }

    /// Claims `(event_name, event_id)` for delivery.
    pub async fn claim(&self, event_name: &str, event_id: &str, now_ms: u64) -> Claim {
        match self.call("/claim", event_name, event_id, now_ms).await {
            Ok(true) => Claim::New,
            Ok(false) => Claim::Duplicate,
            Err(e) => {
                worker::console_error!(
                    "{}",
                    serde_json::json!({"msg": "ledger_unavailable", "detail": e.to_string()})
                );
                Claim::Unavailable
            }
        }
    }

    /// Gives a claim back after delivery failed, so a redelivery of the webhook is sent.
    pub async fn release(&self, event_name: &str, event_id: &str, now_ms: u64) {
        if let Err(e) = self.call("/release", event_name, event_id, now_ms).await {
            worker::console_error!(
                "{}",
                serde_json::json!({"msg": "ledger_release_failed", "detail": e.to_string()})
            );
        }
    }
}
