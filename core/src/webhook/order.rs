//! capi-edge's generic signed order webhook, for any backend (`POST /t/hooks/order`).
//!
//! ```json
//! {"order_id": "1001", "value": 39.9, "currency": "EUR", "created_at": "2026-11-23T10:00:00Z",
//!  "customer": {"email": "…", "phone": "…", "first_name": "…", "last_name": "…", "city": "…",
//!               "state": "…", "zip": "…", "country": "…", "id": "…"},
//!  "client_ip_address": "…", "client_user_agent": "…", "fbp": "…", "fbc": "…",
//!  "consent": "granted" | "denied", "gpc": false,
//!  "event_source_url": "https://shop.example.com/thank-you",
//!  "contents": [{"id": "sku-1", "quantity": 1, "item_price": 39.9}],
//!  "status": "placed" | "paid" | "cancelled" | "refunded", "test": false,
//!  "action_source": "website" | "physical_store" | "system_generated" | "phone_call",
//!  "shipping": 4.9, "tax": 6.4, "customer_type": "new" | "returning",
//!  "refunds": [{"id": "r1", "amount": 10, "created_at": "…"}]}
//! ```
//! `status` defaults to `paid`; `refunded` means in full (a partial refund is listed in
//! `refunds` with `status: paid`).
//! Signed with `X-Capi-Signature: sha256=<hex HMAC-SHA256(ORDER_WEBHOOK_SECRET, raw body)>`.
//! `event_source_url`, an http(s) URL, is the order's page at Meta; without one (or with any
//! other scheme) the tenant's first host stands in (`super::fallback_source_url`).

use super::{
    amount, currency, iso8601_secs, json_object, line_items, meta_value, text, Channel, Order,
    PayloadError, Refund, Stage, Webhook,
};
use crate::privacy::{gpc_flag, Consent};
use serde_json::Value;

pub fn webhook(body: &[u8]) -> Result<Webhook, PayloadError> {
    let o = json_object(body)?;
    let order_id = text(o.get("order_id")).ok_or(PayloadError("order_id is missing"))?;
    let value = amount(o.get("value")).ok_or(PayloadError("value must be a number >= 0"))?;
    let currency = currency(o.get("currency"))?;
    let created_at = timestamp(o.get("created_at"))?;
    let stage = match o.get("status").and_then(Value::as_str) {
        None | Some("paid") => Stage::Paid,
        Some("placed") => Stage::Created,
        Some("cancelled" | "refunded") => Stage::Cancelled,
        Some(_) => {
            return Err(PayloadError(
                "status must be placed, paid, cancelled or refunded",
            ))
        }
    };
    let channel = match o.get("action_source").and_then(Value::as_str) {
        None | Some("website") => Channel::Online,
        Some("physical_store") => Channel::Store,
        Some("system_generated") => Channel::System,
        Some("phone_call") => Channel::Phone,
        Some(_) => {
            return Err(PayloadError(
                "action_source must be website, physical_store, system_generated or phone_call",
            ))
        }
    };
    let mut refunds = Vec::new();
    for r in o
        .get("refunds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        refunds.push(Refund {
            id: text(r.get("id")).ok_or(PayloadError("a refund's id is missing"))?,
            amount: amount(r.get("amount"))
                .ok_or(PayloadError("a refund's amount must be a number >= 0"))?,
            currency: None,
            created_at: timestamp(r.get("created_at"))?,
        });
    }
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
        // Read by `purchase_event`: only an http(s) URL is a page of the shop.
        event_source_url: text(o.get("event_source_url")),
        shop_url: None,
        contents,
        consent: Consent::from_json(meta_value(Some(&o), "consent")),
        gpc: gpc_flag(meta_value(Some(&o), "gpc")),
        stage,
        channel,
        test: o.get("test").and_then(Value::as_bool).unwrap_or(false),
        refunds,
        shipping: amount(o.get("shipping")),
        tax: amount(o.get("tax")),
        customer_type: match o.get("customer_type").and_then(Value::as_str) {
            Some("new") => Some("new"),
            Some("returning") => Some("returning"),
            _ => None,
        },
        ..Order::default()
    })))
}

/// Unix seconds or ISO 8601, or absent.
fn timestamp(v: Option<&Value>) -> Result<Option<i64>, PayloadError> {
    const WHY: PayloadError = PayloadError("created_at must be Unix seconds or ISO 8601");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(WHY),
        Some(Value::String(s)) => iso8601_secs(s).map(Some).ok_or(WHY),
        Some(_) => Err(WHY),
    }
}
