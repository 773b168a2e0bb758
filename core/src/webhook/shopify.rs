//! Shopify order webhooks (Admin REST order payload): `orders/create`, `orders/paid`,
//! `orders/updated`, `orders/cancelled` and `refunds/create`.

use super::{
    amount, currency, customer_type, iso8601_secs, json_object, keyed_value, line_items, pointer,
    shop_origin_url, text, Channel, Order, PayloadError, Refund, Stage, Webhook,
};
use crate::privacy::{gpc_flag, Consent};
use serde_json::{Map, Value};

/// Topics whose payload is the order. They all name the same order, so the ledger sends its
/// Purchase once.
const ORDER_TOPICS: &[&str] = &[
    "orders/create",
    "orders/paid",
    "orders/updated",
    "orders/cancelled",
];

/// Maps a verified Shopify webhook to an order. `topic` is `X-Shopify-Topic`.
pub fn webhook(topic: &str, body: &[u8]) -> Result<Webhook, PayloadError> {
    if topic == "refunds/create" {
        return refund_webhook(&json_object(body)?);
    }
    if !ORDER_TOPICS.contains(&topic) {
        return Ok(Webhook::Ignored {
            reason: "topic_not_reported",
        });
    }
    let o = json_object(body)?;
    let financial = o.get("financial_status").and_then(Value::as_str);
    // The stage comes from the signed body alone: Shopify's signature does not cover the topic
    // header, so a captured `orders/create` re-posted as `orders/cancelled` (or `orders/paid`)
    // is only that order again. Shopify's cancelled and paid payloads say so themselves.
    let stage = if pointer(&o, &["cancelled_at"]).is_some()
        || matches!(financial, Some("refunded" | "voided"))
    {
        Stage::Cancelled
    } else if matches!(
        financial,
        Some("paid" | "partially_paid" | "partially_refunded")
    ) {
        Stage::Paid
    } else {
        Stage::Created
    };
    let channel = match o.get("source_name").and_then(Value::as_str) {
        Some("pos") => Channel::Store,
        Some("shopify_draft_order") => Channel::System,
        _ => Channel::Online,
    };
    let order_id = text(o.get("id")).ok_or(PayloadError("order id is missing"))?;
    let value = amount(o.get("total_price"))
        .ok_or(PayloadError("total_price is missing or not a number"))?;
    let currency = currency(o.get("currency"))?;
    let get = |path: &[&str]| pointer(&o, path);
    let billing = |k: &str| {
        text(pointer(&o, &["billing_address", k]))
            .or_else(|| text(pointer(&o, &["shipping_address", k])))
    };
    // Cart attributes written by the shim (`_fbp`, `_fbc`, `_capi_consent`) arrive as
    // note_attributes.
    let note = |name: &str| keyed_value(o.get("note_attributes"), "name", name);
    // Shopify's Meta catalog uses variant ids as content ids.
    let contents = line_items(
        o.get("line_items"),
        &["variant_id", "product_id", "sku"],
        "price",
    );
    Ok(Webhook::Order(Box::new(Order {
        order_id,
        value,
        currency,
        created_at: text(o.get("created_at"))
            .or_else(|| text(o.get("processed_at")))
            .and_then(|t| iso8601_secs(&t)),
        email: text(o.get("email"))
            .or_else(|| text(o.get("contact_email")))
            .or_else(|| text(get(&["customer", "email"]))),
        phone: text(o.get("phone"))
            .or_else(|| billing("phone"))
            .or_else(|| text(get(&["customer", "phone"]))),
        first_name: billing("first_name").or_else(|| text(get(&["customer", "first_name"]))),
        last_name: billing("last_name").or_else(|| text(get(&["customer", "last_name"]))),
        city: billing("city"),
        state: billing("province_code").or_else(|| billing("province")),
        zip: billing("zip"),
        country: billing("country_code").or_else(|| billing("country")),
        customer_id: text(get(&["customer", "id"])),
        client_ip: text(o.get("browser_ip"))
            .or_else(|| text(get(&["client_details", "browser_ip"]))),
        user_agent: text(get(&["client_details", "user_agent"])),
        fbp: note("fbp"),
        fbc: note("fbc"),
        landing_url: text(o.get("landing_site")),
        event_source_url: None,
        // The order status page lives on the shop's domain; its path and `key` are the buyer's
        // (an access key), so only the origin is kept.
        shop_url: text(o.get("order_status_url")).and_then(|u| shop_origin_url(&u)),
        contents,
        consent: note("consent").map_or(Consent::Unknown, |c| Consent::from_signal(&c)),
        gpc: gpc_flag(note("gpc").map(Value::String).as_ref()),
        stage,
        channel,
        captured: financial.map(|f| !matches!(f, "pending" | "authorized" | "voided")),
        test: o.get("test").and_then(Value::as_bool).unwrap_or(false),
        refunds: o
            .get("refunds")
            .and_then(Value::as_array)
            .map(|rs| rs.iter().filter_map(refund).collect())
            .unwrap_or_default(),
        shipping: amount(get(&["total_shipping_price_set", "shop_money", "amount"])),
        tax: amount(o.get("total_tax")),
        customer_type: customer_type(
            get(&["customer", "orders_count"])
                .or_else(|| get(&["customer", "number_of_orders"]))
                .and_then(|n| n.as_u64().or_else(|| text(Some(n))?.parse().ok())),
        ),
        ..Order::default()
    })))
}

/// One refund of a payload (`refunds[]` of an order, or `refunds/create`'s body): its id and
/// the money its successful refund transactions returned, in their currency: the one the
/// customer paid in, which is not the order's (`currency`, the shop's) when the shop sells in
/// several (a return or restock that refunded no money is a refund of 0, and sends nothing).
fn refund(r: &Value) -> Option<Refund> {
    let id = text(r.get("id"))?;
    // (amount, currency) of each successful refund transaction.
    let refunded: Vec<(Option<f64>, Option<String>)> = r
        .get("transactions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| {
            t.get("kind").and_then(Value::as_str) == Some("refund")
                && matches!(
                    t.get("status").and_then(Value::as_str),
                    None | Some("success")
                )
        })
        .map(|t| (amount(t.get("amount")), currency(t.get("currency")).ok()))
        .collect();
    // One currency per refund (a customer is refunded in what they paid); a transaction in
    // another is not added to it.
    let refund_currency = refunded.iter().find_map(|(_, c)| c.clone());
    let amount: f64 = refunded
        .iter()
        .filter(|(_, c)| c.is_none() || *c == refund_currency)
        .filter_map(|(a, _)| *a)
        .sum();
    Some(Refund {
        id,
        amount: (amount * 1000.0).round() / 1000.0,
        currency: refund_currency,
        created_at: text(r.get("created_at")).and_then(|t| iso8601_secs(&t)),
    })
}

/// `refunds/create`: a refund of an order, which its body names by id only (no customer: the
/// refund event carries the keys its Purchase was delivered with).
fn refund_webhook(r: &Map<String, Value>) -> Result<Webhook, PayloadError> {
    let order_id = text(r.get("order_id")).ok_or(PayloadError("order_id is missing"))?;
    let body = Value::Object(r.clone());
    let refund = refund(&body).ok_or(PayloadError("refund id is missing"))?;
    if refund.amount <= 0.0 {
        // A return or restock that refunded no money (it may name no currency either): nothing
        // to send, and acknowledged, so Shopify does not retry it.
        return Ok(Webhook::Ignored {
            reason: "refund_of_nothing",
        });
    }
    let currency = match &refund.currency {
        Some(c) => c.clone(),
        None => currency(
            body.pointer("/refund_line_items/0/subtotal_set/presentment_money/currency_code"),
        )?,
    };
    Ok(Webhook::Order(Box::new(Order {
        order_id,
        value: refund.amount,
        currency,
        stage: Stage::RefundOnly,
        refunds: vec![refund],
        ..Order::default()
    })))
}
