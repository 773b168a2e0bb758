//! WooCommerce order webhooks (`order.created`, `order.updated`; REST API v3 order shape).

use super::{
    amount, currency, iso8601_secs, json_object, keyed_value, line_items, text, Channel, Order,
    PayloadError, Refund, Stage, Webhook,
};
use crate::privacy::{gpc_flag, Consent};
use serde_json::Value;

/// An order's status as a stage: `on-hold` is placed (awaiting an offline payment), `processing`
/// and `completed` are paid, `cancelled` and `refunded` end it, `failed` is a payment that
/// failed (the buyer may pay again). `pending` (the buyer
/// is still at the payment gateway) and drafts are no order yet.
fn stage(status: &str) -> Option<Stage> {
    match status {
        "on-hold" => Some(Stage::Created),
        "processing" | "completed" => Some(Stage::Paid),
        "cancelled" | "refunded" => Some(Stage::Cancelled),
        "failed" => Some(Stage::Failed),
        _ => None,
    }
}

/// WooCommerce's creation ping: a form-encoded `webhook_id=N` body that must get a 2xx.
pub fn is_ping(body: &[u8]) -> bool {
    body.strip_prefix(b"webhook_id=")
        .is_some_and(|id| !id.is_empty() && id.iter().all(u8::is_ascii_digit))
}

/// Maps a verified WooCommerce webhook to an order. `topic` is `X-WC-Webhook-Topic`.
pub fn webhook(topic: &str, body: &[u8]) -> Result<Webhook, PayloadError> {
    if topic != "order.created" && topic != "order.updated" {
        return Ok(Webhook::Ignored {
            reason: "topic_not_reported",
        });
    }
    let o = json_object(body)?;
    let status = o.get("status").and_then(Value::as_str).unwrap_or("");
    let Some(stage) = stage(status) else {
        return Ok(Webhook::Ignored {
            reason: "order_not_paid",
        });
    };
    let order_id = text(o.get("id")).ok_or(PayloadError("order id is missing"))?;
    let value = amount(o.get("total")).ok_or(PayloadError("total is missing or not a number"))?;
    let currency = currency(o.get("currency"))?;
    let billing = |k: &str| {
        text(o.get("billing").and_then(|b| b.get(k)))
            .or_else(|| text(o.get("shipping").and_then(|b| b.get(k))))
    };
    let meta = |key: &str| keyed_value(o.get("meta_data"), "key", key);
    let contents = line_items(
        o.get("line_items"),
        &["variation_id", "product_id", "sku"],
        "price",
    );
    Ok(Webhook::Order(Box::new(Order {
        order_id,
        value,
        currency,
        created_at: text(o.get("date_created_gmt")).and_then(|t| iso8601_secs(&t)),
        email: billing("email"),
        phone: billing("phone"),
        first_name: billing("first_name"),
        last_name: billing("last_name"),
        city: billing("city"),
        state: billing("state"),
        zip: billing("postcode"),
        country: billing("country"),
        customer_id: text(o.get("customer_id")).filter(|c| c != "0"),
        client_ip: text(o.get("customer_ip_address")),
        user_agent: text(o.get("customer_user_agent")),
        fbp: meta("fbp"),
        fbc: meta("fbc"),
        landing_url: None,
        event_source_url: None,
        // The shop is named by the delivery's `X-WC-Webhook-Source` header (see
        // `super::fallback_source_url`), not by the order.
        shop_url: None,
        contents,
        consent: meta("consent").map_or(Consent::Unknown, |c| Consent::from_signal(&c)),
        gpc: gpc_flag(meta("gpc").map(Value::String).as_ref()),
        stage,
        // `date_paid` is set once the order was paid.
        captured: Some(
            text(o.get("date_paid")).is_some() || text(o.get("date_paid_gmt")).is_some(),
        ),
        channel: match o.get("created_via").and_then(Value::as_str) {
            Some("admin") => Channel::System,
            Some("pos") => Channel::Store,
            _ => Channel::Online,
        },
        // `refunds: [{id, reason, total: "-10.00"}]`: the total is negative.
        refunds: o
            .get("refunds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some(Refund {
                    id: text(r.get("id"))?,
                    amount: amount(Some(&Value::String(
                        text(r.get("total"))?.trim_start_matches('-').into(),
                    )))?,
                    currency: None,
                    created_at: None,
                })
            })
            .collect(),
        shipping: amount(o.get("shipping_total")),
        tax: amount(o.get("total_tax")),
        ..Order::default()
    })))
}
