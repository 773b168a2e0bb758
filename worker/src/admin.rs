//! `GET /t/receipts/{event_id}` and `GET /t/stats`: what happened to events, for operators.
//! Behind `Authorization: Bearer <ADMIN_TOKEN>`; ids, outcomes, reasons and counts only — no
//! customer data is stored in the ledger to begin with.

use crate::config::Config;
use crate::error::ApiError;
use crate::ledger::LedgerClient;
use capi_core::webhook::signature::bearer_matches;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use worker::{Env, Request, Response};

type Answer = std::result::Result<Response, ApiError>;

fn authorized<'a>(
    req: &Request,
    cfg: &'a Config,
    env: &Env,
) -> Result<(LedgerClient, &'a str), ApiError> {
    let expected = cfg
        .admin_token
        .as_deref()
        .ok_or(ApiError::NotConfigured("ADMIN_TOKEN"))?;
    if !bearer_matches(req.headers().get("authorization")?.as_deref(), expected) {
        return Err(ApiError::Unauthorized);
    }
    let pixel = cfg
        .pixel_id
        .as_deref()
        .ok_or(ApiError::NotConfigured("PIXEL_ID"))?;
    let ledger = LedgerClient::for_pixel(env, pixel, cfg.ledger_shards)
        .ok_or(ApiError::NotConfigured("LEDGER"))?;
    Ok((ledger, pixel))
}

fn no_store(v: &Value) -> Answer {
    let mut resp = Response::from_json(v)?;
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// Receipts of one event id (one per event name that used it).
pub async fn receipts(req: &Request, cfg: &Config, env: &Env, event_id: &str) -> Answer {
    let (ledger, pixel) = authorized(req, cfg, env)?;
    let event_id = percent_decode_str(event_id).decode_utf8_lossy();
    // Ids are 1-128 printable ASCII characters (as ingest accepts them): nothing else has a receipt.
    if event_id.is_empty()
        || event_id.len() > 128
        || !event_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::NotFound);
    }
    let rows = ledger.receipts(&event_id).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound);
    }
    no_store(&json!({"pixel_id": pixel, "event_id": event_id, "receipts": rows}))
}

/// Counts per outcome and reason, and per dropped field and reason.
pub async fn stats(req: &Request, cfg: &Config, env: &Env) -> Answer {
    let (ledger, pixel) = authorized(req, cfg, env)?;
    let rows = ledger.stats(worker::Date::now().as_millis()).await?;
    let mut outcomes = serde_json::Map::new();
    let mut reasons = Vec::new();
    let mut dropped = Vec::new();
    for r in rows {
        let (kind, name, reason, count) = (
            r["kind"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            r["reason"].as_str().unwrap_or(""),
            r["count"].as_i64().unwrap_or(0),
        );
        match kind {
            "outcome" => {
                let total = outcomes.get(name).and_then(Value::as_i64).unwrap_or(0) + count;
                outcomes.insert(name.to_string(), json!(total));
                if !reason.is_empty() {
                    reasons.push(json!({"outcome": name, "reason": reason, "count": count}));
                }
            }
            "dropped" => dropped.push(json!({"field": name, "reason": reason, "count": count})),
            _ => {}
        }
    }
    no_store(
        &json!({"pixel_id": pixel, "outcomes": outcomes, "reasons": reasons, "dropped": dropped}),
    )
}
