//! capi-edge Worker: serves the pixel shim, takes beacons on the shop's own domain and relays
//! them to Meta's Conversions API. Meta's rules live in `capi-core`; this crate moves bytes.
//!
//! With the default feature `backend` this is the whole Worker. Without it, the beacon Worker
//! of the split deployment (`worker/beacons.mjs`): beacons, the shim and the beacon's
//! preflight, with everything else forwarded to the whole Worker behind a service binding.
//! The shared modules are then compiled for the beacon path only, so part of them is unused.
#![cfg_attr(not(feature = "backend"), allow(dead_code, unused_imports))]

/// Items of the whole Worker only (the `backend` feature), not of the beacon Worker.
macro_rules! backend {
    ($($item:item)*) => { $(#[cfg(feature = "backend")] $item)* };
}

backend! {
    mod admin;
    mod body;
    mod deadline;
    mod demo;
    mod hooks;
    mod incident;
    mod ledger;
    pub use ledger::Ledger;
    use worker::{event, Context, MessageBatch};
}
mod config;
mod cookies;
mod delivery;
mod error;
mod ingest;
mod log;
mod protocol;
mod shim_assets;
mod stats;

use config::Config;
use error::ApiError;
use wasm_bindgen::prelude::*;
use worker::{js_sys, Env, Method, Request, Response, Result, Url};

/// The route under the Worker's prefix (`/e`, `/p.js`, …), if `path` is one of ours: `/t/e` is
/// ours, `/thank-you` is not (the prefix must end at a segment boundary).
fn route<'a>(cfg: &Config, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(cfg.route_prefix.as_str())
        .filter(|r| r.starts_with('/'))
}

/// The routes that need nothing but the request and the configuration: the shim and the
/// beacon's CORS preflight (the beacon Worker answers them itself); None for any other.
fn static_route(
    req: &Request,
    cfg: &Config,
    route: &str,
) -> Option<std::result::Result<Response, ApiError>> {
    match (req.method(), route) {
        (Method::Get | Method::Head, "/p.js") => Some(shim_assets::loader(req, cfg)),
        (Method::Get | Method::Head, "/p.wasm") => Some(shim_assets::wasm(req)),
        (Method::Options, "/e") => Some(ingest::preflight(req, cfg)),
        _ => None,
    }
}

/// The beacon Worker's call for every request but a beacon: the shim or the preflight as a
/// `Response`, or `undefined` for what the whole Worker answers (the entry module forwards it).
#[cfg(not(feature = "backend"))]
#[wasm_bindgen(js_name = staticRoute)]
pub fn static_route_js(
    env: &Env,
    req: worker::web_sys::Request,
) -> std::result::Result<JsValue, JsValue> {
    let cfg = Config::from_env(env);
    let req = Request::from(req);
    let path = req.path();
    match route(&cfg, &path).and_then(|r| static_route(&req, &cfg, r)) {
        Some(answer) => {
            stats::enter(stats::Stat::OtherRequests);
            to_js(answer)
        }
        None => Ok(JsValue::UNDEFINED),
    }
}

/// Every route but the beacon's. `POST /t/e` never reaches this handler: the entry module
/// (`worker/entry.mjs`) serves it with [`beacon_gate`] and [`beacon_accept`].
#[cfg(feature = "backend")]
#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    stats::enter(stats::Stat::OtherRequests);
    let cfg = Config::from_env(&env);
    let path = req.path();
    let Some(route) = route(&cfg, &path) else {
        return demo::page_or_not_found(&cfg, &path);
    };
    if let Some(answer) = static_route(&req, &cfg, route) {
        return answer.or_else(|e| e.into_response());
    }
    let answer = match (req.method(), route) {
        (Method::Post, r) if r.starts_with("/hooks/") => match hooks::Platform::from_route(r) {
            Some((platform, tenant)) => {
                let tenant = tenant.map(str::to_string);
                hooks::hook(req, platform, tenant.as_deref(), &cfg, &env).await
            }
            None => Err(ApiError::NotFound),
        },
        (Method::Get | Method::Head, "/health") => health(&req, &cfg, &env).await,
        (Method::Get, "/stats") => admin::stats(&req, &cfg, &env).await,
        (Method::Get, "/report") => admin::report(&req, &cfg, &env).await,
        (Method::Get, "/dead-letters") => admin::dead_letters(&req, &cfg, &env).await,
        (Method::Post, "/replay") => admin::replay(&req, &cfg, &env).await,
        (Method::Get, r) if r.starts_with("/receipts/") => {
            admin::receipts(&req, &cfg, &env, &r["/receipts/".len()..]).await
        }
        (
            _,
            "/p.js" | "/p.wasm" | "/e" | "/health" | "/stats" | "/report" | "/dead-letters"
            | "/replay",
        ) => Err(ApiError::MethodNotAllowed),
        (_, r) if r.starts_with("/receipts/") => Err(ApiError::MethodNotAllowed),
        (_, r) if hooks::Platform::from_route(r).is_some() => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound),
    };
    answer.or_else(|e| e.into_response())
}

/// A beacon that passed [`beacon_gate`]: what ingest read from its request and the rate
/// limiter's key (per tenant and client IP).
#[wasm_bindgen]
pub struct BeaconTicket {
    head: ingest::Head,
    gated: ingest::Gated,
}

#[wasm_bindgen]
impl BeaconTicket {
    /// The key to count this beacon under at the rate limiter.
    #[wasm_bindgen(getter, js_name = limitKey)]
    pub fn limit_key(&self) -> String {
        self.gated.key.clone()
    }
}

/// A runtime `Response` for JavaScript; a response that cannot be built is thrown.
fn to_js(answer: std::result::Result<Response, ApiError>) -> std::result::Result<JsValue, JsValue> {
    match answer.or_else(|e| e.into_response()) {
        Ok(r) => Ok(worker::web_sys::Response::from(r).into()),
        Err(_) => Err(JsValue::from_str("response_not_built")),
    }
}

/// The entry module's first call for a `POST`, before the body is read, with the request's URL
/// and headers: `undefined` when it is not a beacon (the request goes to [`fetch`]), an error
/// `Response` (unknown host, origin, media type, declared length), or a [`BeaconTicket`] to
/// rate-limit and read the body for. Headers are read only for a beacon, each once.
#[wasm_bindgen(js_name = beaconGate)]
pub fn beacon_gate(
    env: &Env,
    url: &str,
    headers: &worker::web_sys::Headers,
) -> std::result::Result<JsValue, JsValue> {
    let cfg = Config::from_env(env);
    let Ok(url) = Url::parse(url) else {
        return Ok(JsValue::UNDEFINED);
    };
    if route(&cfg, url.path()) != Some("/e") {
        return Ok(JsValue::UNDEFINED);
    }
    stats::enter(stats::Stat::Beacons);
    // `get` throws only for an invalid header name; these are constants.
    let header = |name: &str| headers.get(name).ok().flatten();
    let head = ingest::Head {
        url,
        origin: header("origin"),
        referer: header("referer"),
        ip: header("cf-connecting-ip"),
        ipv6: header("cf-connecting-ipv6"),
        content_type: header("content-type"),
        content_length: header("content-length"),
        cookie: header("cookie"),
        user_agent: header("user-agent"),
        sec_gpc: header("sec-gpc"),
    };
    match ingest::gate(&cfg, &head) {
        Ok(gated) => Ok(BeaconTicket { head, gated }.into()),
        Err(e) => to_js(Err(e)),
    }
}

/// The entry module's second call, with the body (`undefined` when it was longer than
/// `MAX_BEACON_BYTES`) and the rate limiter's answer (0 within or unbound, 1 over, 2 failed):
/// `[Response]` for a refused beacon, `[Response, ...messages]` (queue bodies, JSON text) for
/// an accepted one.
#[wasm_bindgen(js_name = beaconAccept)]
pub fn beacon_accept(
    env: &Env,
    ticket: BeaconTicket,
    body: Option<Vec<u8>>,
    limit: u8,
) -> std::result::Result<js_sys::Array, JsValue> {
    let cfg = Config::from_env(env);
    let out = js_sys::Array::new();
    match ingest::accept(
        &cfg,
        &ticket.head,
        &ticket.gated,
        body.as_deref(),
        ingest::Limit::from_code(limit),
    ) {
        Ok(accepted) => {
            out.push(&to_js(Ok(accepted.response))?);
            for m in accepted.messages {
                out.push(&JsValue::from(m));
            }
        }
        Err(e) => {
            out.push(&to_js(Err(e))?);
        }
    }
    Ok(out)
}

/// Delivers queue messages now, without the queue (it refused them, or is not bound when
/// `queue_bound` is false): the same path as the consumer, grouped per tenant and pixel.
#[cfg(feature = "backend")]
#[wasm_bindgen(js_name = deliverNow)]
pub async fn deliver_now(env: Env, messages: Vec<String>, queue_bound: bool) {
    if queue_bound {
        log::error("queue_send_failed", &[("messages", messages.len().into())]);
    } else {
        log::warn("queue_not_bound", &[("binding", "EVENTS".into())]);
    }
    delivery::deliver_texts(&env, &messages).await;
}

/// The longest beacon body ingest reads, in bytes (a longer one is refused with 413).
#[wasm_bindgen(js_name = maxBeaconBytes)]
pub fn max_beacon_bytes() -> usize {
    capi_core::beacon::MAX_BEACON_BYTES
}

/// The queue consumer: delivers what ingest enqueued (see `delivery`).
#[cfg(feature = "backend")]
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, ctx: Context) -> Result<()> {
    stats::enter(stats::Stat::ConsumerInvocations);
    if batch.queue().ends_with("dead-letters") {
        return delivery::park_dead_letters(batch, env).await;
    }
    delivery::consume(batch, env, &ctx).await
}

/// `GET /t/health`. Without a token, only whether the request host's tenant is ok:
/// `{"ok": true|false}` (200 either way) — no ids, pixels or errors, which would list an
/// agency's clients to anyone. With that tenant's admin token: its configuration and errors
/// (setting and secret names, never a value). With the operator's `ADMIN_TOKEN`: every tenant.
/// A bearer token that matches neither is refused (401).
#[cfg(feature = "backend")]
async fn health(req: &Request, cfg: &Config, env: &Env) -> std::result::Result<Response, ApiError> {
    use capi_core::webhook::signature::bearer_matches;
    let host = req.url()?.host_str().unwrap_or("").to_string();
    let own = cfg.host_tenant(&host);
    let auth = req.headers().get("authorization")?;
    let operator = cfg
        .admin_token
        .as_deref()
        .is_some_and(|t| bearer_matches(auth.as_deref(), t));
    let tenant_admin = own
        .and_then(|t| t.admin_token.as_deref())
        .is_some_and(|t| bearer_matches(auth.as_deref(), t));
    let bearer = auth
        .as_deref()
        .and_then(capi_core::webhook::signature::bearer_token)
        .is_some();
    if bearer && !operator && !tenant_admin {
        return Err(ApiError::Unauthorized);
    }
    let ok = own.is_some_and(|t| t.usable().is_ok());
    let body = if operator || tenant_admin {
        let mut body = health_details(cfg, own, operator);
        let mut own_looked = None;
        if operator {
            body["isolate"] = stats::json();
            own_looked = every_tenants_incidents(cfg, env, own, &mut body).await;
        }
        if let Some(t) = own {
            let looked = match own_looked {
                Some(looked) => looked,
                None => open_incidents(cfg, env, t).await,
            };
            with_incidents(&mut body, looked);
        }
        body
    } else {
        serde_json::json!({ "ok": ok })
    };
    let mut resp = Response::from_json(&body)?;
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// How long the operator's health reads tenants' ledgers before the rest say `incidents_unknown`.
#[cfg(feature = "backend")]
const HEALTH_BUDGET_MS: u64 = 8_000;

/// Sets a health entry's open incidents: configured, but Meta refuses its events, it is not
/// `ok` until they end; a ledger that cannot be read may hold one, so not `ok` either (a monitor
/// must not read "fine").
#[cfg(feature = "backend")]
fn with_incidents(
    entry: &mut serde_json::Value,
    (incidents, read): (Vec<serde_json::Value>, bool),
) {
    if !incidents.is_empty() || !read {
        entry["ok"] = false.into();
    }
    if !read {
        entry["incidents_unknown"] = true.into();
    }
    entry["incidents"] = incidents.into();
}

/// For the operator, who watches every shop from one URL: each entry of `tenants` with its
/// open incidents (one ledger call per pixel, one after the other: a concurrent read of them
/// all weighed 2.8 KB gzip). A tenant that is not configured is not read (its id may be
/// another's, or none); the tenants not reached within [`HEALTH_BUDGET_MS`] are
/// `incidents_unknown`, so a monitor gets an answer while ledgers are slow. Returns what it
/// read for the host's tenant `own`, which is then not read again.
#[cfg(feature = "backend")]
async fn every_tenants_incidents(
    cfg: &Config,
    env: &Env,
    own: Option<&config::Tenant>,
    body: &mut serde_json::Value,
) -> Option<(Vec<serde_json::Value>, bool)> {
    let Ok(tenants) = &cfg.tenants else {
        return None;
    };
    // `tenants` lists every tenant for the operator, in the configuration's order.
    let entries = body["tenants"].as_array_mut()?;
    let start = worker::Date::now().as_millis();
    let mut own_looked = None;
    for (entry, t) in entries.iter_mut().zip(tenants) {
        if t.usable().is_err() {
            continue;
        }
        let looked = if worker::Date::now().as_millis() - start < HEALTH_BUDGET_MS {
            open_incidents(cfg, env, t).await
        } else {
            (Vec::new(), false)
        };
        if own.is_some_and(|o| std::ptr::eq(o, t)) {
            own_looked = Some(looked.clone());
        }
        with_incidents(entry, looked);
    }
    own_looked
}

/// The tenant's open incidents, per pixel: why delivery stopped and what fixes it; false when
/// a pixel's ledger could not be read.
#[cfg(feature = "backend")]
async fn open_incidents(
    cfg: &Config,
    env: &Env,
    t: &config::Tenant,
) -> (Vec<serde_json::Value>, bool) {
    let mut open = Vec::new();
    let mut read = true;
    for p in &t.pixels {
        let Some(l) = ledger::LedgerClient::for_pixel(env, cfg, &t.id, &p.id) else {
            continue;
        };
        let Ok(incidents) = l.incidents().await else {
            read = false;
            continue;
        };
        for i in incidents {
            if i["closed_ms"].is_null() {
                let cause = i["cause"]
                    .as_str()
                    .and_then(capi_core::meta_answer::Incident::parse);
                open.push(
                    serde_json::json!({"pixel_id": p.id, "cause": i["cause"], "code": i["code"],
                    "opened_ms": i["opened_ms"], "events_held": i["held"],
                    "what_to_do": cause.map_or("", |c| c.what_to_do())}),
                );
            }
        }
    }
    (open, read)
}

/// The health details an admin sees: the host's tenant (configured, privacy modes) and what is
/// wrong with it — or, for the operator, with any tenant — by setting and secret names only.
#[cfg(feature = "backend")]
fn health_details(cfg: &Config, own: Option<&config::Tenant>, operator: bool) -> serde_json::Value {
    let tenants: Vec<serde_json::Value> = match &cfg.tenants {
        Ok(ts) => ts
            .iter()
            // The host's own entry (by identity: a second entry with its id is another's).
            .filter(|t| operator || own.is_some_and(|o| std::ptr::eq(o, *t)))
            .map(|t| {
                serde_json::json!({"id": t.id, "ok": t.usable().is_ok(), "pixels": t.pixels.len(),
                    "errors": t.errors, "warnings": t.warnings, "invalid_setting": t.modes.and(t.orders).err().map(|e| e.0)})
            })
            .collect(),
        Err(e) => vec![serde_json::json!({"ok": false, "errors": [e]})],
    };
    let mut body = serde_json::json!({
        "ok": false,
        "api_version": cfg.api_version,
        "ledger_shards": cfg.ledger_shards,
        "shim_built": shim_assets::is_built(),
        "version": env!("CARGO_PKG_VERSION"),
        "tenants": tenants,
    });
    if let Some(t) = own {
        body["ok"] = t.usable().is_ok().into();
        body["tenant"] = t.id.clone().into();
        body["pixel_id_set"] = (!t.pixels.is_empty()).into();
        body["access_token_set"] =
            (!t.pixels.is_empty() && t.pixels.iter().all(|p| p.access_token.is_some())).into();
        body["signed_orders"] = t.has_signed_orders().into();
        body["test_event_codes"] = t.test_event_codes.len().into();
        match t.modes {
            Ok(m) => {
                body["privacy"] = serde_json::Value::Object(
                    m.names()
                        .iter()
                        .map(|(k, v)| (k.to_string(), (*v).into()))
                        .collect(),
                )
            }
            Err(capi_core::privacy::InvalidSetting(name)) => body["invalid_setting"] = name.into(),
        }
        if let Err(capi_core::privacy::InvalidSetting(name)) = t.orders {
            body["invalid_setting"] = name.into();
        }
    }
    body
}
