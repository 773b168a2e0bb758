//! The demo storefront (local development only, `DEMO_STOREFRONT = "on"`): a few products, a
//! checkout and a thank-you page, each with the one script tag a merchant adds. In production
//! the Worker only runs on the `/t/*` route, so these paths never reach it.

use crate::config::Config;
use crate::error::ApiError;
use worker::{Headers, Response};

const SHOP_HTML: &str = include_str!("../demo/shop.html");

pub fn page_or_not_found(cfg: &Config, path: &str) -> worker::Result<Response> {
    let page = match path {
        "/" | "/index.html" => "shop",
        "/checkout" => "checkout",
        "/thank-you" => "thank-you",
        _ => "",
    };
    if !cfg.demo_storefront || page.is_empty() {
        return ApiError::NotFound.into_response();
    }
    let html = SHOP_HTML
        .replace("{{PAGE}}", page)
        .replace("{{PREFIX}}", &cfg.route_prefix)
        .replace(
            "{{PIXEL_ID}}",
            cfg.host_tenant("")
                .and_then(|t| t.pixels.first())
                .map_or("", |p| p.id.as_str()),
        )
        .replace("{{SANDBOX}}", cfg.graph_url.trim_end_matches('/'));
    let headers = Headers::new();
    headers.set("content-type", "text/html; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_bytes(html.into_bytes())?.with_headers(headers))
}
