//! `GET /t/p.js` and `GET /t/p.wasm`: the pixel shim, embedded at build time.

use crate::config::Config;
use crate::error::ApiError;
use std::borrow::Cow;
use worker::{Headers, Request, Response};

/// The placeholder in the loader that the Worker fills with its privacy modes, so the shim
/// applies the same consent / GPC / LDU modes in the browser as the edge does.
const MODES_PLACEHOLDER: &str = "\"__CAPI_MODES__\"";

const LOADER_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/p.js"));
const SHIM_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/p.wasm"));

pub fn is_built() -> bool {
    !LOADER_JS.is_empty() && !SHIM_WASM.is_empty()
}

/// How long a browser or cache may use a loader before it must ask again: fresh for 5 minutes,
/// served stale for at most 1 more while it revalidates (the ETag changes with the modes). The
/// loader carries the privacy modes, so a change of CONSENT, GPC or LDU reaches every browser
/// within 6 minutes.
const LOADER_CACHE: &str = "public, max-age=300, stale-while-revalidate=60";

/// The loader, with the Worker's privacy modes filled in: short cache (its URL is the one in
/// the merchant's script tag, and it carries the modes) and an ETag.
pub fn loader(req: &Request, cfg: &Config) -> Result<Response, ApiError> {
    // An unreadable privacy setting makes the shim wait for consent: it never guesses looser.
    let host = req.url()?.host_str().unwrap_or("").to_string();
    let modes = match cfg.tenant_for_host(&host).map(|t| t.modes) {
        // The browser needs consent, GPC and LDU, and data controls: with `customer_data`
        // hashed the shim gives Meta's pixel the browser id's hash as `external_id`.
        Ok(Ok(m)) => serde_json::Value::Object(
            m.names()
                .iter()
                .map(|(k, v)| (k.to_string(), (*v).into()))
                .collect(),
        )
        .to_string(),
        _ => r#"{"consent":"required","gpc":"drop","ldu":"on"}"#.to_string(),
    };
    let js = std::str::from_utf8(LOADER_JS).unwrap_or("");
    let bytes: Cow<'static, [u8]> = if js.contains(MODES_PLACEHOLDER) {
        Cow::Owned(js.replacen(MODES_PLACEHOLDER, &modes, 1).into_bytes())
    } else {
        Cow::Borrowed(LOADER_JS)
    };
    serve(req, bytes, "text/javascript; charset=utf-8", LOADER_CACHE)
}

/// The wasm: immutable when asked for by the version the loader names (`?v=`), short otherwise.
pub fn wasm(req: &Request) -> Result<Response, ApiError> {
    let current = req
        .url()?
        .query_pairs()
        .any(|(k, v)| k == "v" && v == version_tag());
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    serve(req, Cow::Borrowed(SHIM_WASM), "application/wasm", cache)
}

/// The wasm's version tag, as written into the loader by the shim build (`p.wasm?v=TAG`).
fn version_tag() -> &'static str {
    let js = std::str::from_utf8(LOADER_JS).unwrap_or("");
    js.split_once("p.wasm?v=")
        .map(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or("")
        })
        .unwrap_or("")
}

fn serve(
    req: &Request,
    bytes: Cow<'static, [u8]>,
    content_type: &str,
    cache: &str,
) -> Result<Response, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::ShimNotBuilt);
    }
    // A hash of a few KB per request: not worth caching per isolate.
    let etag = format!("\"{:08x}\"", capi_core::delivery::fnv1a(&bytes));
    let headers = Headers::new();
    headers.set("content-type", content_type)?;
    headers.set("cache-control", cache)?;
    headers.set("etag", &etag)?;
    headers.set("x-content-type-options", "nosniff")?;
    if req.headers().get("if-none-match")?.as_deref() == Some(etag.as_str()) {
        return Ok(Response::empty()?.with_status(304).with_headers(headers));
    }
    Ok(Response::from_bytes(bytes.into_owned())?.with_headers(headers))
}
