//! Incidents: delivery to a pixel stopped for a cause that will not fix itself — an expired or
//! revoked token (code 190), a missing permission (10, 200–299), a deleted pixel (100/33), a
//! retired API version (2635). Delivery holds the events (parked for replay, never dropped:
//! `delivery/pixel.rs`); this module raises the incident in the pixel's ledger (shard 0), which
//! says whether it is to be announced, announces it to the tenant's `ALERT_WEBHOOK` (at least
//! once: an alert that fails is tried again by a later round), and ends it — announced the same
//! way — when Meta takes this pixel's events again. `/t/health` and the report
//! show the open ones.
//!
//! Ending costs a ledger call, so an isolate looks at most once a minute per pixel after a
//! successful send, and at once after it saw the pixel's events held.

use crate::config::Config;
use crate::ledger::LedgerClient;
use crate::log;
use capi_core::meta_answer::Incident;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::time::Duration;
use worker::{Date, Fetch};

/// How often an isolate asks whether a pixel's incidents ended, while it sends.
const CHECK_EVERY_MS: u64 = 60_000;
/// The longest an alert's POST may take.
const ALERT_TIMEOUT: Duration = Duration::from_secs(3);

thread_local! {
    /// Per `{tenant}/{pixel}`: when this isolate last looked, and whether it held events since.
    static LOOKED: RefCell<Vec<(String, u64, bool)>> = const { RefCell::new(Vec::new()) };
}

/// Whether to look for ended incidents now (and note that it is looked at).
fn due(pixel_key: &str, now_ms: u64, held: bool) -> bool {
    LOOKED.with(|l| {
        let mut l = l.borrow_mut();
        let at = match l.iter().position(|(k, _, _)| k == pixel_key) {
            Some(at) => at,
            None => {
                l.push((pixel_key.to_string(), 0, true));
                l.len() - 1
            }
        };
        let entry = &mut l[at];
        if held {
            entry.2 = true;
            return false;
        }
        let due = entry.2 || now_ms.saturating_sub(entry.1) >= CHECK_EVERY_MS;
        if due {
            *entry = (pixel_key.to_string(), now_ms, false);
        }
        due
    })
}

/// After one round of delivery to a pixel: raise the incident of the events it held, or end the
/// pixel's incidents once Meta took events again.
pub async fn after_round(
    cfg: &Config,
    ledger: &LedgerClient,
    tenant_id: &str,
    pixel_id: &str,
    held: Option<(Incident, i64)>,
    held_events: usize,
    accepted: bool,
) {
    let now_ms = Date::now().as_millis();
    let key = format!("{tenant_id}/{pixel_id}");
    if let Some((cause, code)) = held {
        due(&key, now_ms, true);
        log::error(
            "meta_incident",
            &[
                ("tenant", tenant_id.into()),
                ("pixel_id", pixel_id.into()),
                ("cause", cause.as_str().into()),
                ("code", code.into()),
                ("events_held", held_events.into()),
                ("hint", cause.what_to_do().into()),
            ],
        );
        if let Some(row) = ledger.incident_open(cause, code, held_events, now_ms).await {
            announce(cfg, ledger, tenant_id, pixel_id, &row, "open").await;
        }
    }
    // Not in a round that held events too: Meta taking some of them while refusing others
    // (a revocation reaching its servers unevenly) does not end the incident it just raised.
    if accepted && held.is_none() && due(&key, now_ms, false) {
        for row in ledger.incident_close(now_ms).await {
            // Ended now (an earlier end whose announcement failed is only announced again).
            if row["closed_ms"].as_i64() == Some(now_ms as i64) {
                log::info(
                    "meta_incident_ended",
                    &[
                        ("tenant", tenant_id.into()),
                        ("pixel_id", pixel_id.into()),
                        ("cause", row["cause"].clone()),
                    ],
                );
            }
            announce(cfg, ledger, tenant_id, pixel_id, &row, "resolved").await;
        }
    }
}

/// The alert's body: Slack's `text`, and the same facts as fields for any other receiver.
pub fn alert_body(tenant_id: &str, pixel_id: &str, row: &Value, state: &str) -> Value {
    let cause = row["cause"].as_str().and_then(Incident::parse);
    let what = cause.map_or("", Incident::what_to_do);
    let held = row["held"].as_i64().unwrap_or(0);
    let text = match state {
        "open" => format!(
            ":rotating_light: capi-edge: Meta stopped taking events for pixel {pixel_id} (shop {tenant_id}): {}. {what}. Events are held, not lost: once it is fixed, run `capi-edge replay` (POST /t/replay).",
            row["cause"].as_str().unwrap_or("")
        ),
        _ => format!(
            ":white_check_mark: capi-edge: Meta takes events for pixel {pixel_id} (shop {tenant_id}) again ({} ended; {held} events were held: replay them with `capi-edge replay` if you have not).",
            row["cause"].as_str().unwrap_or("")
        ),
    };
    json!({
        "text": text,
        "capi_edge": {
            "state": state,
            "tenant": tenant_id,
            "pixel_id": pixel_id,
            "cause": row["cause"],
            "code": row["code"],
            "opened_ms": row["opened_ms"],
            "closed_ms": row.get("closed_ms").cloned().unwrap_or(Value::Null),
            "events_held": held,
        }
    })
}

/// POSTs the alert to the tenant's `ALERT_WEBHOOK` (if set), bounded in time, and notes in the
/// ledger that it was told (or that no one is to be told, or that the receiver refuses it for
/// good: a 4xx other than 408 and 429, a revoked or mistyped URL); one that failed otherwise is
/// tried again by a later round after `ALERT_RETRY_MS`. The URL is a secret and never logged.
async fn announce(
    cfg: &Config,
    ledger: &LedgerClient,
    tenant_id: &str,
    pixel_id: &str,
    row: &Value,
    state: &str,
) {
    let Some(url) = cfg.tenant(tenant_id).and_then(|t| t.alert_webhook.clone()) else {
        ledger.incident_told(row, state).await;
        return;
    };
    let body = alert_body(tenant_id, pixel_id, row, state).to_string();
    let sent = async {
        let req = crate::body::post(&url, body, true)?;
        let resp = Fetch::Request(req).send().await.ok()?;
        Some(resp.status_code())
    };
    let status = crate::deadline::within(ALERT_TIMEOUT, sent).await.flatten();
    let msg = match status {
        Some(200..=299) => "alert_sent",
        Some(s @ 400..=499) if s != 408 && s != 429 => "alert_refused",
        _ => "alert_failed",
    };
    if msg != "alert_failed" {
        ledger.incident_told(row, state).await;
    }
    log::info(
        msg,
        &[
            ("tenant", tenant_id.into()),
            ("pixel_id", pixel_id.into()),
            ("status", status.map_or(Value::Null, |s| s.into())),
            ("state", state.into()),
        ],
    );
}
