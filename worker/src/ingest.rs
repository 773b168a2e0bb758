//! `POST /t/e`: a browser beacon in, a 204 out, the CAPI event sent in the background.

use crate::config::Config;
use crate::cookies::{cookie, set_cookie};
use crate::delivery;
use crate::error::ApiError;
use crate::ledger::{Claim, DropCount, EventKey, LedgerClient};
use capi_core::beacon::{Beacon, MAX_BEACON_BYTES};
use capi_core::origin::{is_allowed_origin, origin_of};
use capi_core::website::{website_event, RequestFacts};
use worker::{Context, Date, Env, Headers, Request, Response};

type Answer = std::result::Result<Response, ApiError>;

/// The request's origin if it may post here, else `ForbiddenOrigin`. Browsers send `Origin` on
/// every POST (beacons and keepalive fetches); `Referer` is the fallback.
fn checked_origin(req: &Request, cfg: &Config) -> std::result::Result<String, ApiError> {
    let url = req.url()?;
    let own = url.origin().ascii_serialization();
    let h = req.headers();
    let origin = match h.get("origin")? {
        Some(o) => o,
        None => h
            .get("referer")?
            .as_deref()
            .and_then(origin_of)
            .map(str::to_string)
            .ok_or(ApiError::ForbiddenOrigin)?,
    };
    if is_allowed_origin(&origin, &own, &cfg.allowed_origins) {
        Ok(origin)
    } else {
        Err(ApiError::ForbiddenOrigin)
    }
}

/// CORS headers for an allowed cross-origin caller (same-origin calls need none).
fn cors_headers(headers: &Headers, origin: &str, req: &Request) -> worker::Result<()> {
    let own = req.url()?.origin().ascii_serialization();
    if !origin.eq_ignore_ascii_case(&own) {
        headers.set("access-control-allow-origin", origin)?;
        headers.set("access-control-allow-credentials", "true")?;
        headers.set("vary", "Origin")?;
    }
    Ok(())
}

/// `OPTIONS /t/e`: CORS preflight for origins in ALLOWED_ORIGINS (e.g. a checkout sandbox).
pub fn preflight(req: &Request, cfg: &Config) -> Answer {
    let origin = checked_origin(req, cfg)?;
    let headers = Headers::new();
    cors_headers(&headers, &origin, req)?;
    headers.set("access-control-allow-methods", "POST, OPTIONS")?;
    headers.set("access-control-allow-headers", "content-type")?;
    headers.set("access-control-max-age", "86400")?;
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

/// `POST /t/e`: validates and enriches a beacon, answers 204 at once, relays in the background.
pub async fn beacon(mut req: Request, cfg: &Config, env: &Env, ctx: &Context) -> Answer {
    let origin = checked_origin(&req, cfg)?;
    let content_type = req
        .headers()
        .get("content-type")?
        .unwrap_or_default()
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(media, "" | "application/json" | "text/plain") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = crate::body::bounded(&mut req, MAX_BEACON_BYTES).await?;
    let beacon = Beacon::parse(&body).map_err(ApiError::BadBeacon)?;
    let (pixel_id, token) = cfg.meta_credentials()?;

    let h = req.headers();
    let cookie_header = h.get("cookie")?.unwrap_or_default();
    let ip = h.get("cf-connecting-ip")?;
    let ua = h.get("user-agent")?;
    let facts = RequestFacts {
        client_ip: ip.as_deref(),
        user_agent: ua.as_deref(),
        cookie_fbp: cookie(&cookie_header, "_fbp"),
        cookie_fbc: cookie(&cookie_header, "_fbc"),
        now_ms: Date::now().as_millis(),
    };
    let built = website_event(beacon, &facts).map_err(ApiError::BadBeacon)?;
    for d in &built.dropped {
        worker::console_log!(
            "{}",
            serde_json::json!({"msg": "dropped", "event_id": built.event.event_id, "field": d.field, "reason": d.reason})
        );
    }

    let headers = Headers::new();
    cors_headers(&headers, &origin, &req)?;
    headers.set("cache-control", "no-store")?;
    let secure = req.url()?.scheme() == "https";
    for (name, value) in [("_fbp", &built.set_fbp), ("_fbc", &built.set_fbc)] {
        if let Some(v) = value {
            headers.append(
                "set-cookie",
                &set_cookie(name, v, cfg.cookie_domain.as_deref(), secure),
            )?;
        }
    }

    // Claim (dedup + drop counts) and enqueue after answering: the browser never waits on them.
    let dropped = built
        .dropped
        .iter()
        .map(|d| DropCount {
            field: d.field.clone(),
            reason: d.reason.to_string(),
        })
        .collect();
    let event = built.event;
    let (env, cfg, now_ms) = (env.clone(), cfg.clone(), facts.now_ms);
    ctx.wait_until(async move {
        let key = EventKey {
            event_name: event.event_name.clone(),
            event_id: event.event_id.clone(),
        };
        if let Some(l) = LedgerClient::for_pixel(&env, &pixel_id) {
            // A double-fired browser event (same name and id) is sent once.
            if l.claim(&key, now_ms, dropped).await == Claim::Duplicate {
                delivery::log(&event, "duplicate", None, None, 0);
                return;
            }
        }
        delivery::deliver(&env, &cfg, &pixel_id, &token, event).await;
    });
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}
