//! `POST /t/e`: a browser beacon in, a 204 out. Ingest validates, applies the privacy modes,
//! normalizes + hashes and enqueues — nothing else: no ledger round trip on this path (the
//! queue consumer claims whole batches).

use crate::config::{Config, Tenant};
use crate::cookies::set_cookie;
use crate::delivery::{self, new_nonce, QueuedEvent};
use crate::error::ApiError;
use crate::ledger::Count;
use crate::log;
use capi_core::beacon::{Beacon, MAX_BEACON_BYTES};
use capi_core::delivery::Outcome;
use capi_core::fbc::{cookie_domain, cookie_value as cookie, subdomain_index};
use capi_core::origin::{is_allowed_origin, origin_of};
use capi_core::website::{is_unsigned_purchase, website_event, RequestFacts, SIGNED_SOURCE_ONLY};
use worker::{Context, Date, Env, Headers, Request, Response, Url};

type Answer = std::result::Result<Response, ApiError>;

/// The rate limiting binding for unsigned beacons, per client IP (wrangler.toml `ratelimits`).
const RATE_LIMITER: &str = "BEACON_RATE_LIMITER";

/// Where a beacon comes from, as far as the browser says.
enum Caller {
    /// The shop's own origin: no CORS headers needed.
    SameOrigin,
    /// An origin listed in `ALLOWED_ORIGINS`.
    Listed(String),
    /// `Origin: null` (a sandboxed frame, e.g. Shopify's checkout pixel), when listed: no
    /// credentials, no cookies.
    Null,
}

/// The caller if it may post here, else `ForbiddenOrigin`. Browsers send `Origin` on every
/// POST (beacons and keepalive fetches); `Referer` is the fallback. `Origin` is a courtesy of
/// browsers, not authentication: curl sets any; the rate limit and the signed-source rule are
/// what hold against it.
fn caller(req: &Request, url: &Url, tenant: &Tenant) -> std::result::Result<Caller, ApiError> {
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
    if !is_allowed_origin(&origin, &own, &tenant.allowed_origins) {
        return Err(ApiError::ForbiddenOrigin);
    }
    Ok(if origin.eq_ignore_ascii_case(&own) {
        Caller::SameOrigin
    } else if origin == "null" {
        Caller::Null
    } else {
        Caller::Listed(origin)
    })
}

/// CORS headers for an allowed cross-origin caller. Never `Access-Control-Allow-Credentials`:
/// beacons need no readable answer, and a `null` origin is answered with `*`, which browsers
/// never pair with credentials.
fn cors_headers(headers: &Headers, caller: &Caller) -> worker::Result<()> {
    match caller {
        Caller::SameOrigin => {}
        Caller::Listed(origin) => {
            headers.set("access-control-allow-origin", origin)?;
            headers.set("vary", "Origin")?;
        }
        Caller::Null => headers.set("access-control-allow-origin", "*")?,
    }
    Ok(())
}

/// `OPTIONS /t/e`: CORS preflight for origins in ALLOWED_ORIGINS (e.g. a checkout sandbox).
pub fn preflight(req: &Request, cfg: &Config) -> Answer {
    let url = req.url()?;
    let tenant = cfg.tenant_for_host(url.host_str().unwrap_or(""))?;
    let caller = caller(req, &url, tenant)?;
    let headers = Headers::new();
    cors_headers(&headers, &caller)?;
    headers.set("access-control-allow-methods", "POST, OPTIONS")?;
    headers.set("access-control-allow-headers", "content-type")?;
    headers.set("access-control-max-age", "86400")?;
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

/// Per-IP rate limit for unsigned beacons; a missing binding or a limiter error lets the
/// beacon through (logged), so an outage of the limiter loses no events.
async fn within_rate_limit(env: &Env, tenant: &str, ip: Option<&str>) -> bool {
    let Ok(limiter) = env.rate_limiter(RATE_LIMITER) else {
        return true;
    };
    match limiter
        .limit(format!("{tenant}:{}", ip.unwrap_or("unknown")))
        .await
    {
        Ok(outcome) => outcome.success,
        Err(e) => {
            log::warn("rate_limiter_failed", &[("error", log::kind_of(&e).into())]);
            true
        }
    }
}

/// `POST /t/e`: validates and enriches a beacon, answers 204 at once, enqueues in the background.
pub async fn beacon(mut req: Request, cfg: &Config, env: &Env, ctx: &Context) -> Answer {
    let url = req.url()?;
    let tenant = cfg.tenant_for_host(url.host_str().unwrap_or(""))?;
    let caller = caller(&req, &url, tenant)?;
    let ip = req.headers().get("cf-connecting-ip")?;
    if !within_rate_limit(env, &tenant.id, ip.as_deref()).await {
        return Err(ApiError::RateLimited);
    }
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
    let modes = tenant.privacy()?;
    let domain = cookie_domain(
        tenant.cookie_domain.as_deref(),
        url.host_str().unwrap_or(""),
    );
    let h = req.headers();
    let cookie_header = h.get("cookie")?.unwrap_or_default();
    let ua = h.get("user-agent")?;
    let facts = RequestFacts {
        client_ip: ip.as_deref(),
        user_agent: ua.as_deref(),
        cookie_fbp: cookie(&cookie_header, "_fbp"),
        cookie_fbc: cookie(&cookie_header, "_fbc"),
        gpc_header: h.get("sec-gpc")?.is_some_and(|v| v.trim() == "1"),
        // Host-only cookies (IP hosts, localhost) keep Meta's usual `fb.1.`.
        subdomain_index: domain.as_deref().map_or(1, subdomain_index),
        now_ms: Date::now().as_millis(),
    };
    let built = website_event(beacon, &facts, &modes).map_err(ApiError::BadBeacon)?;
    let event = built.event;
    let mut counts: Vec<Count> = built
        .dropped
        .iter()
        .map(|d| Count::dropped(&d.field, d.reason))
        .collect();
    log::dropped(&event.event_id, &built.dropped);
    let ignored = built.ignored.or_else(|| {
        is_unsigned_purchase(
            &event.event_name,
            &event.event_id,
            tenant.has_signed_orders(),
        )
        .then_some(SIGNED_SOURCE_ONLY)
    });

    let headers = Headers::new();
    cors_headers(&headers, &caller)?;
    headers.set("cache-control", "no-store")?;
    let secure = url.scheme() == "https";
    if !matches!(caller, Caller::Null) {
        for (name, value) in [("_fbp", &built.set_fbp), ("_fbc", &built.set_fbc)] {
            if let Some(c) = value
                .as_deref()
                .and_then(|v| set_cookie(name, v, domain.as_deref(), secure))
            {
                headers.append("set-cookie", &c)?;
            }
        }
    }

    // Every pixel of the tenant gets its own message: its own batching, claims, receipts and
    // retries, so a failure at one pixel never delays or duplicates delivery to another. An
    // event that is not relayed is only counted (the reason is in /t/stats), never sent.
    if let Some(reason) = ignored {
        delivery::log_event(&event, Outcome::Ignored, Some(reason), None, 0);
        counts.push(Count::outcome(Outcome::Ignored, reason));
    }
    let messages: Vec<QueuedEvent> = tenant
        .pixels
        .iter()
        .map(|p| QueuedEvent {
            tenant: tenant.id.clone(),
            pixel_id: p.id.clone(),
            event: ignored.is_none().then(|| event.clone()),
            attempt: 0,
            nonce: if ignored.is_none() {
                new_nonce()
            } else {
                String::new()
            },
            counts: counts.clone(),
            source: None,
            test_event_code: built.test_event_code.clone(),
        })
        .collect();
    let (env, cfg) = (env.clone(), cfg.clone());
    ctx.wait_until(async move {
        if delivery::enqueue_all(&env, &messages).await {
            return;
        }
        // The queue refused them: deliver now through the same path rather than drop them.
        for queued in messages {
            let (tenant, pixel) = (queued.tenant.clone(), queued.pixel_id.clone());
            delivery::deliver_pixel(&cfg, &env, &tenant, &pixel, vec![queued]).await;
        }
    });
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}
