//! `POST /t/e`: a browser beacon in, a 204 out. Ingest validates, applies the privacy modes,
//! normalizes + hashes and hands back the queue messages — nothing else: no ledger round trip
//! and no I/O here at all. The entry module (`worker/entry.mjs`) does the request's I/O around
//! two synchronous calls, [`gate`] and [`accept`] (exported in `lib.rs`): it reads the headers
//! and the body, asks the rate limiter, answers, and puts the messages on the queue (pooled
//! across the isolate's concurrent beacons, see BENCHMARKS.md).

use crate::config::{Config, Tenant};
use crate::cookies::{clear_cookie, random_128, set_cookie};
use crate::delivery::{self, new_nonce, QueuedEvent};
use crate::error::ApiError;
use crate::log;
use crate::protocol::Count;
use capi_core::beacon::{Beacon, MAX_BEACON_BYTES};
use capi_core::delivery::Outcome;
use capi_core::fbc::{cookie_domain, cookie_value as cookie, subdomain_index, COOKIE_MAX_AGE_SECS};
use capi_core::origin::{is_allowed_origin, origin_of};
use capi_core::website::{
    browser_website_event, cloudflare_client_ip, is_signed_source_only, BrowserId, BrowserIdCookie,
    RequestFacts, BROWSER_ID_COOKIE, BROWSER_ID_MAX_AGE_SECS, SIGNED_SOURCE_ONLY,
};
use worker::{Date, Headers, Request, Response, Url};

type Answer = std::result::Result<Response, ApiError>;

/// What ingest reads from a beacon request: its URL and the headers it uses, as the entry
/// module found them (None: the header is absent).
pub struct Head {
    pub url: Url,
    pub origin: Option<String>,
    pub referer: Option<String>,
    /// `CF-Connecting-IP`: the client address Cloudflare saw (the rate limiter's key too).
    pub ip: Option<String>,
    /// `CF-Connecting-IPv6`: the client's IPv6 address when the zone's Pseudo IPv4 setting puts a
    /// stand-in IPv4 address in `CF-Connecting-IP` (`cloudflare_client_ip` decides).
    pub ipv6: Option<String>,
    pub content_type: Option<String>,
    pub content_length: Option<String>,
    pub cookie: Option<String>,
    pub user_agent: Option<String>,
    pub sec_gpc: Option<String>,
}

/// The rate limiter's answer for a beacon, as the entry module got it.
#[derive(Clone, Copy)]
pub enum Limit {
    /// Within the limit, or no limiter bound.
    Within,
    Over,
    /// The limiter failed: the beacon goes through (an outage of the limiter loses no events).
    Failed,
}

impl Limit {
    /// The entry module's code: 1 over, 2 failed, anything else within.
    pub fn from_code(code: u8) -> Limit {
        match code {
            1 => Limit::Over,
            2 => Limit::Failed,
            _ => Limit::Within,
        }
    }
}

/// A beacon that passed [`gate`]: the rate limiter's key (per tenant and client IP) and who
/// sent it, kept for [`accept`].
pub struct Gated {
    pub key: String,
    caller: Caller,
}

/// An accepted beacon: the 204 and the queue messages (JSON text, one per pixel of the tenant).
pub struct Accepted {
    pub response: Response,
    pub messages: Vec<String>,
}

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
fn caller(
    origin: Option<&str>,
    referer: Option<&str>,
    url: &Url,
    tenant: &Tenant,
) -> std::result::Result<Caller, ApiError> {
    let own = url.origin().ascii_serialization();
    let origin = match origin {
        Some(o) => o,
        None => referer
            .and_then(origin_of)
            .ok_or(ApiError::ForbiddenOrigin)?,
    };
    if !is_allowed_origin(origin, &own, &tenant.allowed_origins) {
        return Err(ApiError::ForbiddenOrigin);
    }
    Ok(if origin.eq_ignore_ascii_case(&own) {
        Caller::SameOrigin
    } else if origin == "null" {
        Caller::Null
    } else {
        Caller::Listed(origin.to_string())
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
    let h = req.headers();
    let caller = caller(
        h.get("origin")?.as_deref(),
        h.get("referer")?.as_deref(),
        &url,
        tenant,
    )?;
    let headers = Headers::new();
    cors_headers(&headers, &caller)?;
    headers.set("access-control-allow-methods", "POST, OPTIONS")?;
    headers.set("access-control-allow-headers", "content-type")?;
    headers.set("access-control-max-age", "86400")?;
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

/// The first look at a beacon, before its body is read: its tenant and caller, its media
/// type and declared length.
pub fn gate(cfg: &Config, head: &Head) -> std::result::Result<Gated, ApiError> {
    let tenant = cfg.tenant_for_host(head.url.host_str().unwrap_or(""))?;
    let caller = caller(
        head.origin.as_deref(),
        head.referer.as_deref(),
        &head.url,
        tenant,
    )?;
    let content_type = head.content_type.as_deref().unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !(media.is_empty()
        || media.eq_ignore_ascii_case("application/json")
        || media.eq_ignore_ascii_case("text/plain"))
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = head
        .content_length
        .as_deref()
        .and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BEACON_BYTES as u64) {
        return Err(ApiError::TooLarge {
            limit: MAX_BEACON_BYTES,
        });
    }
    Ok(Gated {
        key: format!("{}:{}", tenant.id, rate_client(head)),
        caller,
    })
}

/// Who the rate limiter counts: the address Cloudflare saw (behind a Pseudo IPv4 stand-in, the
/// IPv6 address it stands for), an IPv6 address by its /64. One home or server has a whole /64
/// and could take a fresh address for every few beacons.
fn rate_client(head: &Head) -> String {
    use std::net::IpAddr;
    // The client's address as Meta gets it (`CF-Connecting-IPv6` only behind a Pseudo IPv4
    // stand-in: otherwise it is the client's own to make up).
    let ip = cloudflare_client_ip(head.ip.as_deref(), head.ipv6.as_deref())
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Some(ip) => ip.to_string(),
        None => "unknown".into(),
    }
}

/// A beacon with its body (None: it was longer than `MAX_BEACON_BYTES`) and the rate limiter's
/// answer: validated, enriched, and either refused or accepted with its queue messages.
pub fn accept(
    cfg: &Config,
    head: &Head,
    gated: &Gated,
    body: Option<&[u8]>,
    limit: Limit,
) -> std::result::Result<Accepted, ApiError> {
    let url = &head.url;
    let tenant = cfg.tenant_for_host(url.host_str().unwrap_or(""))?;
    let caller = &gated.caller;
    match limit {
        Limit::Over => return Err(ApiError::RateLimited),
        Limit::Failed => log::warn("rate_limiter_failed", &[]),
        Limit::Within => {}
    }
    let body = body.ok_or(ApiError::TooLarge {
        limit: MAX_BEACON_BYTES,
    })?;
    if body.len() > MAX_BEACON_BYTES {
        return Err(ApiError::TooLarge {
            limit: MAX_BEACON_BYTES,
        });
    }
    let beacon = Beacon::parse(body).map_err(ApiError::BadBeacon)?;
    let modes = tenant.privacy()?;
    let domain = cookie_domain(
        tenant.cookie_domain.as_deref(),
        url.host_str().unwrap_or(""),
    );
    let cookie_header = head.cookie.as_deref().unwrap_or("");
    let client_ip = cloudflare_client_ip(head.ip.as_deref(), head.ipv6.as_deref());
    let facts = RequestFacts {
        client_ip: client_ip.as_deref(),
        user_agent: head.user_agent.as_deref(),
        cookie_fbp: cookie(cookie_header, "_fbp"),
        cookie_fbc: cookie(cookie_header, "_fbc"),
        gpc_header: head.sec_gpc.as_deref().is_some_and(|v| v.trim() == "1"),
        // Host-only cookies (IP hosts, localhost) keep Meta's usual `fb.1.`.
        subdomain_index: domain.as_deref().map_or(1, subdomain_index),
        now_ms: Date::now().as_millis(),
    };
    // A session test code is attached only as the tenant's TEST_EVENT_CODES (or Meta's shape)
    // allows: any visitor can set one.
    // A sandboxed frame (`Origin: null`) gets no cookies, so it gets no browser id either.
    let mut random = random_128;
    let browser = (!matches!(caller, Caller::Null)).then(|| BrowserId {
        cookie: cookie(cookie_header, BROWSER_ID_COOKIE),
        random: &mut random,
    });
    let built = browser_website_event(beacon, &facts, &modes, &tenant.test_event_codes, browser)
        .map_err(ApiError::BadBeacon)?;
    let event = built.event;
    let mut counts: Vec<Count> = built
        .dropped
        .iter()
        .map(|d| Count::dropped(&d.field, d.reason))
        .collect();
    log::dropped(&event.event_id, &built.dropped);
    let ignored = built.ignored.or_else(|| {
        is_signed_source_only(
            &event.event_name,
            &event.event_id,
            tenant.has_signed_orders(),
        )
        .then_some(SIGNED_SOURCE_ONLY)
    });

    let headers = Headers::new();
    cors_headers(&headers, caller)?;
    headers.set("cache-control", "no-store")?;
    let secure = url.scheme() == "https";
    if !matches!(caller, Caller::Null) {
        for (name, value) in [("_fbp", &built.set_fbp), ("_fbc", &built.set_fbc)] {
            if let Some(c) = value
                .as_deref()
                .and_then(|v| set_cookie(name, v, COOKIE_MAX_AGE_SECS, domain.as_deref(), secure))
            {
                headers.append("set-cookie", &c)?;
            }
        }
        let browser_id = match &built.browser_id {
            Some(BrowserIdCookie::Set(id)) => set_cookie(
                BROWSER_ID_COOKIE,
                id,
                BROWSER_ID_MAX_AGE_SECS,
                domain.as_deref(),
                secure,
            ),
            Some(BrowserIdCookie::Clear) => {
                Some(clear_cookie(BROWSER_ID_COOKIE, domain.as_deref(), secure))
            }
            None => None,
        };
        if let Some(c) = browser_id {
            headers.append("set-cookie", &c)?;
        }
    }

    // Every pixel of the tenant gets its own message: its own batching, claims, receipts and
    // retries, so a failure at one pixel never delays or duplicates delivery to another. An
    // event that is not relayed is only counted (the reason is in /t/stats), never sent.
    if let Some(reason) = ignored {
        delivery::log_event(&event, Outcome::Ignored, Some(reason), None, 0);
        counts.push(Count::outcome(Outcome::Ignored, reason));
    }
    let counts = crate::protocol::merged(counts);
    let messages: Vec<String> = tenant
        .pixels
        .iter()
        .map(|p| {
            QueuedEvent {
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
                replay: false,
            }
            .to_json()
        })
        .collect();
    // Bounded after encoding (a queue message is at most 128 KB): refused now, before its 204,
    // rather than failing the bundle it would be pooled into.
    if messages
        .iter()
        .any(|m| m.len() > delivery::MAX_MESSAGE_BYTES)
    {
        return Err(ApiError::EventTooLarge {
            limit: delivery::MAX_MESSAGE_BYTES,
        });
    }
    Ok(Accepted {
        response: Response::empty()?.with_status(204).with_headers(headers),
        messages,
    })
}
