//! Stripe Checkout webhooks (`checkout.session.completed`, `…async_payment_succeeded`).

use super::{currency, http_url, json_object, meta_value, text, Order, PayloadError, Webhook};
use crate::privacy::{gpc_flag, Consent};
use serde_json::Value;

/// Stripe amounts are integers in the currency's minor unit; this is its exponent (Stripe's
/// docs: zero-decimal and three-decimal currencies; everything else has two decimals).
pub fn minor_unit_exponent(currency: &str) -> i32 {
    const ZERO: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
        "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];
    let c = currency.to_ascii_uppercase();
    if ZERO.contains(&c.as_str()) {
        0
    } else if THREE.contains(&c.as_str()) {
        3
    } else {
        2
    }
}

/// Maps a verified Stripe event to an order: the Checkout Session once it is paid.
/// The order id is `client_reference_id` when the shop set one, else the session id.
pub fn webhook(body: &[u8]) -> Result<Webhook, PayloadError> {
    let event = json_object(body)?;
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .ok_or(PayloadError("event type is missing"))?;
    let s = event
        .get("data")
        .and_then(|d| d.get("object"))
        .and_then(Value::as_object)
        .ok_or(PayloadError("data.object is missing"))?;
    match kind {
        "checkout.session.completed"
            if s.get("payment_status").and_then(Value::as_str) != Some("paid") =>
        {
            // Delayed payment methods: reported on checkout.session.async_payment_succeeded.
            return Ok(Webhook::Ignored {
                reason: "payment_not_yet_paid",
            });
        }
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {}
        _ => {
            return Ok(Webhook::Ignored {
                reason: "event_type_not_reported",
            })
        }
    }
    let order_id = text(s.get("client_reference_id"))
        .or_else(|| text(s.get("id")))
        .ok_or(PayloadError("session id is missing"))?;
    let currency = currency(s.get("currency"))?;
    let minor = s
        .get("amount_total")
        .and_then(Value::as_i64)
        .filter(|a| *a >= 0)
        .ok_or(PayloadError("amount_total is missing"))?;
    let value = minor as f64 / 10f64.powi(minor_unit_exponent(&currency));
    let details = s.get("customer_details");
    let detail = |k: &str| text(details.and_then(|d| d.get(k)));
    let address = |k: &str| {
        text(
            details
                .and_then(|d| d.get("address"))
                .and_then(|a| a.get(k)),
        )
    };
    let metadata = s.get("metadata").and_then(Value::as_object);
    let meta = |k: &str| text(meta_value(metadata, k));
    // Stripe has one `name`; the first word is the first name, the rest the last name.
    let name = detail("name");
    let (first_name, last_name) = match name.as_deref().map(|n| n.split_once(' ')) {
        Some(Some((f, l))) => (
            Some(f.to_string()),
            Some(l.trim().to_string()).filter(|l| !l.is_empty()),
        ),
        Some(None) => (name.clone(), None),
        None => (None, None),
    };
    Ok(Webhook::Order(Box::new(Order {
        order_id,
        value,
        currency,
        created_at: s
            .get("created")
            .and_then(Value::as_i64)
            .or_else(|| event.get("created").and_then(Value::as_i64)),
        email: detail("email"),
        phone: detail("phone"),
        first_name,
        last_name,
        city: address("city"),
        state: address("state"),
        zip: address("postal_code"),
        country: address("country"),
        customer_id: text(s.get("customer")),
        // Stripe knows nothing of the browser: the shop puts these into the session's metadata.
        client_ip: meta("client_ip_address"),
        user_agent: meta("client_user_agent"),
        fbp: meta("fbp"),
        fbc: meta("fbc"),
        landing_url: None,
        event_source_url: meta("event_source_url")
            .and_then(|u| http_url(&u))
            .map(String::from),
        // Stripe names no shop it can vouch for (`success_url` is whatever the caller set).
        shop_url: None,
        contents: Vec::new(),
        consent: Consent::from_json(meta_value(metadata, "consent")),
        gpc: gpc_flag(meta_value(metadata, "gpc")),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_the_currency() {
        assert_eq!(minor_unit_exponent("jpy"), 0);
        assert_eq!(minor_unit_exponent("BHD"), 3);
        assert_eq!(minor_unit_exponent("eur"), 2);
    }
}
