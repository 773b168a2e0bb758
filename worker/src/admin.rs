//! Admin routes — receipts, stats, the reconciliation report, dead letters and replay — for
//! operators. Behind a bearer token: the operator's `ADMIN_TOKEN` (every tenant, `?tenant=ID`)
//! or a tenant's own admin token (that tenant only; the host's tenant by default). `?pixel=ID`
//! picks one of the tenant's pixels (default: its first). Ids, outcomes, reasons and counts
//! only, never the customer data the ledger keeps for replays and refunds (a replay sends it to
//! Meta, never to the caller).

use crate::config::Config;
use crate::error::ApiError;
use crate::delivery::MAX_MESSAGE_BYTES;
use crate::ledger::{Cursor, LedgerClient};
use capi_core::webhook::signature::bearer_matches;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use worker::{Env, Request, Response};

type Answer = std::result::Result<Response, ApiError>;

/// A ledger call that failed or timed out: 503, not the runtime's 500 (the Worker is fine).
fn unavailable(e: worker::Error) -> ApiError {
    crate::log::error(
        "ledger_unavailable",
        &[("op", "admin".into()), ("error", crate::log::kind_of(&e).into())],
    );
    ApiError::LedgerUnavailable
}

/// A query parameter of the request's URL, decoded (the first, if it comes twice).
fn param(url: &worker::Url, k: &str) -> Option<String> {
    url.query_pairs()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.into_owned())
}

/// The ledger of the tenant and pixel the caller may read, or 401/404/503 as documented. One
/// tenant's token never reads another tenant's receipts.
fn authorized<'a>(
    req: &Request,
    cfg: &'a Config,
    env: &Env,
) -> Result<(LedgerClient, &'a str), ApiError> {
    authorized_tenant(req, cfg, env).map(|(l, p, _)| (l, p))
}

/// As [`authorized`], with the tenant.
fn authorized_tenant<'a>(
    req: &Request,
    cfg: &'a Config,
    env: &Env,
) -> Result<(LedgerClient, &'a str, &'a crate::config::Tenant), ApiError> {
    let url = req.url()?;
    let param = |k: &str| param(&url, k);
    let tenant = match param("tenant") {
        Some(id) => cfg.tenant(&id).ok_or(ApiError::UnknownTenant),
        None => cfg.listed_tenant_for_host(url.host_str().unwrap_or("")),
    };
    let auth = req.headers().get("authorization")?;
    let own_token = tenant.as_ref().ok().and_then(|t| t.admin_token.as_deref());
    // 503 only when no admin token is set anywhere: otherwise an unknown tenant and one without
    // a token of its own are refused as any other caller (401), and a caller without a token
    // cannot tell which tenants exist.
    let any_token = cfg.admin_token.is_some()
        || cfg
            .tenants
            .as_ref()
            .is_ok_and(|ts| ts.iter().any(|t| t.admin_token.is_some()));
    if !any_token {
        return Err(ApiError::NotConfigured("ADMIN_TOKEN"));
    }
    let operator = cfg
        .admin_token
        .as_deref()
        .is_some_and(|t| bearer_matches(auth.as_deref(), t));
    let own = own_token.is_some_and(|t| bearer_matches(auth.as_deref(), t));
    if !operator && !own {
        return Err(ApiError::Unauthorized);
    }
    let tenant = tenant?;
    let pixel = match param("pixel") {
        Some(id) => tenant.pixel(&id).ok_or(ApiError::NotFound)?,
        None => tenant
            .pixels
            .first()
            .ok_or(ApiError::NotConfigured("PIXEL_ID"))?,
    };
    let ledger = LedgerClient::for_pixel(env, cfg, &tenant.id, &pixel.id)
        .ok_or(ApiError::NotConfigured("LEDGER"))?;
    Ok((ledger, &pixel.id, tenant))
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
    let rows = ledger.receipts(&event_id).await.map_err(unavailable)?;
    if rows.is_empty() {
        return Err(ApiError::NotFound);
    }
    no_store(&json!({"pixel_id": pixel, "event_id": event_id, "receipts": rows}))
}

/// Counts per outcome and reason, and per dropped field and reason.
pub async fn stats(req: &Request, cfg: &Config, env: &Env) -> Answer {
    let (ledger, pixel) = authorized(req, cfg, env)?;
    let rows = ledger.stats(worker::Date::now().as_millis()).await.map_err(unavailable)?;
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

/// Dead letters listed per page by default, and at most (ids, reasons and times: ≈ 150 bytes
/// each).
const LIST_PAGE: (u32, u32) = (1000, 5000);
/// Letters replayed per call by default, and at most: the bodies of one page (also at most
/// `REPLAY_PAGE_BYTES`) are held in memory and sent in bundles of up to [`MAX_MESSAGE_BYTES`].
const REPLAY_PAGE: (u32, u32) = (200, 500);

/// `?limit=N&after=CURSOR` of a paged route: where the page starts (a page's `next`) and its
/// length, within `(default, max)`; 400 `invalid_query` otherwise.
fn paging(req: &Request, (default, max): (u32, u32)) -> Result<(Cursor, u32), ApiError> {
    let url = req.url()?;
    let param = |k: &str| param(&url, k);
    let limit = match param("limit") {
        None => default,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or(ApiError::BadQuery("limit must be a whole number from 1 to the route's maximum"))?,
    };
    let after = match param("after") {
        None => Cursor::default(),
        Some(v) => Cursor::parse(&v).ok_or(ApiError::BadQuery("after must be a page's next"))?,
    };
    Ok((after, limit))
}

/// `GET /t/dead-letters[?limit=N&after=NEXT]`: what could not be delivered, with the reason
/// (ids only), a page at a time; `next` is where the next page starts (null: the last page).
pub async fn dead_letters(req: &Request, cfg: &Config, env: &Env) -> Answer {
    let (ledger, pixel) = authorized(req, cfg, env)?;
    let (after, limit) = paging(req, LIST_PAGE)?;
    let (rows, next) = ledger.dead_letters(after, limit).await.map_err(unavailable)?;
    let rows: Vec<Value> = rows.into_iter().map(|(_, r)| r).collect();
    no_store(&json!({"pixel_id": pixel, "dead_letters": rows, "next": next.map(|c| c.to_string())}))
}

/// `POST /t/replay[?event_id=ID | ?limit=N&after=NEXT]`: re-drives the dead letters waiting
/// for replay (one event's, or a page of them: call again with `after` = `next` until `next`
/// is null) through the normal delivery path once the cause is fixed (a new token, Meta back).
/// Gives before it takes: the letters are read unchanged and each is enqueued as a replay copy
/// (a fresh nonce), in bundles; the ledger hands the event's claim to that copy when it is
/// claimed, once per parking, and only if the event was not sent. A letter the queue refuses
/// stays waiting: the rest of the page is not sent and `next` is where the refused part
/// starts, so a replay cut short loses nothing.
pub async fn replay(req: &Request, cfg: &Config, env: &Env) -> Answer {
    let (ledger, pixel) = authorized(req, cfg, env)?;
    let event_id = param(&req.url()?, "event_id");
    let (after, limit) = paging(req, REPLAY_PAGE)?;
    let (letters, mut next) = ledger.waiting(event_id.as_deref(), after, limit).await.map_err(unavailable)?;
    let mut copies = Vec::new();
    // Letters that cannot be read back as events (kept in an older layout, say): counted and
    // logged, not passed over in silence.
    let mut unreadable = 0;
    for (at, row) in letters {
        let q = row["body"]
            .as_str()
            .and_then(|b| serde_json::from_str::<crate::delivery::QueuedEvent>(b).ok());
        let Some((mut q, id)) = q.and_then(|q| {
            let id = q.event.as_ref()?.event_id.clone();
            Some((q, id))
        }) else {
            unreadable += 1;
            continue;
        };
        q.attempt = 0;
        q.nonce = crate::delivery::new_nonce();
        q.counts.clear();
        q.replay = true;
        copies.push((at, id, q.to_json()));
    }
    let (mut ids, mut failed, mut resume) = (Vec::new(), 0, after);
    for mut bundle in bundles(copies) {
        if failed == 0 && crate::delivery::send_text(env, bundle.text, 0).await {
            ids.append(&mut bundle.ids);
            resume = bundle.last;
        } else {
            // Not sent, and nothing after it: the letters stay waiting, and the next call
            // starts after the last letter the queue took.
            failed += bundle.ids.len();
        }
    }
    if failed > 0 {
        next = event_id.is_none().then_some(resume);
    }
    if unreadable > 0 {
        crate::log::error(
            "dead_letters_unreadable",
            &[("pixel_id", pixel.into()), ("letters", unreadable.into())],
        );
    }
    no_store(&json!({
        "pixel_id": pixel,
        "replayed": ids.len(),
        "event_ids": ids,
        "failed": failed,
        "unreadable": unreadable,
        "next": next.map(|c| c.to_string()),
    }))
}

/// Replay copies gathered into one queue message (a JSON array, as ingest bundles beacons).
struct Bundle {
    text: String,
    ids: Vec<String>,
    /// Where its last letter lies.
    last: Cursor,
}

/// The replay copies `(where the letter lies, event id, JSON)`, in order, as queue messages of
/// at most [`MAX_MESSAGE_BYTES`] each (a copy alone in its bundle if it is that long itself: a
/// queue message takes 128 KB).
fn bundles(copies: Vec<(Cursor, String, String)>) -> Vec<Bundle> {
    let mut out: Vec<Bundle> = Vec::new();
    for (at, id, json) in copies {
        match out.last_mut() {
            Some(b) if b.text.len() + json.len() + 2 <= MAX_MESSAGE_BYTES => {
                b.text.pop();
                b.text.push(',');
                b.text.push_str(&json);
                b.text.push(']');
                b.ids.push(id);
                b.last = at;
            }
            _ => out.push(Bundle {
                text: format!("[{json}]"),
                ids: vec![id],
                last: at,
            }),
        }
    }
    out
}

const DAY_MS: f64 = 86_400_000.0;

/// `YYYY-MM-DD` of a day number (days since the Unix epoch, UTC), by the runtime's own Date.
fn date_of(day: i64) -> String {
    let iso: String = worker::js_sys::Date::new(&(day as f64 * DAY_MS).into())
        .to_iso_string()
        .into();
    iso.chars().take(10).collect()
}

/// `GET /t/report?from=YYYY-MM-DD&to=YYYY-MM-DD[&format=html]`: reconciliation — the orders
/// verified webhooks reported each day against their Purchases (sent, ignored with reason,
/// rejected, expired, dead-lettered, still retrying) — and match coverage per event name.
/// Default range: the last 7 days. At most 92 days (what the ledger keeps).
pub async fn report(req: &Request, cfg: &Config, env: &Env) -> Answer {
    let (ledger, pixel, tenant) = authorized_tenant(req, cfg, env)?;
    let url = req.url()?;
    let param = |k: &str| param(&url, k);
    let today = (worker::Date::now().as_millis() as f64 / DAY_MS).floor() as i64;
    let bad = |why| ApiError::BadQuery(why);
    let to = match param("to") {
        Some(d) => capi_core::report::day_of(&d).ok_or(bad("`to` must be a date YYYY-MM-DD"))?,
        None => today,
    };
    let from = match param("from") {
        Some(d) => capi_core::report::day_of(&d).ok_or(bad("`from` must be a date YYYY-MM-DD"))?,
        None => to - 6,
    };
    if from > to || to - from > 91 {
        return Err(bad(
            "`from` must not be after `to`, and the range at most 92 days",
        ));
    }
    let rows = ledger.report_rows(from, to).await.map_err(unavailable)?;
    let report = capi_core::report::reconcile(&rows, from, to);
    let days: Vec<Value> = report
        .days
        .iter()
        .map(|d| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["date"] = date_of(d.day).into();
            if let Some(o) = v.as_object_mut() {
                o.remove("day");
            }
            v
        })
        .collect();
    let data_controls = tenant
        .modes
        .is_ok_and(|m| m.customer_data != capi_core::privacy::CustomerData::Off);
    let quality = quality_of(&report.coverage, data_controls);
    let incidents = ledger.incidents().await.map_err(unavailable)?;
    let body = json!({"pixel_id": pixel, "from": date_of(from), "to": date_of(to), "days": days,
        "coverage": report.coverage, "quality": quality, "incidents": incidents});
    if param("format").as_deref() == Some("html") {
        let mut resp = Response::from_html(report_html(&body))?;
        resp.headers_mut().set("cache-control", "no-store")?;
        resp.headers_mut().set(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        )?;
        return Ok(resp);
    }
    no_store(&body)
}

/// Per event name: the estimated match quality from the coverage shares
/// (`capi_core::quality`), and the missing keys worth the most with what would add them.
fn quality_of(
    coverage: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
    data_controls: bool,
) -> Value {
    let mut out = serde_json::Map::new();
    for (name, counts) in coverage {
        let e = capi_core::quality::estimate_shares(counts);
        let events = counts.get("events").copied().unwrap_or(0).max(1) as f64;
        let missing: Vec<Value> = e
            .missing
            .iter()
            .map(|k| {
                json!({"key": k, "share": counts.get(*k).copied().unwrap_or(0) as f64 / events,
                    "advice": capi_core::quality::advice(k, name, data_controls)})
            })
            .collect();
        out.insert(
            name.clone(),
            json!({"estimated_score": e.score, "rating": e.rating, "missing": missing}),
        );
    }
    Value::Object(out)
}

/// Escapes text for HTML (the report holds dates, counts and reason names only, but a page
/// never trusts that).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as a small, readable page: a bar per day of the accuracy, then the table.
fn report_html(r: &Value) -> String {
    let days = r["days"].as_array().cloned().unwrap_or_default();
    let n = days.len().max(1);
    let (w, h) = (640.0, 160.0);
    let bw = w / n as f64;
    let mut bars = String::new();
    let mut rows = String::new();
    for (i, d) in days.iter().enumerate() {
        let acc = d["accuracy"].as_f64();
        let bh = acc.unwrap_or(0.0) * (h - 20.0);
        let label = acc.map_or("no orders".to_string(), |a| format!("{:.1} %", a * 100.0));
        bars.push_str(&format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} — {}</title></rect>"#,
            i as f64 * bw + 2.0,
            h - bh,
            (bw - 4.0).max(1.0),
            bh,
            if acc.unwrap_or(1.0) >= 0.95 { "#2e7d32" } else { "#c62828" },
            esc(d["date"].as_str().unwrap_or("")),
            label
        ));
        let ignored = d["ignored"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{} {}", esc(k), v))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(d["date"].as_str().unwrap_or("")),
            d["orders"], d["sent"], ignored, d["rejected"], d["expired"], d["dead_lettered"], d["retrying"], label
        ));
    }
    let mut coverage = String::new();
    if let Some(c) = r["coverage"].as_object() {
        for (name, keys) in c {
            let events = keys["events"].as_i64().unwrap_or(0).max(1) as f64;
            let cell = |k: &str| {
                let n = keys[k].as_i64().unwrap_or(0);
                format!("<td>{n} ({:.0} %)</td>", n as f64 * 100.0 / events)
            };
            coverage.push_str(&format!(
                "<tr><td>{}</td><td>{}</td>{}{}{}{}{}{}{}</tr>",
                esc(name),
                keys["events"],
                cell("fbp"),
                cell("fbc"),
                cell("em"),
                cell("ph"),
                cell("client_ip_address"),
                cell("client_user_agent"),
                cell("external_id")
            ));
        }
    }
    let mut quality = String::new();
    if let Some(q) = r["quality"].as_object() {
        for (name, e) in q {
            let missing = e["missing"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|k| {
                            format!(
                                "<li><b>{}</b> ({:.0} %): {}</li>",
                                esc(k["key"].as_str().unwrap_or("")),
                                k["share"].as_f64().unwrap_or(0.0) * 100.0,
                                esc(k["advice"].as_str().unwrap_or(""))
                            )
                        })
                        .collect::<String>()
                })
                .unwrap_or_default();
            quality.push_str(&format!(
                "<tr><td>{}</td><td>{:.1} ({})</td><td style=\"text-align:left\"><ul>{missing}</ul></td></tr>",
                esc(name),
                e["estimated_score"].as_f64().unwrap_or(0.0),
                esc(e["rating"].as_str().unwrap_or(""))
            ));
        }
    }
    let mut incidents = String::new();
    for i in r["incidents"].as_array().into_iter().flatten() {
        incidents.push_str(&format!(
            "<li><b>{}</b> (Meta code {}): {} events held, {}</li>",
            esc(i["cause"].as_str().unwrap_or("")),
            i["code"],
            i["held"],
            if i["closed_ms"].is_null() {
                "open"
            } else {
                "ended"
            }
        ));
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>capi-edge report</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>Orders reaching Meta — pixel {pixel}</h1><p>{from} to {to}. Accuracy = (sent + ignored with a reason) / orders reported by verified webhooks.</p>
<svg width="{w}" height="{h}" role="img" aria-label="accuracy per day">{bars}</svg>
<table><tr><th>day</th><th>orders</th><th>sent</th><th>ignored (reason)</th><th>rejected</th><th>expired</th><th>dead-lettered</th><th>retrying</th><th>accuracy</th></tr>{rows}</table>
<h2>Match coverage (events sent)</h2>
<table><tr><th>event</th><th>events</th><th>fbp</th><th>fbc</th><th>email</th><th>phone</th><th>IP</th><th>user agent</th><th>external id</th></tr>{coverage}</table>
<h2>Estimated match quality</h2><p>An estimate from the keys present (docs/operating.md), not Meta's score.</p>
<table><tr><th>event</th><th>estimate (0–10)</th><th>missing keys worth the most</th></tr>{quality}</table>
<h2>Incidents</h2><ul>{incidents}</ul>
</body></html>"#,
        pixel = esc(r["pixel_id"].as_str().unwrap_or("")),
        from = esc(r["from"].as_str().unwrap_or("")),
        to = esc(r["to"].as_str().unwrap_or("")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_copies_go_in_order_in_bundles_no_longer_than_a_queue_message() {
        let at = |rowid| Cursor { shard: 1, rowid };
        let copy = |n: i64, len: usize| (at(n), format!("e{n}"), format!("\"{}\"", "x".repeat(len - 2)));
        // Three of 50 KB fit in none but two of them; the fourth is small.
        let out = bundles(vec![copy(1, 50_000), copy(2, 50_000), copy(3, 50_000), copy(4, 10)]);
        let shape: Vec<(Vec<&str>, Cursor)> = out
            .iter()
            .map(|b| (b.ids.iter().map(String::as_str).collect(), b.last))
            .collect();
        assert_eq!(shape, [(vec!["e1", "e2"], at(2)), (vec!["e3", "e4"], at(4))]);
        for b in &out {
            assert!(b.text.len() <= MAX_MESSAGE_BYTES);
            let events: Vec<String> = serde_json::from_str(&b.text).expect("a JSON array");
            assert_eq!(events.len(), b.ids.len());
        }
        // A copy as long as a queue message is a bundle of its own.
        let out = bundles(vec![copy(1, 10), copy(2, MAX_MESSAGE_BYTES), copy(3, 10)]);
        assert_eq!(out.iter().map(|b| b.ids.len()).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
