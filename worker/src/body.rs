//! Request bodies: read from the stream and never buffered past a limit, and written into
//! the POSTs the Worker sends.

use crate::error::ApiError;
use futures_util::StreamExt;
use worker::wasm_bindgen::JsValue;
use worker::{web_sys, Request};

/// The raw body, refused with 413 as soon as the declared length or the bytes actually read
/// exceed `limit`: a chunked body without `Content-Length` is read at most to `limit + 1`.
pub async fn bounded(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    if declared.is_some() {
        // Declared within the limit (the runtime holds the body to its Content-Length): one
        // read, no stream reader (measured: the reader's calls were ~11 % of ingest CPU).
        let body = req.bytes().await?;
        if body.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        return Ok(body);
    }
    let mut body = Vec::with_capacity(1024);
    // No body at all (e.g. an empty POST) reads as empty.
    let Ok(mut stream) = req.stream() else {
        return Ok(body);
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A POST of `body` to `url` (as JSON when `json`), built on the runtime's own `RequestInit`.
/// worker's `RequestInit` would carry Cloudflare's `cf` options (image resizing, Polish,
/// caching), which no request of the Worker sets: their conversion code weighed 6.4 KB of
/// the gzipped Worker (BENCHMARKS.md, sizes). None when the URL is not one.
pub fn post(url: &str, body: String, json: bool) -> Option<Request> {
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    if json {
        let headers = web_sys::Headers::new().ok()?;
        headers.set("content-type", "application/json").ok()?;
        init.set_headers(&headers);
    }
    init.set_body(&JsValue::from_str(&body));
    web_sys::Request::new_with_str_and_init(url, &init)
        .ok()
        .map(Request::from)
}
