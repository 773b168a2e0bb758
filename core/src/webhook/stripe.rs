//! Stripe webhooks: Checkout Sessions, payment intents, refunds and subscription invoices.

use super::{
    currency, json_object, meta_value, pointer, text, Channel, Kind, Order, PayloadError, Refund,
    Stage, Webhook,
};
use crate::privacy::{gpc_flag, Consent};
use serde_json::{Map, Value};

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

/// Maps a verified Stripe event to an order:
/// - Checkout Sessions: `checkout.session.completed` (placed; paid unless `unpaid`),
///   `…async_payment_succeeded` (paid), `…async_payment_failed` (a failed payment). The order id
///   is `client_reference_id`, else `metadata.order_id`, else the session id. `…expired`
///   sessions, setup sessions and subscription sessions are not reported (a subscription's
///   Purchase is its first invoice).
/// - `payment_intent.succeeded` (paid) and `charge.refunded` (a refund; in full it cancels):
///   only with the order's id in their `metadata` (`order_id`), which Checkout does not copy
///   there by itself; without it they are acknowledged and ignored.
/// - `invoice.paid`: a subscription's first invoice is its Purchase (a trial start when it is
///   0), each later cycle a renewal.
///
/// `livemode: false` marks a test order.
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
    let mut order = match kind {
        // A session that never completed owns no Purchase (the buyer may have paid in another).
        "checkout.session.expired" => return ignored("session_expired"),
        // Setup sessions save a card and take no money; a subscription's Purchase is its
        // first invoice (`invoice.paid`), so the session and the invoice are not two.
        "checkout.session.completed"
        | "checkout.session.async_payment_succeeded"
        | "checkout.session.async_payment_failed"
            if matches!(
                s.get("mode").and_then(Value::as_str),
                Some("setup" | "subscription")
            ) =>
        {
            return ignored("not_a_payment_session")
        }
        "checkout.session.completed"
        | "checkout.session.async_payment_succeeded"
        | "checkout.session.async_payment_failed" => session(kind, s)?,
        "payment_intent.succeeded" => match payment_intent(s)? {
            Some(o) => o,
            None => return ignored("no_order_id_in_metadata"),
        },
        "charge.refunded" => match charge_refund(s, &event)? {
            Some(o) => o,
            None => return ignored("no_order_id_in_metadata"),
        },
        "invoice.paid" => match invoice(s)? {
            Some(o) => o,
            None => return ignored("invoice_not_reported"),
        },
        _ => return ignored("event_type_not_reported"),
    };
    order.test = event.get("livemode").and_then(Value::as_bool) == Some(false);
    if order.created_at.is_none() {
        order.created_at = event.get("created").and_then(Value::as_i64);
    }
    Ok(Webhook::Order(Box::new(order)))
}

fn ignored(reason: &'static str) -> Result<Webhook, PayloadError> {
    Ok(Webhook::Ignored { reason })
}

/// An amount in the currency's minor unit as a value.
fn major(minor: i64, currency: &str) -> f64 {
    minor as f64 / 10f64.powi(minor_unit_exponent(currency))
}

fn minor_amount(o: &Map<String, Value>, key: &str) -> Result<i64, PayloadError> {
    o.get(key)
        .and_then(Value::as_i64)
        .filter(|a| *a >= 0)
        .ok_or(PayloadError("amount is missing"))
}

/// The order id the shop put in an object's `metadata`.
fn metadata_order_id(o: &Map<String, Value>) -> Option<String> {
    let metadata = o.get("metadata").and_then(Value::as_object);
    text(meta_value(metadata, "order_id"))
        .or_else(|| text(meta_value(metadata, "client_reference_id")))
}

/// Browser facts and consent the shop put in `metadata` (Stripe knows nothing of the browser).
fn with_metadata(mut order: Order, o: &Map<String, Value>) -> Order {
    let metadata = o.get("metadata").and_then(Value::as_object);
    let meta = |k: &str| text(meta_value(metadata, k));
    order.client_ip = meta("client_ip_address");
    order.user_agent = meta("client_user_agent");
    order.fbp = meta("fbp");
    order.fbc = meta("fbc");
    order.event_source_url = meta("event_source_url");
    order.consent = Consent::from_json(meta_value(metadata, "consent"));
    order.gpc = gpc_flag(meta_value(metadata, "gpc"));
    order
}

/// Customer fields as Stripe's objects spell them: `email`, `name` (split into first and last
/// name at the first space), `phone` and `address`.
fn with_customer(
    mut order: Order,
    email: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    address: Option<&Value>,
) -> Order {
    let (first_name, last_name) = match name.as_deref().map(|n| n.split_once(' ')) {
        Some(Some((f, l))) => (
            Some(f.to_string()),
            Some(l.trim().to_string()).filter(|l| !l.is_empty()),
        ),
        Some(None) => (name.clone(), None),
        None => (None, None),
    };
    let part = |k: &str| text(address.and_then(|a| a.get(k)));
    order.email = email;
    order.phone = phone;
    order.first_name = first_name;
    order.last_name = last_name;
    order.city = part("city");
    order.state = part("state");
    order.zip = part("postal_code");
    order.country = part("country");
    order
}

fn session(kind: &str, s: &Map<String, Value>) -> Result<Order, PayloadError> {
    let order_id = text(s.get("client_reference_id"))
        .or_else(|| metadata_order_id(s))
        .or_else(|| text(s.get("id")))
        .ok_or(PayloadError("session id is missing"))?;
    let currency = currency(s.get("currency"))?;
    let minor = minor_amount(s, "amount_total")?;
    let stage = match kind {
        "checkout.session.async_payment_failed" => Stage::Failed,
        _ if s.get("payment_status").and_then(Value::as_str) == Some("unpaid") => Stage::Created,
        _ => Stage::Paid,
    };
    let details = s.get("customer_details");
    let detail = |k: &str| text(details.and_then(|d| d.get(k)));
    let order = Order {
        order_id,
        value: major(minor, &currency),
        currency,
        created_at: s.get("created").and_then(Value::as_i64),
        customer_id: text(s.get("customer")),
        captured: Some(stage == Stage::Paid),
        stage,
        ..Order::default()
    };
    let order = with_customer(
        order,
        detail("email"),
        detail("name"),
        detail("phone"),
        details.and_then(|d| d.get("address")),
    );
    Ok(with_metadata(order, s))
}

fn payment_intent(p: &Map<String, Value>) -> Result<Option<Order>, PayloadError> {
    let Some(order_id) = metadata_order_id(p) else {
        return Ok(None);
    };
    let currency = currency(p.get("currency"))?;
    let minor = p
        .get("amount_received")
        .and_then(Value::as_i64)
        .map_or_else(|| minor_amount(p, "amount"), Ok)?;
    let shipping = p.get("shipping");
    let order = Order {
        order_id,
        value: major(minor, &currency),
        currency,
        created_at: p.get("created").and_then(Value::as_i64),
        customer_id: text(p.get("customer")),
        ..Order::default()
    };
    let order = with_customer(
        order,
        text(p.get("receipt_email")),
        text(shipping.and_then(|s| s.get("name"))),
        text(shipping.and_then(|s| s.get("phone"))),
        shipping.and_then(|s| s.get("address")),
    );
    Ok(Some(with_metadata(order, p)))
}

/// `charge.refunded`: the refund this event reports (the newest of `refunds.data` when Stripe
/// expanded it, else the growth of `amount_refunded` since `previous_attributes`), in full
/// (`refunded: true`) a cancellation.
fn charge_refund(
    c: &Map<String, Value>,
    event: &Map<String, Value>,
) -> Result<Option<Order>, PayloadError> {
    let Some(order_id) = metadata_order_id(c) else {
        return Ok(None);
    };
    let currency = currency(c.get("currency"))?;
    let refunded = minor_amount(c, "amount_refunded")?;
    let newest = c
        .get("refunds")
        .and_then(|r| r.get("data"))
        .and_then(Value::as_array)
        .and_then(|d| d.first());
    let before = event
        .get("data")
        .and_then(|d| d.get("previous_attributes"))
        .and_then(|p| p.get("amount_refunded"))
        .and_then(Value::as_i64);
    let (id, minor) = match (newest, before) {
        (Some(r), _) => (
            text(r.get("id")).ok_or(PayloadError("refund id is missing"))?,
            r.get("amount").and_then(Value::as_i64).unwrap_or(refunded),
        ),
        (None, before) => (
            format!("{}@{refunded}", text(c.get("id")).unwrap_or_default()),
            refunded - before.unwrap_or(0),
        ),
    };
    let billing = c.get("billing_details");
    let field = |k: &str| text(billing.and_then(|b| b.get(k)));
    let full = c.get("refunded").and_then(Value::as_bool) == Some(true);
    let order = Order {
        order_id,
        value: major(minor_amount(c, "amount")?, &currency),
        created_at: c.get("created").and_then(Value::as_i64),
        customer_id: text(c.get("customer")),
        stage: if full {
            Stage::Cancelled
        } else {
            Stage::RefundOnly
        },
        refunds: vec![Refund {
            id,
            amount: major(minor.max(0), &currency),
            currency: None,
            created_at: event.get("created").and_then(Value::as_i64),
        }],
        currency,
        ..Order::default()
    };
    let order = with_customer(
        order,
        field("email"),
        field("name"),
        field("phone"),
        billing.and_then(|b| b.get("address")),
    );
    Ok(Some(with_metadata(order, c)))
}

/// `invoice.paid`: `subscription_create` is the subscription's first order (a trial start when
/// nothing was paid), `subscription_cycle` a renewal; other invoices are not reported.
fn invoice(i: &Map<String, Value>) -> Result<Option<Order>, PayloadError> {
    let subscription = text(i.get("subscription")).or_else(|| {
        text(pointer(
            i,
            &["parent", "subscription_details", "subscription"],
        ))
    });
    let Some(subscription) = subscription else {
        return Ok(None);
    };
    let currency = currency(i.get("currency"))?;
    let minor = minor_amount(i, "amount_paid")?;
    let sub_metadata = pointer(i, &["subscription_details", "metadata"])
        .or_else(|| pointer(i, &["parent", "subscription_details", "metadata"]))
        .and_then(Value::as_object);
    let sub_order_id = text(meta_value(sub_metadata, "order_id"));
    let (kind, order_id) = match i.get("billing_reason").and_then(Value::as_str) {
        Some("subscription_create") => (
            if minor == 0 {
                Kind::Trial
            } else {
                Kind::Purchase
            },
            sub_order_id
                .clone()
                .or_else(|| metadata_order_id(i))
                .unwrap_or_else(|| subscription.clone()),
        ),
        Some("subscription_cycle") => (
            Kind::Renewal,
            text(i.get("id")).ok_or(PayloadError("invoice id is missing"))?,
        ),
        _ => return Ok(None),
    };
    let order = Order {
        order_id,
        value: major(minor, &currency),
        currency,
        // When it was paid (an invoice is drafted an hour or more before it is charged, and a
        // renewal paid on a later retry or a net-30 invoice may be paid days later: its
        // creation time could be past Meta's 7 days when the payment comes).
        created_at: pointer(i, &["status_transitions", "paid_at"])
            .or_else(|| i.get("created"))
            .and_then(Value::as_i64),
        customer_id: text(i.get("customer")),
        kind,
        channel: if kind == Kind::Renewal {
            Channel::System
        } else {
            Channel::Online
        },
        subscription_order_id: (kind == Kind::Renewal)
            .then(|| sub_order_id.unwrap_or_else(|| subscription.clone())),
        subscription_id: Some(subscription),
        ..Order::default()
    };
    let order = with_customer(
        order,
        text(i.get("customer_email")),
        text(i.get("customer_name")),
        text(i.get("customer_phone")),
        i.get("customer_address"),
    );
    Ok(Some(with_metadata(order, i)))
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

    #[test]
    fn an_invoice_counts_from_when_it_was_paid() {
        // A renewal drafted on day 0 and paid on a retry 9 days later.
        let paid = |transitions: &str| {
            let body = format!(
                r#"{{"type":"invoice.paid","created":1795800000,"livemode":true,"data":{{"object":{{
                "id":"in_1","object":"invoice","billing_reason":"subscription_cycle",
                "subscription":"sub_1","currency":"eur","amount_paid":990,"created":1795000000
                {transitions}}}}}}}"#
            );
            match webhook(body.as_bytes()) {
                Ok(Webhook::Order(o)) => o.created_at,
                _ => None,
            }
        };
        assert_eq!(
            paid(r#","status_transitions":{"paid_at":1795777600}"#),
            Some(1_795_777_600)
        );
        // Without its payment time, the invoice's own time.
        assert_eq!(paid(""), Some(1_795_000_000));
    }
}
