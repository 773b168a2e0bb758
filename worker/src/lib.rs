//! capi-edge Worker: serves the pixel shim, takes beacons on the shop's own domain and relays
//! them to Meta's Conversions API. Meta's rules live in `capi-core`; this crate moves bytes.

mod admin;
mod body;
mod config;
mod cookies;
mod delivery;
mod demo;
mod error;
mod hooks;
mod ingest;
mod ledger;
mod log;
mod shim_assets;

use config::Config;
use error::ApiError;
pub use ledger::Ledger;
use worker::{event, Context, Env, MessageBatch, Method, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let cfg = Config::from_env(&env);
    let path = req.path();
    // `/t/e` is ours, `/thank-you` is not: the prefix must end at a segment boundary.
    let Some(route) = path
        .strip_prefix(cfg.route_prefix.as_str())
        .filter(|r| r.starts_with('/'))
    else {
        return demo::page_or_not_found(&cfg, &path);
    };
    let answer = match (req.method(), route) {
        (Method::Get | Method::Head, "/p.js") => shim_assets::loader(&req, &cfg),
        (Method::Get | Method::Head, "/p.wasm") => shim_assets::wasm(&req),
        (Method::Post, "/e") => ingest::beacon(req, &cfg, &env, &ctx).await,
        (Method::Post, r) if r.starts_with("/hooks/") => match hooks::Platform::from_route(r) {
            Some((platform, tenant)) => {
                let tenant = tenant.map(str::to_string);
                hooks::hook(req, platform, tenant.as_deref(), &cfg, &env).await
            }
            None => Err(ApiError::NotFound),
        },
        (Method::Options, "/e") => ingest::preflight(&req, &cfg),
        (Method::Get | Method::Head, "/health") => health(&req, &cfg),
        (Method::Get, "/stats") => admin::stats(&req, &cfg, &env).await,
        (Method::Get, "/report") => admin::report(&req, &cfg, &env).await,
        (Method::Get, "/dead-letters") => admin::dead_letters(&req, &cfg, &env).await,
        (Method::Post, "/replay") => admin::replay(&req, &cfg, &env).await,
        (Method::Get, r) if r.starts_with("/receipts/") => {
            admin::receipts(&req, &cfg, &env, &r["/receipts/".len()..]).await
        }
        (_, "/p.js" | "/p.wasm" | "/e" | "/health") => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound),
    };
    answer.or_else(|e| e.into_response())
}

/// The queue consumer: delivers what ingest enqueued (see `delivery`).
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    if batch.queue().ends_with("dead-letters") {
        return delivery::park_dead_letters(batch, env).await;
    }
    delivery::consume(batch, env).await
}

/// `GET /t/health`: whether the request host's tenant is configured, its privacy modes, and
/// what is wrong with any tenant (setting names only); never a secret's value.
fn health(req: &Request, cfg: &Config) -> std::result::Result<Response, ApiError> {
    let host = req.url()?.host_str().unwrap_or("").to_string();
    let tenants: Vec<serde_json::Value> = match &cfg.tenants {
        Ok(ts) => ts
            .iter()
            .map(|t| {
                serde_json::json!({"id": t.id, "ok": t.usable().is_ok(), "pixels": t.pixels.len(),
                    "errors": t.errors, "invalid_setting": t.modes.err().map(|e| e.0)})
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
    if let Some(t) = cfg.host_tenant(&host) {
        body["ok"] = t.usable().is_ok().into();
        body["tenant"] = t.id.clone().into();
        body["pixel_id_set"] = (!t.pixels.is_empty()).into();
        body["access_token_set"] =
            (!t.pixels.is_empty() && t.pixels.iter().all(|p| p.access_token.is_some())).into();
        body["signed_orders"] = t.has_signed_orders().into();
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
    }
    let mut resp = Response::from_json(&body)?;
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}
