//! capi-edge's generic signed order webhook, for any backend (`POST /t/hooks/order`).
//!
//! ```json
//! {"order_id": "1001", "value": 39.9, "currency": "EUR", "created_at": "2026-11-23T10:00:00Z",
//!  "customer": {"email": "…", "phone": "…", "first_name": "…", "last_name": "…", "city": "…",
//!               "state": "…", "zip": "…", "country": "…", "id": "…"},
//!  "client_ip_address": "…", "client_user_agent": "…", "fbp": "…", "fbc": "…",
//!  "consent": "granted" | "denied", "gpc": false,
//!  "event_source_url": "https://shop.example.com/thank-you",
//!  "contents": [{"id": "sku-1", "quantity": 1, "item_price": 39.9}]}
//! ```
//! Signed with `X-Capi-Signature: sha256=<hex HMAC-SHA256(ORDER_WEBHOOK_SECRET, raw body)>`.
//! `event_source_url`, an http(s) URL, is the order's page at Meta; without one (or with any
//! other scheme) the tenant's first host stands in (`super::fallback_source_url`).

use super::{
    amount, currency, http_url, iso8601_secs, json_object, line_items, meta_value, text, Order,
    PayloadError, Webhook,
};
use crate::privacy::{gpc_flag, Consent};
use serde_json::Value;

pub fn webhook(body: &[u8]) -> Result<Webhook, PayloadError> {
    let o = json_object(body)?;
    let order_id = text(o.get("order_id")).ok_or(PayloadError("order_id is missing"))?;
    let value = amount(o.get("value")).ok_or(PayloadError("value must be a number >= 0"))?;
    let currency = currency(o.get("currency"))?;
    let created_at = match o.get("created_at") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or(PayloadError("created_at must be Unix seconds or ISO 8601"))?,
        ),
        Some(Value::String(s)) => Some(
            iso8601_secs(s).ok_or(PayloadError("created_at must be Unix seconds or ISO 8601"))?,
        ),
        Some(_) => return Err(PayloadError("created_at must be Unix seconds or ISO 8601")),
    };
    let c = |k: &str| text(o.get("customer").and_then(|c| c.get(k)));
    let contents = line_items(o.get("contents"), &["id"], "item_price");
    Ok(Webhook::Order(Box::new(Order {
        order_id,
        value,
        currency,
        created_at,
        email: c("email"),
        phone: c("phone"),
        first_name: c("first_name"),
        last_name: c("last_name"),
        city: c("city"),
        state: c("state"),
        zip: c("zip"),
        country: c("country"),
        customer_id: c("id"),
        client_ip: text(o.get("client_ip_address")),
        user_agent: text(o.get("client_user_agent")),
        fbp: text(meta_value(Some(&o), "fbp")),
        fbc: text(meta_value(Some(&o), "fbc")),
        landing_url: None,
        // Only an http(s) URL is a page of the shop; anything else is left out (the tenant's
        // host stands in).
        event_source_url: text(o.get("event_source_url"))
            .and_then(|u| http_url(&u))
            .map(String::from),
        shop_url: None,
        contents,
        consent: Consent::from_json(meta_value(Some(&o), "consent")),
        gpc: gpc_flag(meta_value(Some(&o), "gpc")),
    })))
}
