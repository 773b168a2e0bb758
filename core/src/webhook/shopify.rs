//! Shopify order webhooks (`orders/create`, `orders/paid`; Admin REST order payload).

use super::{
    amount, currency, iso8601_secs, json_object, keyed_value, line_items, shop_origin_url, text,
    Order, PayloadError, Webhook,
};
use crate::privacy::{gpc_flag, Consent};
use serde_json::Value;

/// Topics reported as a Purchase. Both name the same order, so the ledger sends it once.
const PURCHASE_TOPICS: &[&str] = &["orders/create", "orders/paid"];

/// Maps a verified Shopify webhook to an order. `topic` is `X-Shopify-Topic`.
pub fn webhook(topic: &str, body: &[u8]) -> Result<Webhook, PayloadError> {
    if !PURCHASE_TOPICS.contains(&topic) {
        return Ok(Webhook::Ignored {
            reason: "topic_not_reported",
        });
    }
    let o = json_object(body)?;
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
    })))
}

fn pointer<'a>(o: &'a serde_json::Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(o.get(*first)?, |v, k| v.get(*k))
        .filter(|v| !v.is_null())
}
